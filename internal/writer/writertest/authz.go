package writertest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/log"
)

// The principals CheckEveryRouteKeepsStrangersOut sends requests as, besides
// DefaultPrincipal, the owner.
const (
	Operator = "root"    // has the operator role
	Stranger = "mallory" // owns nothing
)

// RouteRequests says what a route (its mux pattern, "POST /v1/things", say)
// is sent by whom, with the pattern's method: the path and body, and the
// status the owner and the operator must get. who is "owner", "operator",
// "stranger", "forged" (the owner's token, spoiled) or "anonymous"; what
// the last three get is CheckEveryRouteKeepsStrangersOut's to say. The
// owner's and the operator's requests must succeed, so some act on
// aggregates of their own. The public routes, such as GET /healthz, are
// not asked for.
type RouteRequests func(pattern, who string) (path, body string, want int)

// public are the writer's routes anyone may call.
func public(pattern string) bool {
	switch pattern {
	case "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json":
		return true
	}
	return false
}

// CheckEveryRouteKeepsStrangersOut drives each route (a mux pattern), as a
// subtest of t, as the owner, as an operator, as a stranger, with a forged
// token and without one (G11): the public routes serve anyone; on the
// others the stranger gets 403 and the others without valid credentials
// 401, as problem documents, and then Postgres holds exactly what it held
// before; the owner and the operator succeed.
func CheckEveryRouteKeepsStrangersOut(t *testing.T, st *Stack, routes []string, requests RouteRequests) {
	t.Helper()
	owner := st.Bearer
	operator := st.Authorization(Operator, "operator")
	stranger := st.Authorization(Stranger, "auditor")
	for i, pattern := range routes {
		t.Run(pattern, func(t *testing.T) {
			method, route, _ := strings.Cut(pattern, " ")
			if public(pattern) {
				if r := st.Do(0, method, route, "", "Authorization", ""); r.Status != http.StatusOK {
					t.Fatalf("without a token: %d, want 200: %s", r.Status, r.Body)
				}
				return
			}
			refused := []struct {
				who, authorization string
				want               int
			}{
				{"anonymous", "", http.StatusUnauthorized},
				{"forged", owner[:len(owner)-4] + "AAAA", http.StatusUnauthorized},
				{"stranger", stranger, http.StatusForbidden},
			}
			for _, c := range refused {
				before := st.DatabaseDigest()
				path, body, _ := requests(pattern, c.who)
				r := st.Do(0, method, path, body, "Authorization", c.authorization, "Idempotency-Key", fmt.Sprintf("key-%d-%s", i, c.who))
				if r.Status != c.want {
					t.Fatalf("%s: %d, want %d: %s", c.who, r.Status, c.want, r.Body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("%s: content type %q", c.who, ct)
				}
				if after := st.DatabaseDigest(); after != before {
					t.Fatalf("%s's refused request changed Postgres:\nbefore %s\nafter  %s", c.who, before, after)
				}
			}
			for _, c := range []struct{ who, authorization string }{{"owner", owner}, {"operator", operator}} {
				path, body, want := requests(pattern, c.who)
				if r := st.Do(0, method, path, body, "Authorization", c.authorization); r.Status != want {
					t.Fatalf("%s: %d, want %d: %s", c.who, r.Status, want, r.Body)
				}
			}
		})
	}
}

// CheckWhoAsked fails t unless exactly operator of events (a stream's,
// after CheckEveryRouteKeepsStrangersOut) were appended by the Operator and
// none by the Stranger: who asked is recorded.
func CheckWhoAsked(t testing.TB, events []log.Event, operator int) {
	t.Helper()
	var byOperator int
	for _, e := range events {
		if e.Principal == Operator {
			byOperator++
		}
		if e.Principal == Stranger {
			t.Errorf("an event of the stranger was stored: %+v", e)
		}
	}
	if byOperator != operator {
		t.Errorf("%d events of the operator, want %d", byOperator, operator)
	}
}
