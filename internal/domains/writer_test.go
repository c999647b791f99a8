package domains_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/writer/writertest"
	"github.com/tributary-es/tributary/schemas"
)

// TestEveryRouteKeepsStrangersOut drives every command route of this
// build's domains as the owner of the accounts, as an operator, as a
// stranger, with a bad token and without one (G11): the stranger gets 403
// and the others without valid credentials 401, and then Postgres holds
// exactly what it held before; the owner and the operator succeed
// (writertest.CheckEveryRouteKeepsStrangersOut).
func TestEveryRouteKeepsStrangersOut(t *testing.T) {
	st := banktest.NewStack(t, 1)
	// alice (the stack's default principal) owns every account here.
	for _, id := range []string{"a1", "a2"} {
		banktest.OpenActive(st, id, 10_000)
	}
	for _, id := range []string{"c-owner", "c-operator"} { // to be closed: no balance
		banktest.OpenActive(st, id, 0)
	}
	for _, id := range []string{"p-owner", "p-operator"} {
		st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"`+id+`","owner":"Ada","currency":"EUR"}`)
	}
	// requests says what each route is sent by whom: the owner's and the
	// operator's requests must succeed, so some act on accounts of their own.
	requests := func(pattern, who string) (path, body string, want int) {
		deposit := `{"amount":100,"currency":"EUR","source":"salary"}`
		switch pattern {
		case "POST /v1/accounts":
			// Anyone may open an account; opening one that exists is acting on it.
			if who == "owner" || who == "operator" {
				return "/v1/accounts", `{"id":"new-by-` + who + `","owner":"Ada","currency":"EUR"}`, http.StatusCreated
			}
			return "/v1/accounts", `{"id":"a1","owner":"Mallory","currency":"EUR"}`, 0
		case "POST /v1/accounts/{id}/activate":
			id := "p-" + who
			if who != "owner" && who != "operator" {
				id = "p-owner"
			}
			return "/v1/accounts/" + id + "/activate", "", http.StatusOK
		case "POST /v1/accounts/{id}/deposits":
			return "/v1/accounts/a1/deposits", deposit, http.StatusOK
		case "POST /v1/accounts/{id}/withdrawals":
			return "/v1/accounts/a1/withdrawals", `{"amount":100,"currency":"EUR","reason":"rent"}`, http.StatusOK
		case "POST /v1/accounts/{id}/close":
			id := "c-" + who
			if who != "owner" && who != "operator" {
				id = "c-owner"
			}
			return "/v1/accounts/" + id + "/close", `{"reason":"moving"}`, http.StatusOK
		case "POST /v1/transfers":
			return "/v1/transfers", `{"id":"t-` + who + `","from":"a1","to":"a2","amount":10,"currency":"EUR","reference":"rent"}`, http.StatusCreated
		case "GET /v1/streams/{type}/{id}":
			return "/v1/streams/account/a1", "", http.StatusOK
		case "GET /v1/streams/{type}/{id}/state":
			return "/v1/streams/account/a1/state?version=2", "", http.StatusOK
		}
		t.Fatalf("no request for route %q: add one to this test", pattern)
		return "", "", 0
	}

	// The build's command routes; the platform's own (streams, health,
	// metrics, the document) are internal/writer's to test, on its fixture.
	var routes []string
	for _, rt := range banktest.Registry().Writer().Routes {
		routes = append(routes, rt.Pattern)
	}
	if len(routes) < 6 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	writertest.CheckEveryRouteKeepsStrangersOut(t, st, routes, requests)

	// Who asked is recorded: the operator's deposit on alice's account is
	// the operator's.
	events := st.Stream("account", "a1")
	writertest.CheckWhoAsked(t, events, 2) // a deposit and a withdrawal
}

// A body with a member name twice, bytes that are not UTF-8 or a lone
// surrogate escape is refused on every route with a body, before anything
// is written (G12; writertest.CheckStrictJSONBodies).
func TestStrictJSONBodiesOnEveryRoute(t *testing.T) {
	st := banktest.NewStack(t, 1)
	banktest.OpenActive(st, "a1", 1000)
	banktest.OpenActive(st, "a2", 0)
	st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"p1","owner":"Bo","currency":"EUR"}`)

	// The routes that take a body. ActivateAccount takes no member, so its
	// template has an unknown one.
	routes := []writertest.BodyRoute{
		{Path: "/v1/accounts", Template: `{"id":"s1","owner":"§","currency":"EUR"}`, Dup: `"owner":"Mallory"`},
		{Path: "/v1/accounts/p1/activate", Template: `{"note":"§"}`, Dup: `"note":"again"`, NoMembers: true},
		{Path: "/v1/accounts/a1/deposits", Template: `{"amount":1,"currency":"EUR","source":"§"}`, Dup: `"amount":999999`},
		{Path: "/v1/accounts/a1/withdrawals", Template: `{"amount":1,"currency":"EUR","reason":"§"}`, Dup: `"\u0061mount":999999`},
		{Path: "/v1/accounts/a2/close", Template: `{"reason":"§"}`, Dup: `"reason":"again"`},
		{Path: "/v1/transfers", Template: `{"id":"t1","from":"a1","to":"a2","amount":1,"currency":"EUR","reference":"§"}`, Dup: `"to":"a3"`},
	}
	writertest.CheckStrictJSONBodies(t, st, routes)
}

// GET /openapi.json of a writer of this build serves an OpenAPI 3.1
// document with exactly the platform's operations and this build's command
// routes. (internal/writer checks, on its fixture, that the document has
// exactly the routes of the writer's mux; the platform's operations are
// those of the fixture's document but the fixture's routes.)
func TestOpenAPIDocumentIsServedWithEveryRoute(t *testing.T) {
	st := banktest.NewStack(t, 1)
	documented := writertest.ServedOperations(t, st)
	var routes []string
	for _, rt := range banktest.Registry().Writer().Routes {
		routes = append(routes, rt.Pattern)
	}
	fixtureRoutes := map[string]bool{}
	for _, rt := range domaintest.Registry().Writer().Routes {
		fixtureRoutes[rt.Pattern] = true
	}
	for op := range writertest.Operations(domaintest.Registry().API("writer").OpenAPI()) {
		if !fixtureRoutes[op] {
			routes = append(routes, op)
		}
	}
	slices.Sort(routes)
	if !slices.Equal(documented, routes) {
		t.Fatalf("documented operations\n%s\nwant the mux's routes\n%s", strings.Join(documented, "\n"), strings.Join(routes, "\n"))
	}
}

// The event payloads in the OpenAPI document are the JSON Schemas the store
// validates with (schemas/events), at the latest version of each type, the
// one a stream read upcasts to — for every aggregate type the writer serves.
func TestOpenAPIEventPayloadsAreTheEventSchemas(t *testing.T) {
	writertest.CheckEventPayloadsAreTheEventSchemas(t, banktest.Registry().API("writer").OpenAPI(), schemas.Events)
}
