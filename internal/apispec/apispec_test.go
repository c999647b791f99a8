package apispec

import (
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/schemas"
)

// Every document in schemas/openapi loads as a valid OpenAPI 3.1 document.
func TestEveryDocumentLoadsAsOpenAPI31(t *testing.T) {
	docs, err := names()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(docs, "writer") {
		t.Fatalf("documents %v lack writer", docs)
	}
	for _, name := range docs {
		doc := realDocument(t, name).OpenAPI()
		if !strings.HasPrefix(doc.OpenAPI, "3.1.") || doc.Paths.Len() == 0 {
			t.Errorf("%s: openapi %q with %d paths", name, doc.OpenAPI, doc.Paths.Len())
		}
	}
}

func TestBaseRefusesWhatIsNotAnEmbeddedDocument(t *testing.T) {
	for _, name := range []string{"", ".", "..", "../events/account/AccountOpened.v1", "openapi/writer", "writer.yaml", "nothing"} {
		if _, err := Base(name); err == nil {
			t.Errorf("Base(%q) succeeded", name)
		}
	}
}

func TestParseWantsAValidOpenAPI31Document(t *testing.T) {
	for name, doc := range map[string]string{
		"3.0":          "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n",
		"3.2":          "openapi: 3.2.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
		"no info":      "openapi: 3.1.0\npaths: {}\n",
		"dangling ref": "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents: {schemas: {A: {$ref: '#/components/schemas/B'}}}\n",
		"not yaml":     "openapi: [",
	} {
		if _, err := parse(name+".yaml", []byte(doc)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := parse("ok.yaml", []byte(testDocument)); err != nil {
		t.Fatalf("the test document: %v", err)
	}
}

// The handler serves the document as JSON that loads again as the same
// OpenAPI 3.1 document.
func TestHandlerServesTheDocumentAsJSON(t *testing.T) {
	docs, err := names()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range docs {
		h := realDocument(t, name).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: %d %q, valid JSON %v", name, rec.Code, rec.Header().Get("Content-Type"), json.Valid(rec.Body.Bytes()))
		}
		served, err := parse(name+".json", rec.Body.Bytes())
		if err != nil {
			t.Fatalf("%s: the served JSON does not load: %v", name, err)
		}
		loaded := realDocument(t, name).OpenAPI()
		if got, want := operations(served), operations(loaded); !slices.Equal(got, want) {
			t.Errorf("%s: served operations %v, want %v", name, got, want)
		}
		if got, want := slices.Sorted(maps.Keys(served.Components.Schemas)), slices.Sorted(maps.Keys(loaded.Components.Schemas)); !slices.Equal(got, want) {
			t.Errorf("%s: served schemas %v, want %v", name, got, want)
		}
	}
}

func operations(doc *openapi3.T) []string {
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, method+" "+path+" "+strings.Join(slices.Sorted(maps.Keys(op.Responses.Map())), ","))
		}
	}
	slices.Sort(ops)
	return ops
}

// testDocument exercises what the validator relies on, independently of
// the real documents.
const testDocument = `
openapi: 3.1.0
info: {title: test, version: "1"}
paths:
  /things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, pattern: '^[a-z]+$'}}
    get:
      parameters:
        - {name: If-Match, in: header, schema: {type: string, pattern: '^"[0-9]+"$'}}
      responses:
        '200':
          description: a thing
          headers:
            ETag: {required: true, schema: {type: string, pattern: '^"[0-9]+"$'}}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Thing'}
        '404':
          description: no such thing
          content:
            application/problem+json:
              schema:
                allOf: [{$ref: '#/components/schemas/Problem'}]
                properties: {status: {const: 404}}
                unevaluatedProperties: false
    put:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Thing'}
      responses:
        '204': {description: stored}
        '400':
          description: refused
          content:
            application/problem+json:
              schema: {$ref: '#/components/schemas/Problem'}
components:
  schemas:
    Thing:
      type: object
      additionalProperties: false
      required: [id, owner]
      properties:
        id: {type: string, format: uuid}
        owner: {type: [string, 'null']}
    Problem:
      type: object
      required: [type, title, status]
      properties:
        type: {type: string, format: uri}
        title: {type: string}
        status: {type: integer, minimum: 400, maximum: 599}
`

