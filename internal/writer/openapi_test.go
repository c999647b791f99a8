package writer_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// GET /openapi.json serves an OpenAPI 3.1 document with exactly the routes
// the writer's mux has.
func TestOpenAPIDocumentIsServedWithEveryRoute(t *testing.T) {
	st := newStack(t, 1)
	documented := writertest.ServedOperations(t, st)
	routes := slices.Sorted(slices.Values(st.APIs[0].Routes()))
	if !slices.Equal(documented, routes) {
		t.Fatalf("documented operations\n%s\nwant the mux's routes\n%s", strings.Join(documented, "\n"), strings.Join(routes, "\n"))
	}
}

// The validator that checks every exchange of the writer's tests fails a
// response the document does not allow: the writer's real answers pass,
// the same answers altered do not.
func TestOpenAPIValidatorCatchesAnswersTheDocumentDoesNotAllow(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 100) // version 3

	type answer struct {
		status int
		header http.Header
		body   map[string]any
	}
	// edit changes one member of a JSON object, a path of keys and indexes deep.
	edit := func(body map[string]any, value any, keys ...any) {
		var node any = body
		for i, k := range keys {
			last := i == len(keys)-1
			switch n := node.(type) {
			case map[string]any:
				if last {
					if value == nil {
						delete(n, k.(string))
					} else {
						n[k.(string)] = value
					}
					return
				}
				node = n[k.(string)]
			case []any:
				if last {
					n[k.(int)] = value
					return
				}
				node = n[k.(int)]
			}
		}
	}
	const increment = `{"amount":5,"unit":"items","note":"x"}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		alter                    func(a *answer)
		want                     string // in the validation error
	}{
		{"a status the command does not document", "POST", "/v1/counters/a1/increments", increment, nil,
			func(a *answer) { a.status = http.StatusAccepted }, "status 202 is not documented"},
		{"a member the command result does not have", "POST", "/v1/counters/a1/increments", increment, nil,
			func(a *answer) { edit(a.body, 105, "value") }, `"value" is unsupported`},
		{"a command result without its global position", "POST", "/v1/counters/a1/increments", increment, nil,
			func(a *answer) { edit(a.body, nil, "globalPosition") }, `"globalPosition" is missing`},
		{"an appended event of an unknown type", "POST", "/v1/counters/a1/increments", increment, nil,
			func(a *answer) { edit(a.body, "CounterStolen", "events", 0, "type") }, `"/events/0/type"`},
		{"no ETag", "POST", "/v1/counters/a1/increments", increment, nil,
			func(a *answer) { a.header.Del("ETag") }, `"ETag" missing`},
		{"a weak ETag", "POST", "/v1/counters/a1/increments", increment, nil,
			func(a *answer) { a.header.Set("ETag", `W/"4"`) }, `"ETag" doesn't match`},
		{"a create without Location", "POST", "/v1/counters", `{"owner":"Ada","unit":"items"}`, nil,
			func(a *answer) { a.header.Del("Location") }, `"Location" missing`},
		{"an undocumented problem type", "POST", "/v1/counters/a1/decrements", `{"amount":500,"unit":"items","note":"x"}`, nil,
			func(a *answer) { edit(a.body, "https://tributary.dev/problems/overdraft", "type") }, `"/type"`},
		{"a problem whose status is not the response's", "POST", "/v1/counters/a1/decrements", `{"amount":500,"unit":"items","note":"x"}`, nil,
			func(a *answer) { edit(a.body, 400.0, "status") }, "value must be 422"},
		{"a 412 without currentVersion", "POST", "/v1/counters/a1/increments", increment, []string{"If-Match", `"1"`},
			func(a *answer) { edit(a.body, nil, "currentVersion") }, "missing property 'currentVersion'"},
		{"a problem sent as JSON", "POST", "/v1/counters/nobody/increments", increment, nil,
			func(a *answer) { a.header.Set("Content-Type", "application/json") }, "Content-Type has unexpected value"},
		{"an event whose payload is another type's", "GET", "/v1/streams/counter/a1", "", nil,
			func(a *answer) {
				edit(a.body, map[string]any{"amount": 100.0, "unit": "items"}, "events", 0, "payload")
			}, "'/events/0/payload': missing property 'owner'"},
		{"an event without its principal", "GET", "/v1/streams/counter/a1", "", nil,
			func(a *answer) { edit(a.body, nil, "events", 1, "principal") }, "missing property 'principal'"},
		{"an event id that is not a UUID", "GET", "/v1/streams/counter/a1", "", nil,
			func(a *answer) { edit(a.body, "e-1", "events", 2, "id") }, "'e-1' is not valid uuid"},
		{"a negative value", "GET", "/v1/streams/counter/a1/state", "", nil,
			func(a *answer) { edit(a.body, -1.0, "state", "value") }, "/value\": number must be at least 0"},
		{"readiness saying something else", "GET", "/readyz", "", nil,
			func(a *answer) { edit(a.body, "ok", "status") }, "value must be 'ready'"},
		{"a refused request answered 200", "POST", "/v1/counters/a1/increments", `{"amount":-5,"unit":"items","note":"x"}`, nil,
			func(a *answer) { a.status = http.StatusOK }, "must be refused with a 4xx, not 200"},
		{"an unknown route answered 200", "DELETE", "/v1/counters/a1", "", nil,
			func(a *answer) { a.status = http.StatusOK }, "matches no operation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("Authorization", st.Bearer)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				req.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			rec := httptest.NewRecorder()
			st.Handlers[0].ServeHTTP(rec, req)
			if err := st.Spec.Validate(req, []byte(tc.body), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
				t.Fatalf("the writer's own answer %d fails: %v\n%s", rec.Code, err, rec.Body)
			}
			a := answer{status: rec.Code, header: rec.Header().Clone()}
			if err := json.Unmarshal(rec.Body.Bytes(), &a.body); err != nil {
				t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
			}
			tc.alter(&a)
			body, err := json.Marshal(a.body)
			if err != nil {
				t.Fatal(err)
			}
			err = st.Spec.Validate(req, []byte(tc.body), a.status, a.header, body)
			if err == nil {
				t.Fatalf("altered answer %d %s passes, want an error about %q", a.status, body, tc.want)
			}
			// The reason comes first; schema and value dumps follow. For a
			// oneOf (an event's payload) the reasons of every variant come,
			// in no fixed order: the one of the variant of the event's type
			// must be among them.
			reason, _, _ := strings.Cut(err.Error(), "\n")
			if strings.HasPrefix(tc.path, "/v1/streams/") && strings.Contains(tc.want, "payload") {
				reason = err.Error()
			}
			if !strings.Contains(reason, tc.want) {
				t.Fatalf("altered answer %d %s: error %v, want one about %q", a.status, body, err, tc.want)
			}
		})
	}
}

// The event payloads in the OpenAPI document are the JSON Schemas the store
// validates with (the fixture's events/), at the latest version of each type, the
// one a stream read upcasts to — for every aggregate type the writer serves.
func TestOpenAPIEventPayloadsAreTheEventSchemas(t *testing.T) {
	writertest.CheckEventPayloadsAreTheEventSchemas(t, fixture.API("writer").OpenAPI(), domaintest.Events())
}

// An optional member may be null, which is the same as absent; the document
// says so with type [T, "null"], and the validator checks these requests
// against it.
func TestNullOptionalMembersAreAbsent(t *testing.T) {
	st := newStack(t, 1)
	created := st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":null,"owner":"Ada","unit":"items","initial":null}`).Command(t)
	if len(created.Events) != 1 || created.Events[0].Type != "CounterCreated" {
		t.Fatalf("created with %+v, want CounterCreated alone", created.Events)
	}
	st.Must(http.StatusOK, "POST", "/v1/counters/"+created.AggregateID+"/start", `{}`)
	st.Must(http.StatusOK, "POST", "/v1/counters/"+created.AggregateID+"/retire", `{"reason":null}`)
}
