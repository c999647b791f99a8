// Package transfers is the read model of transfers between accounts: each
// transfer's parties, amount, status, failure reason and the times of its
// steps. The whole trail across accounts is the correlation index's
// causation tree.
package transfers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Name is the projection's name.
const Name = "transfers"

// Summary is a transfer as the read model holds it.
type Summary struct {
	ID          string    `json:"id"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	Reference   string    `json:"reference"`
	Status      string    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	Refunded    bool      `json:"refunded"`
	Version     int64     `json:"version"`
	RequestedAt time.Time `json:"requestedAt"`
	// EndedAt is when it completed or failed; absent while it runs.
	EndedAt       *time.Time `json:"endedAt,omitempty"`
	CorrelationID string     `json:"correlationId"`
	// Principal is who requested it, its owner in the access policy: the
	// principal of its first event.
	Principal string `json:"principal"`
}

// Projection keeps one hash per transfer, with the principal who requested
// it.
type Projection struct{}

// Name implements readmodels.Projection.
func (Projection) Name() string { return Name }

// AggregateTypes implements readmodels.Projection.
func (Projection) AggregateTypes() []string { return []string{transfer.AggregateType} }

// Lua implements readmodels.Projection.
func (Projection) Lua() string {
	return `
local k = p .. 'transfer:' .. id
local op, t = a[i], a[i + n - 1]
if op == 'requested' then
  redis.call('HSET', k, 'id', id, 'from', a[i + 1], 'to', a[i + 2], 'amount', a[i + 3], 'currency', a[i + 4],
    'reference', a[i + 5], 'correlationId', a[i + 6], 'principal', a[i + 7], 'status', 'requested', 'requestedAt', t, 'refunded', '0')
elseif op == 'completed' then
  redis.call('HSET', k, 'status', 'completed', 'endedAt', t)
elseif op == 'failed' then
  redis.call('HSET', k, 'status', 'failed', 'reason', a[i + 1], 'refunded', a[i + 2], 'endedAt', t)
end
redis.call('HSET', k, 'version', ver)
`
}

// Args implements readmodels.Projection.
func (Projection) Args(e log.Event) ([]string, error) {
	if e.AggregateType != transfer.AggregateType {
		return nil, fmt.Errorf("not a transfer event: aggregate type %q", e.AggregateType)
	}
	ev, err := transfer.DecodeEvent(e.Type, e.Payload)
	if err != nil {
		return nil, err
	}
	t := e.RecordedAt.UTC().Format(time.RFC3339Nano)
	switch ev := ev.(type) {
	case transfer.TransferRequested:
		return []string{"requested", ev.From, ev.To, strconv.FormatInt(ev.Amount, 10), ev.Currency, ev.Reference, e.CorrelationID, e.Principal, t}, nil
	case transfer.TransferCompleted:
		return []string{"completed", t}, nil
	case transfer.TransferFailed:
		refunded := "0"
		if ev.Refunded {
			refunded = "1"
		}
		return []string{"failed", ev.Reason, refunded, t}, nil
	}
	return nil, fmt.Errorf("transfers has no rule for %s", e.Type)
}

// Queries read the transfers projection through its active generation.
type Queries struct {
	rdb    redis.Cmdable
	views  *readmodels.Views
	layout readmodels.Layout
}

// NewQueries reads the projection kept under root through views.
func NewQueries(rdb redis.Cmdable, root string, views *readmodels.Views) *Queries {
	return &Queries{rdb: rdb, views: views, layout: readmodels.NewLayout(root, Name)}
}

// Get returns a transfer; found is false for one the projection does not
// know (yet).
func (q *Queries) Get(ctx context.Context, id string) (s Summary, found bool, err error) {
	v, err := q.views.Active(ctx, q.layout)
	if err != nil {
		return Summary{}, false, err
	}
	f, err := q.rdb.HGetAll(ctx, v.Prefix(id)+"transfer:"+id).Result()
	if err != nil {
		return Summary{}, false, fmt.Errorf("read transfer %s: %w", id, err)
	}
	if len(f) == 0 {
		return Summary{}, false, nil
	}
	s = Summary{ID: f["id"], From: f["from"], To: f["to"], Currency: f["currency"], Reference: f["reference"],
		Status: f["status"], Reason: f["reason"], Refunded: f["refunded"] == "1", CorrelationID: f["correlationId"], Principal: f["principal"]}
	var errs [4]error
	s.Amount, errs[0] = strconv.ParseInt(f["amount"], 10, 64)
	s.Version, errs[1] = strconv.ParseInt(f["version"], 10, 64)
	s.RequestedAt, errs[2] = time.Parse(time.RFC3339Nano, f["requestedAt"])
	if ended := f["endedAt"]; ended != "" {
		var at time.Time
		at, errs[3] = time.Parse(time.RFC3339Nano, ended)
		s.EndedAt = &at
	}
	for _, e := range errs {
		if e != nil {
			return Summary{}, false, fmt.Errorf("transfer %s is malformed: %w", id, e)
		}
	}
	return s, true, nil
}
