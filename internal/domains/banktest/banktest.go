// Package banktest is the test support of the bank this build ships (the
// account and transfer domains, package domains): its registry, made once,
// writers and the whole platform of it (packages writertest and
// readertest), and accounts opened through them.
package banktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// Registry is this build's registry of domains, made once for a test
// binary (each make costs the schemas' and documents' assembly).
var Registry = sync.OnceValue(func() *registry.Registry { return domains.Must() })

// NewStack is processes writers of this build's domains over a fresh
// database.
func NewStack(t testing.TB, processes int) *writertest.Stack {
	t.Helper()
	return writertest.New(t, Registry(), processes)
}

// OpenActive opens and activates an account of DefaultPrincipal's with a
// balance, through st.
func OpenActive(st *writertest.Stack, id string, balance int64) {
	body, _ := json.Marshal(map[string]any{"id": id, "owner": "Ada", "currency": "EUR", "initialDeposit": balance})
	st.Must(http.StatusCreated, "POST", "/v1/accounts", string(body))
	st.Must(http.StatusOK, "POST", "/v1/accounts/"+id+"/activate", "")
}

// NewPipeline is the whole platform of this build's domains for one test.
func NewPipeline(t testing.TB, cfg reader.Config) *readertest.Pipeline {
	t.Helper()
	return readertest.NewPipeline(t, Registry(), cfg)
}

// OpenAccount opens and activates an account of the owner's with a
// deposit, through p's writer, and returns the activation's answer.
func OpenAccount(p *readertest.Pipeline, id string, deposit int64) writer.CommandResponse {
	p.Command(http.StatusCreated, "/v1/accounts", fmt.Sprintf(`{"id":%q,"owner":"Ada","currency":"EUR","initialDeposit":%d}`, id, deposit))
	return p.Command(http.StatusOK, "/v1/accounts/"+id+"/activate", "")
}
