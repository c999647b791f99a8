package writer_test

import (
	"net/http"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// A body with a member name twice, bytes that are not UTF-8 or a lone
// surrogate escape is refused on every route with a body, before anything
// is written (G12; writertest.CheckStrictJSONBodies).
func TestStrictJSONBodiesOnEveryRoute(t *testing.T) {
	st := newStack(t, 1)
	openActive(st, "a1", 1000)
	openActive(st, "a2", 0)
	st.Must(http.StatusCreated, "POST", "/v1/counters", `{"id":"p1","owner":"Bo","unit":"items"}`)

	// The routes that take a body. StartCounter takes no member, so its
	// template has an unknown one.
	routes := []writertest.BodyRoute{
		{Path: "/v1/counters", Template: `{"id":"s1","owner":"§","unit":"items"}`, Dup: `"owner":"Mallory"`},
		{Path: "/v1/counters/p1/start", Template: `{"note":"§"}`, Dup: `"note":"again"`, NoMembers: true},
		{Path: "/v1/counters/a1/increments", Template: `{"amount":1,"unit":"items","note":"§"}`, Dup: `"amount":999999`},
		{Path: "/v1/counters/a1/decrements", Template: `{"amount":1,"unit":"items","note":"§"}`, Dup: `"\u0061mount":999999`},
		{Path: "/v1/counters/a2/retire", Template: `{"reason":"§"}`, Dup: `"reason":"again"`},
	}
	writertest.CheckStrictJSONBodies(t, st, routes)
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
