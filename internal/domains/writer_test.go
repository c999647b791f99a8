package domains_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/writer/writertest"
	"github.com/tributary-es/tributary/schemas"
)

// registered is this build's registry of domains, made once for the
// package's tests (each make costs the schemas' and documents' assembly).
var registered = domains.Must()

// newStack is processes writers of this build's domains over a fresh
// database (package writertest).
func newStack(t testing.TB, processes int) *writertest.Stack {
	t.Helper()
	return writertest.New(t, registered, processes)
}

// openActive opens and activates an account with a balance.
func openActive(st *writertest.Stack, id string, balance int64) {
	body, _ := json.Marshal(map[string]any{"id": id, "owner": "Ada", "currency": "EUR", "initialDeposit": balance})
	st.Must(http.StatusCreated, "POST", "/v1/accounts", string(body))
	st.Must(http.StatusOK, "POST", "/v1/accounts/"+id+"/activate", "")
}

// routeRequest is a request to one route of the writer, as one caller sends
// it.
type routeRequest struct {
	method, path, body string
}

// TestEveryRouteKeepsStrangersOut drives every command route of this
// build's domains as
// the owner of the accounts, as an operator, as a stranger, with a bad token
// and without one (G11): the stranger gets 403 and the others without valid
// credentials 401, and then Postgres holds exactly what it held before;
// the owner and the operator succeed.
func TestEveryRouteKeepsStrangersOut(t *testing.T) {
	st := newStack(t, 1)
	// alice (the stack's default principal) owns every account here.
	for _, id := range []string{"a1", "a2"} {
		openActive(st, id, 10_000)
	}
	for _, id := range []string{"c-owner", "c-operator"} { // to be closed: no balance
		openActive(st, id, 0)
	}
	for _, id := range []string{"p-owner", "p-operator"} {
		st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"`+id+`","owner":"Ada","currency":"EUR"}`)
	}
	owner := st.Bearer
	operator := st.Authorization("root", "operator")
	stranger := st.Authorization("mallory", "auditor")

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

	// The build's command routes; the platform's own (streams, health,
	// metrics, the document) are internal/writer's to test, on its fixture.
	var routes []string
	for _, rt := range registered.Writer().Routes {
		routes = append(routes, rt.Pattern)
	}
	if len(routes) < 6 {
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

	// Who asked is recorded: the operator's deposit on alice's account is
	// the operator's.
	events := st.Stream("account", "a1")
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
	openActive(st, "a1", 1000)
	openActive(st, "a2", 0)
	st.Must(http.StatusCreated, "POST", "/v1/accounts", `{"id":"p1","owner":"Bo","currency":"EUR"}`)

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
				events, keys := st.EventCount(), st.IdempotencyKeyCount(t)
				r := st.Do(0, "POST", route.path, body, "Idempotency-Key", "strict-"+strconv.Itoa(i)+"-"+strconv.Itoa(j))
				if r.Status != http.StatusBadRequest {
					t.Fatalf("%q: status %d, want 400: %s", body, r.Status, r.Body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q, want application/problem+json", ct)
				}
				p := r.JSON(t)
				if p["type"] != "https://tributary.dev/problems/"+kind.problem || p["status"] != float64(400) || p["title"] == "" || p["detail"] == "" {
					t.Fatalf("%q: problem %v, want %s", body, p, kind.problem)
				}
				if after := st.EventCount(); after != events {
					t.Errorf("stored %d events", after-events)
				}
				if after := st.IdempotencyKeyCount(t); after != keys {
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
		if r := st.Do(0, "POST", route.path, body); r.Status/100 != 2 {
			t.Errorf("POST %s %s: status %d, want 2xx: %s", route.path, body, r.Status, r.Body)
		}
	}
}

// GET /openapi.json of a writer of this build serves an OpenAPI 3.1
// document with exactly the platform's operations and this build's command
// routes. (internal/writer checks, on its fixture, that the document has
// exactly the routes of the writer's mux; the platform's operations are
// those of the fixture's document but the fixture's routes.)
func TestOpenAPIDocumentIsServedWithEveryRoute(t *testing.T) {
	st := newStack(t, 1)
	r := st.Must(http.StatusOK, "GET", "/openapi.json", "")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	doc, err := openapi3.NewLoader().LoadFromData(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	var documented []string
	for p, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+p)
		}
	}
	slices.Sort(documented)
	var routes []string
	for _, rt := range registered.Writer().Routes {
		routes = append(routes, rt.Pattern)
	}
	fixtureRoutes := map[string]bool{}
	for _, rt := range domaintest.Registry().Writer().Routes {
		fixtureRoutes[rt.Pattern] = true
	}
	for p, item := range domaintest.Registry().API("writer").OpenAPI().Paths.Map() {
		for method := range item.Operations() {
			if op := method + " " + p; !fixtureRoutes[op] {
				routes = append(routes, op)
			}
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
	doc := registered.API("writer").OpenAPI()
	served := make(map[string]bool)
	for _, v := range doc.Components.Schemas["AggregateType"].Value.Enum {
		served[fmt.Sprint(v)] = true
	}
	latest := latestEventSchemas(t)
	for key := range latest {
		if aggregateType, _, _ := strings.Cut(key, "/"); !served[aggregateType] {
			delete(latest, key)
		}
	}
	if len(latest) == 0 {
		t.Fatalf("no event schema of the served aggregate types %v", served)
	}
	documented := make(map[string]bool)
	for _, variant := range doc.Components.Schemas["Event"].Value.OneOf {
		props := variant.Value.Properties
		aggregateType, eventType := fmt.Sprint(props["aggregateType"].Value.Const), fmt.Sprint(props["type"].Value.Const)
		version, err := strconv.Atoi(fmt.Sprint(props["schemaVersion"].Value.Const))
		if err != nil {
			t.Fatalf("%s: schemaVersion %v", eventType, props["schemaVersion"].Value.Const)
		}
		key := aggregateType + "/" + eventType
		documented[key] = true
		if latest[key] != version {
			t.Errorf("%s: the document has v%d, the latest schema is v%d", key, version, latest[key])
			continue
		}
		file := fmt.Sprintf("events/%s/%s.v%d.json", aggregateType, eventType, version)
		raw, err := fs.ReadFile(schemas.Events, file)
		if err != nil {
			t.Fatal(err)
		}
		want := normalizedSchema(t, raw)
		got, err := json.Marshal(props["payload"].Value)
		if err != nil {
			t.Fatal(err)
		}
		if g := normalizedSchema(t, got); !reflect.DeepEqual(g, want) {
			t.Errorf("%s: the document's payload schema\n%v\nis not %s\n%v", key, g, file, want)
		}
	}
	if got, want := slices.Sorted(maps.Keys(documented)), slices.Sorted(maps.Keys(latest)); !slices.Equal(got, want) {
		t.Errorf("the document has events %v, schemas/events has %v", got, want)
	}
}

var eventSchemaFile = regexp.MustCompile(`^events/([^/]+)/([A-Za-z0-9]+)\.v([0-9]+)\.json$`)

// latestEventSchemas maps "<aggregate type>/<event type>" to its latest schema version.
func latestEventSchemas(t *testing.T) map[string]int {
	t.Helper()
	latest := make(map[string]int)
	err := fs.WalkDir(schemas.Events, "events", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		m := eventSchemaFile.FindStringSubmatch(p)
		if m == nil {
			return fmt.Errorf("%s: unexpected file name", path.Base(p))
		}
		v, _ := strconv.Atoi(m[3])
		latest[m[1]+"/"+m[2]] = max(latest[m[1]+"/"+m[2]], v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return latest
}

// normalizedSchema drops what does not constrain: identification,
// annotations, and an empty properties.
func normalizedSchema(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"$schema", "$id", "title", "description"} {
		delete(s, k)
	}
	if p, ok := s["properties"].(map[string]any); ok && len(p) == 0 {
		delete(s, "properties")
	}
	return s
}
