// Package writertest runs writers for tests, as net/http/httptest runs
// HTTP servers: a Stack is one or more writer processes of a registry's
// domains over one fresh, migrated Postgres database, with a token signer
// whose tokens they verify and a client that checks every exchange against
// the writer's assembled OpenAPI document. It names no domain: the
// platform's tests give it the fixture domain (package domaintest), a
// domain's tests their own.
package writertest

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
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/writer"
)

// DefaultPrincipal is who a Stack's requests come from unless a test says
// otherwise.
const DefaultPrincipal = "alice"

// Stack is a writer (or several, standing for several processes) of a
// registry's domains over one fresh database.
type Stack struct {
	t     testing.TB
	Pool  *pgxpool.Pool
	Store *postgres.Store
	// Servers serve the processes' handlers; their clients check every
	// exchange against Spec.
	Servers []*httptest.Server
	// Handlers are the processes' handlers, to call without a network (a
	// test that does calls Spec.Check itself).
	Handlers []http.Handler
	// APIs are the processes' servers.
	APIs []*writer.Server
	// Spec checks exchanges against the registry's writer document.
	Spec *apispec.Validator
	// Signer issues the tests' tokens; the servers verify them (nil when the
	// Config given brought its own authenticator).
	Signer *auth.Signer
	// Bearer is the Authorization header Do sends unless told otherwise: a
	// token of DefaultPrincipal.
	Bearer string
}

// New starts processes writers of reg's domains over a fresh database, with
// the writer's default configuration.
func New(t testing.TB, reg *registry.Registry, processes int) *Stack {
	t.Helper()
	return NewWithConfig(t, reg, processes, writer.DefaultConfig())
}

// NewWithConfig is New with the writers' Config. Unless cfg has an
// authenticator, the writers verify the Stack's Signer's tokens.
func NewWithConfig(t testing.TB, reg *registry.Registry, processes int, cfg writer.Config) *Stack {
	t.Helper()
	pool := testenv.Postgres(t)
	st := &Stack{t: t, Pool: pool, Store: postgres.NewStore(pool, reg.Upcasters()), Spec: apispec.NewValidator(t, reg.API("writer"))}
	if cfg.Authenticator == nil {
		st.Signer, cfg.Authenticator = testenv.Auth(t)
		st.Bearer = st.Authorization(DefaultPrincipal)
	}
	app := reg.Writer()
	for range processes {
		handlers, err := aggregate.Bind(app.Aggregates, st.Store, app.Schemas, aggregate.Options{})
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
		client.Transport = st.Spec.Transport(t, client.Transport)
		t.Cleanup(srv.Close)
		st.Servers = append(st.Servers, srv)
		st.Handlers = append(st.Handlers, h)
		st.APIs = append(st.APIs, api)
	}
	return st
}

// Response is an HTTP answer, read whole (its body trimmed of white space).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object, failing t if it is not one.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.Status, err, r.Body)
	}
	return m
}

// Command decodes the body as a command's answer, failing t if it is not one.
func (r Response) Command(t testing.TB) writer.CommandResponse {
	t.Helper()
	var c writer.CommandResponse
	if err := json.Unmarshal(r.Body, &c); err != nil {
		t.Fatalf("response %d is not a command response: %v: %s", r.Status, err, r.Body)
	}
	return c
}

// Do sends a request to process proc, as DefaultPrincipal unless the
// headers (name, value pairs) say otherwise; a header given the value ""
// is removed (e.g. "Authorization", "": no token).
func (st *Stack) Do(proc int, method, path, body string, headers ...string) Response {
	st.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, st.Servers[proc].URL+path, rd)
	if err != nil {
		st.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if st.Bearer != "" {
		req.Header.Set("Authorization", st.Bearer)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := st.Servers[proc].Client().Do(req)
	if err != nil {
		st.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		st.t.Fatal(err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: bytes.TrimSpace(b)}
}

// Must sends a request to process 0 and fails the test unless it got want.
func (st *Stack) Must(want int, method, path, body string, headers ...string) Response {
	st.t.Helper()
	r := st.Do(0, method, path, body, headers...)
	if r.Status != want {
		st.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// Authorization is an Authorization header value: a bearer token of
// subject with roles.
func (st *Stack) Authorization(subject string, roles ...string) string {
	st.t.Helper()
	tok, err := st.Signer.Token(subject, roles, time.Hour)
	if err != nil {
		st.t.Fatal(err)
	}
	return "Bearer " + tok
}

// EventCount counts the stored events.
func (st *Stack) EventCount() int {
	st.t.Helper()
	return st.CountEvents(st.t)
}

// CountEvents counts the stored events, failing t (a fuzz target's own t,
// say).
func (st *Stack) CountEvents(t testing.TB) int {
	t.Helper()
	return st.count(t, `SELECT count(*) FROM events`)
}

// IdempotencyKeyCount counts the stored Idempotency-Keys.
func (st *Stack) IdempotencyKeyCount(t testing.TB) int {
	t.Helper()
	return st.count(t, `SELECT count(*) FROM idempotency_keys`)
}

func (st *Stack) count(t testing.TB, query string) int {
	t.Helper()
	var n int
	if err := st.Pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Stream reads an aggregate's stored events, upcast, in version order.
func (st *Stack) Stream(aggregateType, id string) []log.Event {
	st.t.Helper()
	stored, err := st.Store.ReadStream(context.Background(), postgres.StreamQuery{AggregateType: aggregateType, AggregateID: id})
	if err != nil {
		st.t.Fatal(err)
	}
	return stored
}

// StreamVersion is a stream's version in the store, failing t.
func (st *Stack) StreamVersion(t testing.TB, aggregateType, id string) int64 {
	t.Helper()
	v, err := st.Store.StreamVersion(context.Background(), aggregateType, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// DatabaseDigest sums up what Postgres holds for the writer: the events,
// snapshots and Idempotency-Keys, row by row. A request that changes
// nothing leaves it as it was.
func (st *Stack) DatabaseDigest() string {
	st.t.Helper()
	var digest string
	err := st.Pool.QueryRow(context.Background(), `SELECT concat_ws(' ',
        (SELECT count(*) || ':' || coalesce(md5(string_agg(e::text, ',' ORDER BY global_position)), '') FROM events e),
        (SELECT count(*) || ':' || coalesce(md5(string_agg(s::text, ',' ORDER BY aggregate_type, aggregate_id)), '') FROM snapshots s),
        (SELECT count(*) || ':' || coalesce(md5(string_agg(k::text, ',' ORDER BY principal, key)), '') FROM idempotency_keys k))`).Scan(&digest)
	if err != nil {
		st.t.Fatal(err)
	}
	return digest
}

// WaitUntil polls cond until it holds or the timeout passes, failing t
// then.
func WaitUntil(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
