package writer_test

import (
	"net/http"
	"testing"

	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// TestEveryRouteKeepsStrangersOut drives every route of the writer's mux as
// the owner of the counters, as an operator, as a stranger, with a bad token
// and without one (G11): the stranger gets 403 and the others without valid
// credentials 401, and then Postgres holds exactly what it held before;
// the owner and the operator succeed (writertest.CheckEveryRouteKeepsStrangersOut).
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
	// requests says what each route is sent by whom: the owner's and the
	// operator's requests must succeed, so some act on counters of their own.
	requests := func(pattern, who string) (path, body string, want int) {
		increment := `{"amount":100,"unit":"items","note":"stocked"}`
		switch pattern {
		case "POST /v1/counters":
			// Anyone may create a counter; creating one that exists is acting on it.
			if who == "owner" || who == "operator" {
				return "/v1/counters", `{"id":"new-by-` + who + `","owner":"Ada","unit":"items"}`, http.StatusCreated
			}
			return "/v1/counters", `{"id":"a1","owner":"Mallory","unit":"items"}`, 0
		case "POST /v1/counters/{id}/start":
			id := "p-" + who
			if who != "owner" && who != "operator" {
				id = "p-owner"
			}
			return "/v1/counters/" + id + "/start", "", http.StatusOK
		case "POST /v1/counters/{id}/increments":
			return "/v1/counters/a1/increments", increment, http.StatusOK
		case "POST /v1/counters/{id}/decrements":
			return "/v1/counters/a1/decrements", `{"amount":100,"unit":"items","note":"used"}`, http.StatusOK
		case "POST /v1/counters/{id}/retire":
			id := "c-" + who
			if who != "owner" && who != "operator" {
				id = "c-owner"
			}
			return "/v1/counters/" + id + "/retire", `{"reason":"moving"}`, http.StatusOK
		case "GET /v1/streams/{type}/{id}":
			return "/v1/streams/counter/a1", "", http.StatusOK
		case "GET /v1/streams/{type}/{id}/state":
			return "/v1/streams/counter/a1/state?version=2", "", http.StatusOK
		}
		t.Fatalf("no request for route %q: add one to this test", pattern)
		return "", "", 0
	}

	routes := st.APIs[0].Routes()
	if len(routes) < 10 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	writertest.CheckEveryRouteKeepsStrangersOut(t, st, routes, requests)

	// Who asked is recorded: the operator's increment on alice's counter is
	// the operator's.
	_, events := fold(t, st, "a1")
	writertest.CheckWhoAsked(t, events, 2) // an increment and a decrement
}
