package reader_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// The reader's tests run on the platform's fixture domain (package
// domaintest): counters. The domains a build ships test their queries in
// their own packages.
var fixture = domaintest.Registry()

// newPipeline is the whole platform of the fixture for one test.
func newPipeline(t testing.TB, cfg reader.Config) *readertest.Pipeline {
	t.Helper()
	return readertest.NewPipeline(t, fixture, cfg)
}

// newHookedPipeline is newPipeline whose projectors of the projections
// named in hooks run with them.
func newHookedPipeline(t testing.TB, cfg reader.Config, hooks map[string]projector.Hooks) *readertest.Pipeline {
	t.Helper()
	return readertest.NewHookedPipeline(t, fixture, cfg, hooks)
}

type written struct{ version, position int64 }

// openActive creates and starts a counter at a value through the writer.
func openActive(p *readertest.Pipeline, id string, value int64) written {
	p.Command(http.StatusCreated, "/v1/counters", fmt.Sprintf(`{"id":%q,"owner":"Ada","unit":"items","initial":%d}`, id, value))
	c := p.Command(http.StatusOK, "/v1/counters/"+id+"/start", "")
	return written{version: c.StreamVersion, position: c.GlobalPosition}
}
