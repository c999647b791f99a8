// Package correlation is the correlation index: for every correlation id,
// the events it produced, with their causation ids, across aggregate types.
// The reader turns it into a causation tree. It knows nothing of any domain.
//
// Besides the whole correlation (for operators), it keeps each
// correlation's events per audience: the one principal, other than the
// operators, who may see an event (Audience). A caller's tree is read from
// their own set, so it is bounded, counted and waited for like the whole
// correlation, and it never depends on — or tells anything of — the events
// of others that share the correlation id.
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
	// Principal is who appended the event; OnBehalfOf whom they acted for,
	// when a process manager appended it for the principal who asked.
	Principal  string `json:"principal"`
	OnBehalfOf string `json:"onBehalfOf,omitempty"`
}

// Audience is the principal who, besides the operators, may see an event
// appended by principal on behalf of onBehalfOf: whom a process manager
// acted for, else who acted; "" for nobody but the operators. It is the
// access policy's auth.Principal.MaySee, as an index key (a test holds the
// two together); a change of the policy needs a rebuild of the index.
func Audience(principal, onBehalfOf string) string {
	if onBehalfOf != "" {
		return onBehalfOf
	}
	return principal
}

// Projection indexes events by correlation id: per partition, a sorted set
// per correlation id scored by global position, and one per correlation id
// and audience (the events one principal may see).
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
	return `
local corr, pos, link, who = a[i], a[i + 1], a[i + 2], a[i + 3]
redis.call('ZADD', p .. 'corr:' .. corr, pos, link)
if who ~= '' then
  redis.call('ZADD', p .. 'corrfor:' .. #who .. ':' .. who .. ':' .. corr, pos, link)
end
`
}

// key is the sorted set of a correlation's events in the partition with
// prefix: all of them for audience "", else those audience may see. The
// audience's length keeps the key unambiguous whatever either id holds.
func key(prefix, correlationID, audience string) string {
	if audience == "" {
		return prefix + "corr:" + correlationID
	}
	return prefix + "corrfor:" + strconv.Itoa(len(audience)) + ":" + audience + ":" + correlationID
}

// Args implements readmodels.Projection. Events without a correlation id
// are not indexed.
func (Projection) Args(e log.Event) ([]string, error) {
	if e.CorrelationID == "" {
		return nil, nil
	}
	// The Link as json.Marshal writes it (TestLinkIsLinksJSON).
	link, err := readmodels.NewJSONObject(384).
		String("eventId", e.ID.String()).String("causationId", e.CausationID).String("correlationId", e.CorrelationID).
		String("aggregateType", e.AggregateType).String("aggregateId", e.AggregateID).Int("version", e.Version).
		String("type", e.Type).Int("globalPosition", e.GlobalPosition).Time("recordedAt", e.RecordedAt.UTC()).
		String("principal", e.Principal).StringOmitEmpty("onBehalfOf", e.OnBehalfOf).Close()
	if err != nil {
		return nil, err
	}
	return []string{e.CorrelationID, strconv.FormatInt(e.GlobalPosition, 10), string(link), Audience(e.Principal, e.OnBehalfOf)}, nil
}

// Events returns every event of a correlation id in global order, gathered
// from every partition of the active generation.
func Events(ctx context.Context, rdb redis.Cmdable, root, correlationID string) ([]Link, error) {
	links, _, err := read(ctx, rdb, root, correlationID, "", -1)
	return links, err
}

// First returns the earliest limit events of a correlation id in global
// order (all of them if it holds fewer), and how many it holds in all. With
// limit 0 it only counts. A correlation's size is the writers' to choose, so
// a query that answers with it must bound what it reads.
func First(ctx context.Context, rdb redis.Cmdable, root, correlationID string, limit int) ([]Link, int64, error) {
	if limit < 0 {
		return nil, 0, fmt.Errorf("correlation %s: limit %d is negative", correlationID, limit)
	}
	return read(ctx, rdb, root, correlationID, "", int64(limit))
}