func testValidator(t *testing.T) *Validator {
	t.Helper()
	doc, err := parse("test.yaml", []byte(testDocument))
	if err != nil {
		t.Fatal(err)
	}
	v, err := newValidator("test", doc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidate(t *testing.T) {
	v := testValidator(t)
	const thing = `{"id":"0190a0b0-7c1d-7e2f-8a3b-4c5d6e7f8091","owner":null}`
	const problem404 = `{"type":"https://x.test/p/none","title":"None","status":404}`
	jsonHeader := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	problemHeader := http.Header{"Content-Type": {"application/problem+json"}}
	tests := []struct {
		name, method, target, reqBody string
		reqHeader                     []string
		status                        int
		header                        http.Header
		body                          string
		wantErr                       string // "" when the exchange follows the document
	}{
		{"documented 200", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`), thing, ""},
		{"documented 404", "GET", "/things/abc", "", nil, 404, problemHeader, problem404, ""},
		{"undocumented status", "GET", "/things/abc", "", nil, 418, jsonHeader("ETag", `"3"`), thing, "status 418 is not documented"},
		{"undocumented 304", "GET", "/things/abc", "", nil, 304, http.Header{"Etag": {`"3"`}}, "", "status 304 is not documented"},
		{"HEAD as GET", "HEAD", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`), "", ""},
		{"HEAD with an undocumented status", "HEAD", "/things/abc", "", nil, 201, jsonHeader("ETag", `"3"`), "", "status 201 is not documented"},
		{"HEAD of no operation", "HEAD", "/nothing", "", nil, 200, jsonHeader(), "", "matches no operation"},
		{"member not in the schema", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`),
			`{"id":"0190a0b0-7c1d-7e2f-8a3b-4c5d6e7f8091","owner":"x","extra":1}`, "'extra' not allowed"},
		{"missing required member", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`), `{"owner":"x"}`, "missing property 'id'"},
		{"null where the type allows it", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`), thing, ""},
		{"wrong type", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`), `{"id":"0190a0b0-7c1d-7e2f-8a3b-4c5d6e7f8091","owner":7}`, "want null or string"},
		{"not a uuid", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", `"3"`), `{"id":"nope","owner":null}`, "is not valid uuid"},
		{"missing required header", "GET", "/things/abc", "", nil, 200, jsonHeader(), thing, `header "ETag" missing`},
		{"header against its schema", "GET", "/things/abc", "", nil, 200, jsonHeader("ETag", "3"), thing, `header "ETag" doesn't match`},
		{"undocumented content type", "GET", "/things/abc", "", nil, 200, http.Header{"Content-Type": {"text/plain"}, "Etag": {`"3"`}}, thing, "Content-Type has unexpected value"},
		{"a member the 404 does not name", "GET", "/things/abc", "", nil, 404, problemHeader,
			`{"type":"https://x.test/p/none","title":"None","status":404,"extra":true}`, `"/extra"`},
		{"the 404 with another status inside", "GET", "/things/abc", "", nil, 404, problemHeader,
			`{"type":"https://x.test/p/none","title":"None","status":400}`, "value must be 404"},
		{"a relative problem type", "GET", "/things/abc", "", nil, 404, problemHeader,
			`{"type":"none","title":"None","status":404}`, "not an absolute URI"},
		{"invalid request refused", "GET", "/things/ABC", "", nil, 404, problemHeader, problem404, ""},
		{"invalid request accepted", "GET", "/things/ABC", "", nil, 200, jsonHeader("ETag", `"3"`), thing, `4xx, not 200: parameter "id" in path`},
		{"invalid header accepted", "GET", "/things/abc", "", []string{"If-Match", "3"}, 200, jsonHeader("ETag", `"3"`), thing, `4xx, not 200: parameter "If-Match" in header`},
		{"encoded path parameter", "GET", "/things/%61bc", "", nil, 200, jsonHeader("ETag", `"3"`), thing, ""},
		{"valid body stored", "PUT", "/things/abc", thing, []string{"Content-Type", "application/json"}, 204, http.Header{}, "", ""},
		{"invalid body stored", "PUT", "/things/abc", `{"id":1}`, []string{"Content-Type", "application/json"}, 204, http.Header{}, "", "4xx, not 204: request body has an error"},
		{"missing body refused", "PUT", "/things/abc", "", nil, 400, problemHeader, `{"type":"https://x.test/p/bad","title":"Bad","status":400}`, ""},
		{"a body where none is documented", "PUT", "/things/abc", thing, []string{"Content-Type", "application/json"}, 204, jsonHeader(), `{}`, "without content"},
		{"no such path, 404 problem", "GET", "/nothing", "", nil, 404, problemHeader, problem404, ""},
		{"no such method, 404 problem", "DELETE", "/things/abc", "", nil, 404, problemHeader, problem404, ""},
		{"no such path, answered 200", "GET", "/nothing", "", nil, 200, jsonHeader(), `{}`, "matches no operation"},
		{"no such path, not a problem", "GET", "/nothing", "", nil, 404, http.Header{"Content-Type": {"text/plain"}}, "404 page not found", "application/problem+json"},
		{"no such path, a problem of the wrong shape", "GET", "/nothing", "", nil, 404, problemHeader, `{"title":"None"}`, "does not match components.schemas.Problem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.reqBody))
			for i := 0; i+1 < len(tc.reqHeader); i += 2 {
				req.Header.Set(tc.reqHeader[i], tc.reqHeader[i+1])
			}
			err := v.Validate(req, []byte(tc.reqBody), tc.status, tc.header, []byte(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("want an error about %q, got none", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("want an error about %q, got %v", tc.wantErr, err)
			}
		})
	}
}

// failures records what Check reports instead of failing the test.
type failures struct {
	testing.TB
	errs []string
}

func (f *failures) Helper() {}
func (f *failures) Errorf(format string, args ...any) {
	f.errs = append(f.errs, format)
}

// The transport checks each exchange, hands the response on unchanged and
// fails the test through Errorf.
func TestTransportChecksEveryExchange(t *testing.T) {
	v := testValidator(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("ETag", `"1"`)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/bad") {
			_, _ = w.Write([]byte(`{"owner":"x"}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"0190a0b0-7c1d-7e2f-8a3b-4c5d6e7f8091","owner":"x"}`))
	}))
	defer srv.Close()
	rec := &failures{TB: t}
	client := srv.Client()
	client.Transport = v.Transport(rec, client.Transport)

	do := func(method, path, body string) string {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := do("GET", "/things/good", ""); !strings.Contains(got, `"owner":"x"`) || len(rec.errs) != 0 {
		t.Fatalf("a good exchange: body %q, failures %v", got, rec.errs)
	}
	if do("PUT", "/things/good", `{"id":"0190a0b0-7c1d-7e2f-8a3b-4c5d6e7f8091","owner":"x"}`); len(rec.errs) != 0 {
		t.Fatalf("a good PUT: failures %v", rec.errs)
	}
	if got := do("GET", "/things/bad", ""); got != `{"owner":"x"}` || len(rec.errs) != 1 {
		t.Fatalf("a bad response: body %q, failures %v", got, rec.errs)
	}
	if do("PUT", "/things/good", `{"id":1}`); len(rec.errs) != 2 {
		t.Fatalf("an invalid request that was accepted: failures %v", rec.errs)
	}
}

