// Package domaintest is a small domain for the platform's own tests, as
// net/http/httptest is a server for HTTP tests: counters that are created
// for an owner, started, incremented, decremented and retired, with the
// rules, refusals, schema versions, upcaster, read models and query a real
// domain has. The tests of the writer, the reader and the binaries run on
// it, so they test the platform and nothing of the domains a build ships;
// those are tested in their own packages.
//
// It registers through the public registry like any domain (Domain,
// Registry) and is imported only by tests.
package domaintest

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
)

// Names of the domain and its projections.
const (
	Name        = "counters"
	SummaryName = "counter-summary"
	LogName     = "counter-log"
)

//go:embed events
var events embed.FS

//go:embed api
var api embed.FS

// Events holds the JSON Schemas of the counter's events:
// events/counter/<EventType>.v<N>.json.
func Events() fs.FS { return events }

// Domain returns the counters' registration.
func Domain() registry.Domain {
	apiFS, err := fs.Sub(api, "api")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	return registry.Domain{
		Name:       Name,
		Aggregates: []aggregate.Kind{aggregate.Of(Aggregate())},
		Events:     events,
		API:        apiFS,
		Upcasters: []registry.Upcaster{
			{AggregateType: AggregateType, EventType: "CounterIncremented", From: 1, Upcast: UpcastIncrementedV1},
		},
		Commands:    commands(),
		Projections: []readmodels.Projection{SummaryProjection{}, LogProjection{}},
		Queries: []reader.Route{reader.Versioned("GET /v1/counters/{id}", reader.VersionedModel[Summary]{
			What: "counter",
			Read: func(src reader.Source) func(context.Context, string) (Summary, bool, error) {
				return NewQueries(src.Redis, src.Root, src.Views).Summary
			},
			Version: func(s Summary) int64 { return s.Version },
			Owner:   func(s Summary) string { return s.Principal },
		})},
	}
}

// Registry returns the registry of the counters alone, made once (each make
// assembles the schemas and documents).
var Registry = sync.OnceValue(func() *registry.Registry {
	r, err := registry.New(Domain())
	if err != nil {
		panic(err) // the fixture is wrong: a bug to fix at once
	}
	return r
})

type createBody struct {
	ID      string `json:"id"`
	Owner   string `json:"owner"`
	Unit    string `json:"unit"`
	Initial int64  `json:"initial"`
}

type stepBody struct {
	Amount int64  `json:"amount"`
	Unit   string `json:"unit"`
	Note   string `json:"note"`
}

type retireBody struct {
	Reason string `json:"reason"`
}

func commands() []writer.Route {
	typ := Aggregate()
	return []writer.Route{
		writer.Command(typ, writer.CommandRoute[createBody, Command]{
			Pattern: "POST /v1/counters", Name: "CreateCounter", Creates: true,
			ID: func(b createBody) string { return b.ID },
			Command: func(id string, b createBody) Command {
				return Create{ID: id, Owner: b.Owner, Unit: b.Unit, Initial: b.Initial}
			},
		}),
		writer.Command(typ, writer.CommandRoute[struct{}, Command]{
			Pattern: "POST /v1/counters/{id}/start", Name: "StartCounter", EmptyBody: true,
			Command: func(string, struct{}) Command { return Start{} },
		}),
		writer.Command(typ, writer.CommandRoute[stepBody, Command]{
			Pattern: "POST /v1/counters/{id}/increments", Name: "IncrementCounter",
			Command: func(_ string, b stepBody) Command { return Increment{Amount: b.Amount, Unit: b.Unit, Note: b.Note} },
		}),
		writer.Command(typ, writer.CommandRoute[stepBody, Command]{
			Pattern: "POST /v1/counters/{id}/decrements", Name: "DecrementCounter",
			Command: func(_ string, b stepBody) Command { return Decrement{Amount: b.Amount, Unit: b.Unit, Note: b.Note} },
		}),
		writer.Command(typ, writer.CommandRoute[retireBody, Command]{
			Pattern: "POST /v1/counters/{id}/retire", Name: "RetireCounter", EmptyBody: true,
			Command: func(_ string, b retireBody) Command { return Retire{Reason: b.Reason} },
		}),
	}
}

// Summary is one counter as the summary projection keeps it.
type Summary struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
	// Principal is who created it: the principal of its first event.
	Principal string    `json:"principal"`
	Unit      string    `json:"unit"`
	Value     int64     `json:"value"`
	Status    string    `json:"status"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func decode(e log.Event) (Event, error) {
	if e.AggregateType != AggregateType {
		return nil, fmt.Errorf("not a counter event: aggregate type %q", e.AggregateType)
	}
	return DecodeEvent(e.Type, e.Payload)
}

// delta is the change of the value an event makes.
func delta(ev Event) int64 {
	switch ev := ev.(type) {
	case Incremented:
		return ev.Amount
	case Decremented:
		return -ev.Amount
	}
	return 0
}

// SummaryProjection keeps one hash per counter.
type SummaryProjection struct{}

// Name implements readmodels.Projection.
func (SummaryProjection) Name() string { return SummaryName }

// AggregateTypes implements readmodels.Projection.
func (SummaryProjection) AggregateTypes() []string { return []string{AggregateType} }

// Lua implements readmodels.Projection.
func (SummaryProjection) Lua() string {
	return `
