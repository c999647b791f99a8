package writer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/writer"
	"github.com/tributary-es/tributary/schemas"
)

// stack is a writer (or several, standing for several processes) over one
// fresh database.
type stack struct {
	t       testing.TB
	pool    *pgxpool.Pool
	store   *postgres.Store
	servers []*httptest.Server
	// handlers are the servers' handlers, to call without a network.
	handlers []http.Handler
	// apis are the servers' APIs, for what only they know (their routes).
	apis []*writer.Server
	// spec checks exchanges against schemas/openapi/writer.yaml. The
	// servers' clients check every exchange through it; a test that calls
	// a handler directly calls spec.Check itself.
	spec *apispec.Validator
	// signer issues the tests' tokens; the servers verify them.
	signer *auth.Signer
	// bearer is the Authorization header do sends unless told otherwise:
	// a token of defaultPrincipal.
	bearer string
}

// defaultPrincipal is who the stack's requests come from unless a test says
// otherwise.
const defaultPrincipal = "alice"

func newStack(t testing.TB, processes int) *stack {
	t.Helper()
	return newStackWith(t, processes, writer.DefaultConfig())
}

// newStackWith is newStack with the writers' Config.
func newStackWith(t testing.TB, processes int, cfg writer.Config) *stack {
	t.Helper()
	pool := testenv.Postgres(t)
	eventSchemas, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{t: t, pool: pool, store: postgres.NewStore(pool, registered.Upcasters()), spec: apispec.NewValidator(t, registered.API("writer"))}
	if cfg.Authenticator == nil {
		st.signer, cfg.Authenticator = testenv.Auth(t)
		st.bearer = st.authorization(defaultPrincipal)
	}
	app := registered.Writer()
	for range processes {
		handlers, err := aggregate.Bind(app.Aggregates, st.store, eventSchemas, aggregate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		api, err := writer.NewServer(cfg, handlers, app.Routes, prometheus.NewRegistry(), app.Spec, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		h := api.Handler()
		srv := httptest.NewServer(h)
		client := srv.Client()
		client.Transport = st.spec.Transport(t, client.Transport)
		t.Cleanup(srv.Close)
		st.servers = append(st.servers, srv)
		st.handlers = append(st.handlers, h)
		st.apis = append(st.apis, api)
	}
	return st
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

func (r response) command(t testing.TB) writer.CommandResponse {
	t.Helper()
	var c writer.CommandResponse
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("response %d is not a command response: %v: %s", r.status, err, r.body)
	}
	return c
}

// do sends a request to process proc. Headers come in name/value pairs.
func (st *stack) do(proc int, method, path, body string, headers ...string) response {
	st.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, st.servers[proc].URL+path, rd)
	if err != nil {
		st.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if st.bearer != "" {
		req.Header.Set("Authorization", st.bearer)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i]) // e.g. "Authorization", "": no token
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := st.servers[proc].Client().Do(req)
	if err != nil {
		st.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		st.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: bytes.TrimSpace(b)}
}

// authorization is an Authorization header value: a bearer token of subject
// with roles.
func (st *stack) authorization(subject string, roles ...string) string {
	st.t.Helper()
	tok, err := st.signer.Token(subject, roles, time.Hour)
	if err != nil {
		st.t.Fatal(err)
	}
	return "Bearer " + tok
}

// must sends a request and fails the test unless it got want.
func (st *stack) must(want int, method, path, body string, headers ...string) response {
	st.t.Helper()
	r := st.do(0, method, path, body, headers...)
	if r.status != want {
		st.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// openActive opens and activates an account with a balance.
func (st *stack) openActive(id string, balance int64) {
	st.t.Helper()
	body, _ := json.Marshal(map[string]any{"id": id, "owner": "Ada", "currency": "EUR", "initialDeposit": balance})
	st.must(http.StatusCreated, "POST", "/v1/accounts", string(body))
	st.must(http.StatusOK, "POST", "/v1/accounts/"+id+"/activate", "")
}

func (st *stack) eventCount() int {
	st.t.Helper()
	return st.countEvents(st.t)
}

// countEvents counts the stored events, failing t (a fuzz target's own t, say).
func (st *stack) countEvents(t testing.TB) int {
	t.Helper()
	var n int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// fold reads an account's stream from the store and folds it with the domain.
func (st *stack) fold(id string) (account.State, []log.Event) {
	st.t.Helper()
	stored, err := st.store.ReadStream(context.Background(), postgres.StreamQuery{AggregateType: "account", AggregateID: id})
	if err != nil {
		st.t.Fatal(err)
	}
	s := account.Initial(id)
	for _, e := range stored {
		ev, err := account.DecodeEvent(e.Type, e.Payload)
		if err != nil {
			st.t.Fatal(err)
		}
		s = account.Evolve(s, ev)
		if s.Balance < 0 {
			st.t.Fatalf("%s: balance %d after version %d", id, s.Balance, e.Version)
		}
	}
	return s, stored
}