// An operation secured with bearerAuth answered with a success to a
// request without a bearer token breaks the document; the 401 it should
// get follows it, and so does a success with a token.
func TestSecuredOperationsNeedABearerToken(t *testing.T) {
	v := NewValidator(t, realDocument(t, "writer"))
	problem := []byte(`{"type":"https://tributary.dev/problems/unauthorized","title":"Unauthorized","status":401,"detail":"send a token","instance":"/v1/streams/account/a1"}`)
	header := http.Header{"Content-Type": {"application/problem+json"}, "X-Content-Type-Options": {"nosniff"}, "Www-Authenticate": {`Bearer realm="tributary"`}}
	req := httptest.NewRequest(http.MethodGet, "/v1/streams/account/a1", nil)
	if err := v.Validate(req, nil, http.StatusUnauthorized, header, problem); err != nil {
		t.Fatalf("401 without a token: %v", err)
	}
	page := []byte(`{"aggregateType":"account","aggregateId":"a1","events":[]}`)
	ok := http.Header{"Content-Type": {"application/json"}}
	err := v.Validate(req, nil, http.StatusOK, ok, page)
	if err == nil || !strings.Contains(err.Error(), "no bearer token") {
		t.Fatalf("200 without a token: %v, want the missing bearer token named", err)
	}
	req.Header.Set("Authorization", "Bearer abc.def.ghi")
	if err := v.Validate(req, nil, http.StatusOK, ok, page); err != nil {
		t.Fatalf("200 with a token: %v", err)
	}
	// The operations are public.
	health := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	if err := v.Validate(health, nil, http.StatusOK, ok, []byte(`{"status":"ok"}`)); err != nil {
		t.Fatalf("/healthz without a token: %v", err)
	}
}

// realDocument assembles document name as this build's domains make it:
// the platform's part, every domain fragment under openapi/domains, and the
// newest schema of every event type.
func realDocument(t testing.TB, name string) *Document {
	t.Helper()
	base, err := Base(name)
	if err != nil {
		t.Fatal(err)
	}
	var parts Parts
	files, err := fs.Glob(schemas.OpenAPI, "openapi/domains/*/"+name+".yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("domain fragments of %s: %v %v", name, files, err)
	}
	for _, f := range files {
		data, err := fs.ReadFile(schemas.OpenAPI, f)
		if err != nil {
			t.Fatal(err)
		}
		parts.Fragments = append(parts.Fragments, Fragment{Domain: path.Base(path.Dir(f)), YAML: data})
	}
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sch.List() {
		if !slices.Contains(parts.AggregateTypes, s.AggregateType) {
			parts.AggregateTypes = append(parts.AggregateTypes, s.AggregateType)
		}
		if n := len(parts.Events); n > 0 && parts.Events[n-1].EventType == s.EventType && parts.Events[n-1].AggregateType == s.AggregateType {
			parts.Events = parts.Events[:n-1]
		}
		parts.Events = append(parts.Events, EventSchema{AggregateType: s.AggregateType, EventType: s.EventType, Version: s.Version,
			Schema: sch.Raw(s.AggregateType, s.EventType, s.Version)})
	}
	doc, err := Assemble(name, base, parts)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