local k = p .. 'counter:' .. id
local op, t = a[i], a[i + n - 1]
if op == 'create' then
  redis.call('HSET', k, 'id', id, 'owner', a[i + 1], 'unit', a[i + 2], 'principal', a[i + 3], 'value', 0, 'status', 'pending', 'createdAt', t)
elseif op == 'status' then
  redis.call('HSET', k, 'status', a[i + 1])
elseif op == 'delta' then
  redis.call('HINCRBY', k, 'value', a[i + 1])
end
redis.call('HSET', k, 'version', ver, 'updatedAt', t)
`
}

// Args implements readmodels.Projection.
func (SummaryProjection) Args(e log.Event) ([]string, error) {
	ev, err := decode(e)
	if err != nil {
		return nil, err
	}
	t := e.RecordedAt.UTC().Format(time.RFC3339Nano)
	switch ev := ev.(type) {
	case Created:
		return []string{"create", ev.Owner, ev.Unit, e.Principal, t}, nil
	case Started:
		return []string{"status", string(StatusActive), t}, nil
	case Retired:
		return []string{"status", string(StatusRetired), t}, nil
	}
	return []string{"delta", strconv.FormatInt(delta(ev), 10), t}, nil
}

// LogProjection keeps, per counter, the ids of its events in order and the
// value after the last: a second read model of the same events, so that
// tests see two projections of one consumer apply each event once.
type LogProjection struct{}

// Name implements readmodels.Projection.
func (LogProjection) Name() string { return LogName }

// AggregateTypes implements readmodels.Projection.
func (LogProjection) AggregateTypes() []string { return []string{AggregateType} }

// Lua implements readmodels.Projection.
func (LogProjection) Lua() string {
	return `
redis.call('RPUSH', p .. 'log:' .. id, a[i])
redis.call('HINCRBY', p .. 'logvalue:' .. id, 'value', a[i + 1])
redis.call('HSET', p .. 'logvalue:' .. id, 'version', ver)
`
}

// Args implements readmodels.Projection.
func (LogProjection) Args(e log.Event) ([]string, error) {
	ev, err := decode(e)
	if err != nil {
		return nil, err
	}
	return []string{e.ID.String(), strconv.FormatInt(delta(ev), 10)}, nil
}

// Queries reads the counters' read models.
type Queries struct {
	rdb           redis.Cmdable
	views         *readmodels.Views
	summary, logs readmodels.Layout
}

// NewQueries reads the projections kept under root through views (nil:
// looked up on every read).
func NewQueries(rdb redis.Cmdable, root string, views *readmodels.Views) *Queries {
	if views == nil {
		views = readmodels.NewViews(rdb, 0)
	}
	return &Queries{rdb: rdb, views: views, summary: readmodels.NewLayout(root, SummaryName), logs: readmodels.NewLayout(root, LogName)}
}

// Summary returns a counter's summary; found is false for one the
// projection does not know (yet).
func (q *Queries) Summary(ctx context.Context, id string) (Summary, bool, error) {
	v, err := q.views.Active(ctx, q.summary)
	if err != nil {
		return Summary{}, false, err
	}
	f, err := q.rdb.HGetAll(ctx, v.Prefix(id)+"counter:"+id).Result()
	if err != nil || len(f) == 0 {
		return Summary{}, false, err
	}
	s := Summary{ID: f["id"], Owner: f["owner"], Principal: f["principal"], Unit: f["unit"], Status: f["status"]}
	var errs [4]error
	s.Value, errs[0] = strconv.ParseInt(f["value"], 10, 64)
	s.Version, errs[1] = strconv.ParseInt(f["version"], 10, 64)
	s.CreatedAt, errs[2] = time.Parse(time.RFC3339Nano, f["createdAt"])
	s.UpdatedAt, errs[3] = time.Parse(time.RFC3339Nano, f["updatedAt"])
	for _, err := range errs {
		if err != nil {
			return Summary{}, false, fmt.Errorf("summary of counter %s is malformed: %w", id, err)
		}
	}
	return s, true, nil
}

// Log returns a counter's event ids in version order, the value after the
// last and its version (0 for a counter the log does not know).
func (q *Queries) Log(ctx context.Context, id string) (eventIDs []string, value, version int64, err error) {
	v, err := q.views.Active(ctx, q.logs)
	if err != nil {
		return nil, 0, 0, err
	}
	if eventIDs, err = q.rdb.LRange(ctx, v.Prefix(id)+"log:"+id, 0, -1).Result(); err != nil {
		return nil, 0, 0, err
	}
	f, err := q.rdb.HGetAll(ctx, v.Prefix(id)+"logvalue:"+id).Result()
	if err != nil || len(f) == 0 {
		return eventIDs, 0, 0, err
	}
	value, _ = strconv.ParseInt(f["value"], 10, 64)
	version, _ = strconv.ParseInt(f["version"], 10, 64)
	return eventIDs, value, version, nil
}
