package readertest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels/modeltest"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Models is the reader over read models built straight from events the
// test makes (package modeltest), with the principals it chooses: no
// writer, no Kafka, and nothing but the test writing to its Redis prefix.
type Models struct {
	t      testing.TB
	reg    *registry.Registry
	Redis  *redis.Client
	Prefix string
	Auth   *Issuer
	Spec   *apispec.Validator
	// Events are the events made so far, in global order.
	Events []log.Event
}

// NewModels is an empty Models of reg's read models in a fresh Redis
// prefix: add events with Event, then build the models with Project.
func NewModels(t testing.TB, reg *registry.Registry) *Models {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return &Models{t: t, reg: reg, Redis: rdb, Prefix: prefix, Auth: NewIssuer(t), Spec: apispec.NewValidator(t, reg.API("reader"))}
}

// Event adds an event of aggregateType id in correlation corr, caused by
// the event cause (nil: by a command), appended by principal (on behalf of
// onBehalfOf): its version and global position follow from those before
// it.
func (m *Models) Event(aggregateType, id, corr string, ev interface {
	EventType() string
	SchemaVersion() int
}, cause *log.Event, principal, onBehalfOf string) log.Event {
	payload, err := json.Marshal(ev)
	if err != nil {
		m.t.Fatal(err)
	}
	version := int64(1)
	for _, e := range m.Events {
		if e.AggregateType == aggregateType && e.AggregateID == id {
			version++
		}
	}
	causation := "command-" + uuid.NewString()
	if cause != nil {
		causation = cause.ID.String()
	}
	e := log.Event{ID: uuid.Must(uuid.NewV7()), AggregateType: aggregateType, AggregateID: id, Version: version,
		Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
		RecordedAt:     time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(len(m.Events)) * time.Second),
		GlobalPosition: int64(len(m.Events) + 1),
		Metadata:       log.Metadata{CorrelationID: corr, CausationID: causation, Principal: principal, OnBehalfOf: onBehalfOf}}
	m.Events = append(m.Events, e)
	return e
}

// Project builds every read model of the registry (the correlation index
// among them) from the events, each from the events of its aggregate
// types.
func (m *Models) Project() {
	m.t.Helper()
	for _, p := range m.reg.Projections() {
		var evs []log.Event
		for _, e := range m.Events {
			if slices.Contains(p.AggregateTypes(), e.AggregateType) {
				evs = append(evs, e)
			}
		}
		modeltest.Project(m.t, m.Redis, m.Prefix, p, Partitions, evs)
	}
}

// Server is the reader over the models with cfg (Auth's authenticator
// unless cfg names one, or none when noAuth).
func (m *Models) Server(cfg reader.Config, noAuth bool) *httptest.Server {
	m.t.Helper()
	if cfg.Authenticator == nil && !noAuth {
		cfg.Authenticator = m.Auth.Authn
	}
	srv := httptest.NewServer(NewReader(m.t, m.reg, cfg, m.Redis, m.Prefix, m.reg.API("reader").Handler(), slog.New(slog.DiscardHandler)).Handler())
	m.t.Cleanup(srv.Close)
	return srv
}

// Get sends GET path to srv as c and checks the exchange against the
// reader's document.
func (m *Models) Get(srv *httptest.Server, c Caller, path string, headers ...string) Response {
	m.t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	if a := m.Auth.Authorization(m.t, c); a != "" {
		req.Header.Set("Authorization", a)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		m.t.Fatal(err)
	}
	m.Spec.Check(m.t, req, nil, resp.StatusCode, resp.Header, body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// Snapshot is every key under the models' prefix with its serialized
// value: a refused request leaves it as it was.
func (m *Models) Snapshot() map[string]string {
	m.t.Helper()
	ctx := context.Background()
	out := make(map[string]string)
	iter := m.Redis.Scan(ctx, 0, m.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		dump, err := m.Redis.Dump(ctx, iter.Val()).Result()
		if err != nil {
			m.t.Fatal(err)
		}
		out[iter.Val()] = dump
	}
	if err := iter.Err(); err != nil {
		m.t.Fatal(err)
	}
	return out
}
