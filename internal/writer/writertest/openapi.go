package writertest

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
)

// ServedOperations gets the document st's writer serves at /openapi.json,
// fails t unless it is a valid OpenAPI 3.1 document served as JSON, and
// returns its operations ("POST /v1/things/{id}/do", say), sorted: what a
// test compares with the routes it expects.
func ServedOperations(t testing.TB, st *Stack) []string {
	t.Helper()
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
	return slices.Sorted(maps.Keys(Operations(doc)))
}

// Operations are the operations of doc ("GET /v1/streams/{type}/{id}",
// say).
func Operations(doc *openapi3.T) map[string]bool {
	ops := make(map[string]bool)
	for p, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops[method+" "+p] = true
		}
	}
	return ops
}

// CheckEventPayloadsAreTheEventSchemas fails t unless the event payloads
// in the writer document doc are the JSON Schemas of events (a tree of
// events/<aggregate type>/<Type>.v<N>.json, as the store validates with),
// at the latest version of each type, the one a stream read upcasts to,
// for every aggregate type doc serves and no other.
func CheckEventPayloadsAreTheEventSchemas(t *testing.T, doc *openapi3.T, events fs.FS) {
	t.Helper()
	served := make(map[string]bool)
	for _, v := range doc.Components.Schemas["AggregateType"].Value.Enum {
		served[fmt.Sprint(v)] = true
	}
	latest := latestEventSchemas(t, events)
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
		checkPayloadSchema(t, events, key, version, props["payload"].Value)
	}
	if got, want := slices.Sorted(maps.Keys(documented)), slices.Sorted(maps.Keys(latest)); !slices.Equal(got, want) {
		t.Errorf("the document has events %v, the schemas are of %v", got, want)
	}
}

// checkPayloadSchema fails t unless payload, the document's schema of the
// event key ("<aggregate type>/<event type>") at version, is its schema
// file in events.
func checkPayloadSchema(t *testing.T, events fs.FS, key string, version int, payload *openapi3.Schema) {
	t.Helper()
	file := fmt.Sprintf("events/%s.v%d.json", key, version)
	raw, err := fs.ReadFile(events, file)
	if err != nil {
		t.Fatal(err)
	}
	want := normalizedSchema(t, raw)
	got, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	if g := normalizedSchema(t, got); !reflect.DeepEqual(g, want) {
		t.Errorf("%s: the document's payload schema\n%v\nis not %s\n%v", key, g, file, want)
	}
}

// latestEventSchemas maps "<aggregate type>/<event type>" to its latest
// schema version in events.
func latestEventSchemas(t *testing.T, events fs.FS) map[string]int {
	t.Helper()
	file := regexp.MustCompile(`^events/([^/]+)/([A-Za-z0-9]+)\.v([0-9]+)\.json$`)
	latest := make(map[string]int)
	err := fs.WalkDir(events, "events", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		m := file.FindStringSubmatch(p)
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
