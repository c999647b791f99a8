package writer_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// routeRequest is a request to one route of the writer, as one caller sends
// it.
type routeRequest struct {
	method, path, body string
}

// TestEveryRouteKeepsStrangersOut drives every route of the writer's mux as
// the owner of the counters, as an operator, as a stranger, with a bad token
// and without one (G11): the stranger gets 403 and the others without valid
// credentials 401, and then Postgres holds exactly what it held before;
// the owner and the operator succeed.
func TestEveryRouteKeepsStrangersOut(t *testing.T) {
	st := newStack(t, 1)
	// alice (the stack's default principal) owns every counter here.
	for _, id := range []string{"a1", "a2"} {
		openActive(st, id, 10_000)
	}
	for _, id := range []string{"c-owner", "c-operator"} { // to be retired: no value
		openActive(st, id, 0)
	}
	for _, id := range []string{"p-owner", "p-operator"} {
		st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"`+id+`","owner":"Ada","unit":"items"}`)
	}
	owner := st.Bearer
	operator := st.Authorization("root", "operator")
	stranger := st.Authorization("mallory", "auditor")

	// requests says what each route is sent by whom: the owner's and the
	// operator's requests must succeed, so some act on counters of their own.
	requests := func(pattern, who string) (routeRequest, int) {
		increment := `{"amount":100,"unit":"items","note":"stocked"}`
		switch pattern {
		case "POST /v1/counters":
			// Anyone may create a counter; creating one that exists is acting on it.
			if who == "owner" || who == "operator" {
				return routeRequest{"POST", "/v1/counters", `{"id":"new-by-` + who + `","owner":"Ada","unit":"items"}`}, http.StatusCreated
			}
			return routeRequest{"POST", "/v1/counters", `{"id":"a1","owner":"Mallory","unit":"items"}`}, 0
		case "POST /v1/counters/{id}/start":
			id := "p-" + who
			if who != "owner" && who != "operator" {
				id = "p-owner"
			}
			return routeRequest{"POST", "/v1/counters/" + id + "/start", ""}, http.StatusOK
		case "POST /v1/counters/{id}/increments":
			return routeRequest{"POST", "/v1/counters/a1/increments", increment}, http.StatusOK
		case "POST /v1/counters/{id}/decrements":
			return routeRequest{"POST", "/v1/counters/a1/decrements", `{"amount":100,"unit":"items","note":"used"}`}, http.StatusOK
		case "POST /v1/counters/{id}/retire":
			id := "c-" + who
			if who != "owner" && who != "operator" {
				id = "c-owner"
			}
			return routeRequest{"POST", "/v1/counters/" + id + "/retire", `{"reason":"moving"}`}, http.StatusOK
		case "GET /v1/streams/{type}/{id}":
			return routeRequest{"GET", "/v1/streams/counter/a1", ""}, http.StatusOK
		case "GET /v1/streams/{type}/{id}/state":
			return routeRequest{"GET", "/v1/streams/counter/a1/state?version=2", ""}, http.StatusOK
		case "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json":
			return routeRequest{"GET", strings.TrimPrefix(pattern, "GET "), ""}, http.StatusOK
		}
		t.Fatalf("no request for route %q: add one to this test", pattern)
		return routeRequest{}, 0
	}
	public := map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /openapi.json": true}

	routes := st.APIs[0].Routes()
	if len(routes) < 10 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for i, pattern := range routes {
		t.Run(pattern, func(t *testing.T) {
			if public[pattern] {
				rq, want := requests(pattern, "anonymous")
				if r := st.Do(0, rq.method, rq.path, rq.body, "Authorization", ""); r.Status != want {
					t.Fatalf("without a token: %d, want %d: %s", r.Status, want, r.Body)
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
				rq, _ := requests(pattern, c.who)
				r := st.Do(0, rq.method, rq.path, rq.body, "Authorization", c.authorization, "Idempotency-Key", fmt.Sprintf("key-%d-%s", i, c.who))
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
				rq, want := requests(pattern, c.who)
				if r := st.Do(0, rq.method, rq.path, rq.body, "Authorization", c.authorization); r.Status != want {
					t.Fatalf("%s: %d, want %d: %s", c.who, r.Status, want, r.Body)
				}
			}
		})
	}

	// Who asked is recorded: the operator's increment on alice's counter is
	// the operator's.
	_, events := fold(t, st, "a1")
	var byOperator int
	for _, e := range events {
		if e.Principal == "root" {
			byOperator++
		}
		if e.Principal == "mallory" {
			t.Errorf("an event of the stranger was stored: %+v", e)
		}
	}
	if byOperator != 2 { // an increment and a decrement
		t.Errorf("%d events of the operator on a1, want 2", byOperator)
	}
}
