package domaintest_test

import (
	"testing"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
)

// The fixture registers through the public registry, and a generated
// history is valid: every event matches its schema, no value goes below
// zero.
func TestTheFixtureRegistersAndItsHistoriesAreValid(t *testing.T) {
	r := domaintest.Registry()
	if got := r.AggregateTypes(); len(got) != 1 || got[0] != domaintest.AggregateType {
		t.Fatalf("aggregate types %v", got)
	}
	h := domaintest.Generate(20, 500, 1, "test")
	for id, evs := range h.ByID {
		s, err := domaintest.Fold(evs)
		if err != nil || s.Value < 0 {
			t.Fatalf("%s: %+v %v", id, s, err)
		}
		for _, e := range evs {
			if err := r.Schemas().Validate(e.AggregateType, e.Type, e.SchemaVersion, e.Payload); err != nil {
				t.Fatalf("%s v%d: %v", id, e.Version, err)
			}
		}
	}
}
