package writer_test

import (
	"context"
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
// the owner of the accounts, as an operator, as a stranger, with a bad token
// and without one (G11): the stranger gets 403 and the others without valid
// credentials 401, and then Postgres holds exactly what it held before;
// the owner and the operator succeed.
func TestEveryRouteKeepsStrangersOut(t *testing.T) {
	st := newStack(t, 1)
	// alice (the stack's default principal) owns every account here.
	for _, id := range []string{"a1", "a2"} {
		st.openActive(id, 10_000)
	}
	for _, id := range []string{"c-owner", "c-operator"} { // to be closed: no balance
		st.openActive(id, 0)
	}
	for _, id := range []string{"p-owner", "p-operator"} {
		st.must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"`+id+`","owner":"Ada","currency":"EUR"}`)
	}
	owner := st.bearer
	operator := st.authorization("root", "operator")
	stranger := st.authorization("mallory", "auditor")

	// requests says what each route is sent by whom: the owner's and the
	// operator's requests must succeed, so some act on accounts of their own.
	requests := func(pattern, who string) (routeRequest, int) {
		deposit := `{"amount":100,"currency":"EUR","source":"salary"}`
		switch pattern {
		case "POST /v1/accounts":
			// Anyone may open an account; opening one that exists is acting on it.
			if who == "owner" || who == "operator" {
				return routeRequest{"POST", "/v1/accounts", `{"id":"new-by-` + who + `","owner":"Ada","currency":"EUR"}`}, http.StatusCreated
			}
			return routeRequest{"POST", "/v1/accounts", `{"id":"a1","owner":"Mallory","currency":"EUR"}`}, 0
		case "POST /v1/accounts/{id}/activate":
			id := "p-" + who
			if who != "owner" && who != "operator" {
				id = "p-owner"
			}
			return routeRequest{"POST", "/v1/accounts/" + id + "/activate", ""}, http.StatusOK
		case "POST /v1/accounts/{id}/deposits":
			return routeRequest{"POST", "/v1/accounts/a1/deposits", deposit}, http.StatusOK
		case "POST /v1/accounts/{id}/withdrawals":
			return routeRequest{"POST", "/v1/accounts/a1/withdrawals", `{"amount":100,"currency":"EUR","reason":"rent"}`}, http.StatusOK
		case "POST /v1/accounts/{id}/close":
			id := "c-" + who
			if who != "owner" && who != "operator" {
				id = "c-owner"
			}
			return routeRequest{"POST", "/v1/accounts/" + id + "/close", `{"reason":"moving"}`}, http.StatusOK
		case "POST /v1/transfers":
			return routeRequest{"POST", "/v1/transfers", `{"id":"t-` + who + `","from":"a1","to":"a2","amount":10,"currency":"EUR","reference":"rent"}`}, http.StatusCreated
		case "GET /v1/streams/{type}/{id}":
			return routeRequest{"GET", "/v1/streams/account/a1", ""}, http.StatusOK
		case "GET /v1/streams/{type}/{id}/state":
			return routeRequest{"GET", "/v1/streams/account/a1/state?version=2", ""}, http.StatusOK
		case "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json":
			return routeRequest{"GET", strings.TrimPrefix(pattern, "GET "), ""}, http.StatusOK
		}
		t.Fatalf("no request for route %q: add one to this test", pattern)
		return routeRequest{}, 0
	}
	public := map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /openapi.json": true}

	routes := st.apis[0].Routes()
	if len(routes) < 10 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for i, pattern := range routes {
		t.Run(pattern, func(t *testing.T) {
			if public[pattern] {
				rq, want := requests(pattern, "anonymous")
				if r := st.do(0, rq.method, rq.path, rq.body, "Authorization", ""); r.status != want {
					t.Fatalf("without a token: %d, want %d: %s", r.status, want, r.body)
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
				before := st.databaseDigest()
				rq, _ := requests(pattern, c.who)
				r := st.do(0, rq.method, rq.path, rq.body, "Authorization", c.authorization, "Idempotency-Key", fmt.Sprintf("key-%d-%s", i, c.who))
				if r.status != c.want {
					t.Fatalf("%s: %d, want %d: %s", c.who, r.status, c.want, r.body)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("%s: content type %q", c.who, ct)
				}
				if after := st.databaseDigest(); after != before {
					t.Fatalf("%s's refused request changed Postgres:\nbefore %s\nafter  %s", c.who, before, after)
				}
			}
			for _, c := range []struct{ who, authorization string }{{"owner", owner}, {"operator", operator}} {
				rq, want := requests(pattern, c.who)
				if r := st.do(0, rq.method, rq.path, rq.body, "Authorization", c.authorization); r.status != want {
					t.Fatalf("%s: %d, want %d: %s", c.who, r.status, want, r.body)
				}
			}
		})
	}

	// Who asked is recorded: the operator's deposit on alice's account is
	// the operator's.
	_, events := st.fold("a1")
	var byOperator int
	for _, e := range events {
		if e.Principal == "root" {
			byOperator++
		}
		if e.Principal == "mallory" {
			t.Errorf("an event of the stranger was stored: %+v", e)
		}
	}
	if byOperator != 2 { // a deposit and a withdrawal
		t.Errorf("%d events of the operator on a1, want 2", byOperator)
	}
}

// TestTransferNeedsTheSourcesOwner: a principal may move money out of its
// own accounts only; into anyone's.
func TestTransferNeedsTheSourcesOwner(t *testing.T) {
	st := newStack(t, 1)
	st.openActive("alice-1", 5_000)
	bob := st.authorization("bob")
	st.must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"bob-1","owner":"Bob","currency":"EUR"}`, "Authorization", bob)
	st.must(http.StatusOK, "POST", "/v1/accounts/bob-1/activate", "", "Authorization", bob)
	before := st.databaseDigest()
	for name, body := range map[string]string{
		"from-alice":   `{"id":"t1","from":"alice-1","to":"bob-1","amount":10,"currency":"EUR"}`,
		"from-unknown": `{"id":"t2","from":"nobody-1","to":"bob-1","amount":10,"currency":"EUR"}`,
	} {
		r := st.do(0, "POST", "/v1/transfers", body, "Authorization", bob, "Idempotency-Key", "k-"+name)
		if r.status != http.StatusForbidden {
			t.Fatalf("bob, %s: %d, want 403: %s", name, r.status, r.body)
		}
	}
	if st.databaseDigest() != before {
		t.Fatal("refused transfers changed Postgres")
	}
	// Into alice's account from his own: fine.
	st.must(http.StatusCreated, "POST", "/v1/transfers", `{"id":"t3","from":"bob-1","to":"alice-1","amount":5,"currency":"EUR","reference":"gift"}`, "Authorization", bob)
}

// databaseDigest sums up what Postgres holds for the writer: the events,
// snapshots and Idempotency-Keys, row by row.
func (st *stack) databaseDigest() string {
	st.t.Helper()
	var digest string
	err := st.pool.QueryRow(context.Background(), `SELECT concat_ws(' ',
        (SELECT count(*) || ':' || coalesce(md5(string_agg(e::text, ',' ORDER BY global_position)), '') FROM events e),
        (SELECT count(*) || ':' || coalesce(md5(string_agg(s::text, ',' ORDER BY aggregate_type, aggregate_id)), '') FROM snapshots s),
        (SELECT count(*) || ':' || coalesce(md5(string_agg(k::text, ',' ORDER BY principal, key)), '') FROM idempotency_keys k))`).Scan(&digest)
	if err != nil {
		st.t.Fatal(err)
	}
	return digest
}
