package writer_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domain/account"
)

// strictBodyRoutes are the routes that take a body. Each template is a body
// the route takes, with § in a string member; dup is a member it already
// has, named again. ActivateAccount takes no member, so its template has an
// unknown one: the strict checks must come first all the same.
var strictBodyRoutes = []struct {
	path, template, dup string
}{
	{"/v1/accounts", `{"id":"s1","owner":"§","currency":"EUR"}`, `"owner":"Mallory"`},
	{"/v1/accounts/p1/activate", `{"note":"§"}`, `"note":"again"`},
	{"/v1/accounts/a1/deposits", `{"amount":1,"currency":"EUR","source":"§"}`, `"amount":999999`},
	{"/v1/accounts/a1/withdrawals", `{"amount":1,"currency":"EUR","reason":"§"}`, `"\u0061mount":999999`},
	{"/v1/accounts/a2/close", `{"reason":"§"}`, `"reason":"again"`},
	{"/v1/transfers", `{"id":"t1","from":"a1","to":"a2","amount":1,"currency":"EUR","reference":"§"}`, `"to":"a3"`},
}

// A body with a member name twice, bytes that are not UTF-8 or a lone
// surrogate escape is refused on every route with a body, before anything
// is written (G12).
func TestStrictJSONBodiesOnEveryRoute(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("a1", 1000)
	st.openActive("a2", 0)
	st.must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"p1","owner":"Bo","currency":"EUR"}`)

	kinds := []struct {
		name, problem string
		body          func(template, dup string) string
	}{
		{"duplicate member", "duplicate-member", func(template, dup string) string {
			body := strings.Replace(template, "§", "x", 1)
			return body[:len(body)-1] + "," + dup + "}"
		}},
		{"invalid UTF-8", "invalid-utf8", func(template, _ string) string {
			return strings.Replace(template, "§", "caf\xe9", 1) // é in Latin-1
		}},
		{"lone surrogate", "invalid-unicode-escape", func(template, _ string) string {
			return strings.Replace(template, "§", `\ud800`, 1)
		}},
	}
	for i, route := range strictBodyRoutes {
		for j, kind := range kinds {
			t.Run(route.path+"/"+kind.name, func(t *testing.T) {
				body := kind.body(route.template, route.dup)
				events, keys := st.eventCount(), st.idempotencyKeyCount(t)
				r := st.do(0, "POST", route.path, body, "Idempotency-Key", "strict-"+strconv.Itoa(i)+"-"+strconv.Itoa(j))
				if r.status != http.StatusBadRequest {
					t.Fatalf("%q: status %d, want 400: %s", body, r.status, r.body)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q, want application/problem+json", ct)
				}
				p := r.json(t)
				if p["type"] != "https://tributary.dev/problems/"+kind.problem || p["status"] != float64(400) || p["title"] == "" || p["detail"] == "" {
					t.Fatalf("%q: problem %v, want %s", body, p, kind.problem)
				}
				if after := st.eventCount(); after != events {
					t.Errorf("stored %d events", after-events)
				}
				if after := st.idempotencyKeyCount(t); after != keys {
					t.Errorf("stored %d idempotency keys", after-keys)
				}
			})
		}
	}

	// The same bodies, clean, are taken: the refusals above were for what
	// was wrong with them, not for anything else.
	for _, route := range strictBodyRoutes {
		body := strings.Replace(route.template, "§", "x", 1)
		if strings.HasSuffix(route.path, "/activate") {
			body = "" // no member to carry a value
		}
		if r := st.do(0, "POST", route.path, body); r.status/100 != 2 {
			t.Errorf("POST %s %s: status %d, want 2xx: %s", route.path, body, r.status, r.body)
		}
	}
}

// What is close to the refused bodies but right is taken, and stored as sent.
func TestStrictJSONTakesSurrogatePairsAndMultibyteUTF8(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("a1", 0)
	st.must(http.StatusOK, "POST", "/v1/accounts/a1/deposits", `{"amount":5,"currency":"EUR","sour\u0063e":"caf\u00e9 \ud83d\ude00 Zoë"}`)
	_, stored := st.fold("a1")
	last := stored[len(stored)-1]
	ev, err := account.DecodeEvent(last.Type, last.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := ev.(account.FundsDeposited); !ok || d.Source != "café 😀 Zoë" || d.Amount != 5 {
		t.Fatalf("stored %T %+v, want a deposit of 5 from %q", ev, ev, "café 😀 Zoë")
	}
}

func (st *stack) idempotencyKeyCount(t testing.TB) int {
	t.Helper()
	var n int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
