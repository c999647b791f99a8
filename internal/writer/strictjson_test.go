package writer_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
)

// strictBodyRoutes are the routes that take a body. Each template is a body
// the route takes, with § in a string member; dup is a member it already
// has, named again. StartCounter takes no member, so its template has an
// unknown one: the strict checks must come first all the same.
var strictBodyRoutes = []struct {
	path, template, dup string
}{
	{"/v1/counters", `{"id":"s1","owner":"§","unit":"items"}`, `"owner":"Mallory"`},
	{"/v1/counters/p1/start", `{"note":"§"}`, `"note":"again"`},
	{"/v1/counters/a1/increments", `{"amount":1,"unit":"items","note":"§"}`, `"amount":999999`},
	{"/v1/counters/a1/decrements", `{"amount":1,"unit":"items","note":"§"}`, `"\u0061mount":999999`},
	{"/v1/counters/a2/retire", `{"reason":"§"}`, `"reason":"again"`},
}

// A body with a member name twice, bytes that are not UTF-8 or a lone
// surrogate escape is refused on every route with a body, before anything
// is written (G12).
func TestStrictJSONBodiesOnEveryRoute(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 1000)
	openActive(st, "a2", 0)
	st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"p1","owner":"Bo","unit":"items"}`)

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
		if strings.HasSuffix(route.path, "/start") {
			body = "" // no member to carry a value
		}
		if r := st.Do(0, "POST", route.path, body); r.Status/100 != 2 {
			t.Errorf("POST %s %s: status %d, want 2xx: %s", route.path, body, r.Status, r.Body)
		}
	}
}

// What is close to the refused bodies but right is taken, and stored as sent.
func TestStrictJSONTakesSurrogatePairsAndMultibyteUTF8(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 0)
	st.Must(http.StatusOK, "POST", "/v1/counters/a1/increments", `{"amount":5,"unit":"items","n\u006fte":"caf\u00e9 \ud83d\ude00 Zoë"}`)
	_, stored := fold(t, st, "a1")
	last := stored[len(stored)-1]
	ev, err := domaintest.DecodeEvent(last.Type, last.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := ev.(domaintest.Incremented); !ok || d.Note != "café 😀 Zoë" || d.Amount != 5 {
		t.Fatalf("stored %T %+v, want an increment of 5 from %q", ev, ev, "café 😀 Zoë")
	}
}
