// Package correlation is the correlation index: for every correlation id,
// the events it produced, with their causation ids, across aggregate types.
// The reader turns it into a causation tree. It knows nothing of any domain.
package correlation

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Name is the projection's name.
const Name = "correlation"

// Link is one event of a correlation.
type Link struct {
	EventID        string    `json:"eventId"`
	CausationID    string    `json:"causationId"`
	CorrelationID  string    `json:"correlationId"`
	AggregateType  string    `json:"aggregateType"`
	AggregateID    string    `json:"aggregateId"`
	Version        int64     `json:"version"`
	Type           string    `json:"type"`
	GlobalPosition int64     `json:"globalPosition"`
	RecordedAt     time.Time `json:"recordedAt"`
}

// Projection indexes events by correlation id: per partition, a sorted set
// per correlation id scored by global position.
type Projection struct {
	// Types are the aggregate types whose events are indexed.
	Types []string
}

// Name implements readmodels.Projection.
func (Projection) Name() string { return Name }

// AggregateTypes implements readmodels.Projection.
func (p Projection) AggregateTypes() []string { return p.Types }

// Lua implements readmodels.Projection.
func (Projection) Lua() string {
	return `redis.call('ZADD', p .. 'corr:' .. a[i], a[i + 1], a[i + 2])`
}

// Args implements readmodels.Projection. Events without a correlation id
// are not indexed.
func (Projection) Args(e log.Event) ([]string, error) {
	if e.CorrelationID == "" {
		return nil, nil
	}
	link, err := json.Marshal(Link{
		EventID: e.ID.String(), CausationID: e.CausationID, CorrelationID: e.CorrelationID,
		AggregateType: e.AggregateType, AggregateID: e.AggregateID, Version: e.Version, Type: e.Type,
		GlobalPosition: e.GlobalPosition, RecordedAt: e.RecordedAt.UTC(),
	})
	if err != nil {
		return nil, err
	}
	return []string{e.CorrelationID, strconv.FormatInt(e.GlobalPosition, 10), string(link)}, nil
}

// Events returns the events of a correlation id in global order, gathered
// from every partition of the active generation.
func Events(ctx context.Context, rdb redis.Cmdable, root, correlationID string) ([]Link, error) {
	v, err := readmodels.ActiveView(ctx, rdb, readmodels.NewLayout(root, Name))
	if err != nil {
		return nil, err
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, v.Partitions)
	for p := range v.Partitions {
		cmds[p] = pipe.ZRange(ctx, v.Layout.Prefix(v.Generation, p)+"corr:"+correlationID, 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read correlation %s: %w", correlationID, err)
	}
	var links []Link
	for _, c := range cmds {
		for _, m := range c.Val() {
			var l Link
			if err := json.Unmarshal([]byte(m), &l); err != nil {
				return nil, fmt.Errorf("correlation %s holds a malformed entry: %w", correlationID, err)
			}
			links = append(links, l)
		}
	}
	slices.SortFunc(links, func(a, b Link) int { return cmp.Compare(a.GlobalPosition, b.GlobalPosition) })
	return links, nil
}

// Has tells whether the correlation holds the event at global position
// position, in the active generation. Events of one correlation are spread
// over partitions projected independently, so a later position being there
// says nothing of an earlier one: read-your-writes must ask for the exact
// event.
func Has(ctx context.Context, rdb redis.Cmdable, root, correlationID string, position int64) (bool, error) {
	v, err := readmodels.ActiveView(ctx, rdb, readmodels.NewLayout(root, Name))
	if err != nil {
		return false, err
	}
	pipe := rdb.Pipeline()
	pos := strconv.FormatInt(position, 10)
	cmds := make([]*redis.IntCmd, v.Partitions)
	for p := range v.Partitions {
		cmds[p] = pipe.ZCount(ctx, v.Layout.Prefix(v.Generation, p)+"corr:"+correlationID, pos, pos)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("read correlation %s: %w", correlationID, err)
	}
	for _, c := range cmds {
		if c.Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}
