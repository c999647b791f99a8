package writer_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// The writer's tests run on the platform's fixture domain (package
// domaintest): counters. The domains a build ships test their commands in
// their own packages.
var fixture = domaintest.Registry()

// newStack is processes writers of the fixture over a fresh database.
func newStack(t testing.TB, processes int) *writertest.Stack {
	t.Helper()
	return writertest.New(t, fixture, processes)
}

// newStackWith is newStack with the writers' Config.
func newStackWith(t testing.TB, processes int, cfg writer.Config) *writertest.Stack {
	t.Helper()
	return writertest.NewWithConfig(t, fixture, processes, cfg)
}

// openActive creates and starts a counter at a value.
func openActive(st *writertest.Stack, id string, value int64) {
	body, _ := json.Marshal(map[string]any{"id": id, "owner": "Ada", "unit": "items", "initial": value})
	st.Must(http.StatusCreated, "POST", "/v1/counters", string(body))
	st.Must(http.StatusOK, "POST", "/v1/counters/"+id+"/start", "")
}

// fold reads a counter's stream from the store and folds it, failing t if
// the value ever goes below zero.
func fold(t testing.TB, st *writertest.Stack, id string) (domaintest.State, []log.Event) {
	t.Helper()
	stored := st.Stream(domaintest.AggregateType, id)
	s := domaintest.Initial(id)
	for _, e := range stored {
		ev, err := domaintest.DecodeEvent(e.Type, e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if s = domaintest.Evolve(s, ev); s.Value < 0 {
			t.Fatalf("%s: value %d after version %d", id, s.Value, e.Version)
		}
	}
	return s, stored
}