// FirstSeenBy is First over the events of the correlation that audience may
// see (see Audience): the earliest limit of them, and how many there are.
func FirstSeenBy(ctx context.Context, rdb redis.Cmdable, root, correlationID, audience string, limit int) ([]Link, int64, error) {
	switch {
	case audience == "":
		return nil, 0, fmt.Errorf("correlation %s: no audience named", correlationID)
	case limit < 0:
		return nil, 0, fmt.Errorf("correlation %s: limit %d is negative", correlationID, limit)
	}
	return read(ctx, rdb, root, correlationID, audience, int64(limit))
}

// read gathers the earliest limit events of a correlation (all if limit is
// negative) that audience may see ("": every event), and counts them all.
// The earliest limit of all partitions are among the earliest limit of
// each, each partition's set being ordered by global position.
func read(ctx context.Context, rdb redis.Cmdable, root, correlationID, audience string, limit int64) ([]Link, int64, error) {
	v, err := readmodels.ActiveView(ctx, rdb, readmodels.NewLayout(root, Name))
	if err != nil {
		return nil, 0, err
	}
	stop := limit - 1
	if limit < 0 {
		stop = -1 // to the end
	}
	pipe := rdb.Pipeline()
	ranges := make([]*redis.StringSliceCmd, 0, v.Partitions)
	counts := make([]*redis.IntCmd, v.Partitions)
	for p := range v.Partitions {
		// The range before the count: events only ever join a set, so the
		// count is never below what the range returned.
		k := key(v.Layout.Prefix(v.Generation, p), correlationID, audience)
		if limit != 0 {
			ranges = append(ranges, pipe.ZRange(ctx, k, 0, stop))
		}
		counts[p] = pipe.ZCard(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("read correlation %s: %w", correlationID, err)
	}
	var total int64
	for _, c := range counts {
		total += c.Val()
	}
	var links []Link
	for _, c := range ranges {
		for _, m := range c.Val() {
			var l Link
			if err := json.Unmarshal([]byte(m), &l); err != nil {
				return nil, 0, fmt.Errorf("correlation %s holds a malformed entry: %w", correlationID, err)
			}
			links = append(links, l)
		}
	}
	slices.SortFunc(links, func(a, b Link) int { return cmp.Compare(a.GlobalPosition, b.GlobalPosition) })
	if limit >= 0 && int64(len(links)) > limit {
		links = links[:limit]
	}
	return links, total, nil
}

// Has tells whether the correlation holds the event at global position
// position, in the active generation. Events of one correlation are spread
// over partitions projected independently, so a later position being there
// says nothing of an earlier one: read-your-writes must ask for the exact
// event.
func Has(ctx context.Context, rdb redis.Cmdable, root, correlationID string, position int64) (bool, error) {
	return has(ctx, rdb, root, correlationID, "", position)
}

// HasSeenBy is Has among the events of the correlation that audience may
// see: an event of someone else is never there.
func HasSeenBy(ctx context.Context, rdb redis.Cmdable, root, correlationID, audience string, position int64) (bool, error) {
	if audience == "" {
		return false, fmt.Errorf("correlation %s: no audience named", correlationID)
	}
	return has(ctx, rdb, root, correlationID, audience, position)
}

func has(ctx context.Context, rdb redis.Cmdable, root, correlationID, audience string, position int64) (bool, error) {
	v, err := readmodels.ActiveView(ctx, rdb, readmodels.NewLayout(root, Name))
	if err != nil {
		return false, err
	}
	pipe := rdb.Pipeline()
	pos := strconv.FormatInt(position, 10)
	cmds := make([]*redis.IntCmd, v.Partitions)
	for p := range v.Partitions {
		cmds[p] = pipe.ZCount(ctx, key(v.Layout.Prefix(v.Generation, p), correlationID, audience), pos, pos)
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
