package readmodels

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// View is where a reader finds a projection's data right now: the active
// generation and the partition count its keys are laid out by.
type View struct {
	Layout     Layout
	Generation int64
	Partitions int32
}

// Prefix is the key prefix of the partition that holds aggregate id.
func (v View) Prefix(id string) string {
	return v.Layout.Prefix(v.Generation, PartitionOf(id, v.Partitions))
}

// ActiveView reads the active generation of the projection laid out by
// layout. It returns ErrNotReady when none is active: readers must not see a
// generation before it has caught up.
func ActiveView(ctx context.Context, rdb redis.Cmdable, layout Layout) (View, error) {
	vals, err := rdb.HMGet(ctx, layout.Meta(), "active", "partitions").Result()
	if err != nil {
		return View{}, fmt.Errorf("%s: read active generation: %w", layout.Name(), err)
	}
	active, _ := vals[0].(string)
	parts, _ := vals[1].(string)
	if active == "" || parts == "" {
		return View{}, fmt.Errorf("%s: %w", layout.Name(), ErrNotReady)
	}
	gen, err := strconv.ParseInt(active, 10, 64)
	if err != nil {
		return View{}, fmt.Errorf("%s: active generation %q: %w", layout.Name(), active, err)
	}
	n, err := strconv.ParseInt(parts, 10, 32)
	if err != nil || n < 1 {
		return View{}, fmt.Errorf("%s: partition count %q is invalid", layout.Name(), parts)
	}
	return View{Layout: layout, Generation: gen, Partitions: int32(n)}, nil
}

// Version is the last version of a stream that view's generation applied; 0
// when it has applied none.
func Version(ctx context.Context, rdb redis.Cmdable, v View, aggregateType, id string) (int64, error) {
	s, err := rdb.HGet(ctx, v.Layout.Versions(v.Generation, PartitionOf(id, v.Partitions)), StreamKey(aggregateType, id)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s: read version of %s %s: %w", v.Layout.Name(), aggregateType, id, err)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: version of %s %s is %q: %w", v.Layout.Name(), aggregateType, id, s, err)
	}
	return n, nil
}

// Views finds the active views of projections and keeps each for up to
// maxAge, so that a reader does not spend a round trip per query on learning
// the generation. A switch to a new generation is seen within maxAge; the
// replaced generation stays complete and readable far longer (the
// projector's drop grace), so a cached view never points at a partial model.
// It is safe for concurrent use.
type Views struct {
	rdb    redis.Cmdable
	maxAge time.Duration
	now    func() time.Time
	cached sync.Map // meta key → cachedView
}

type cachedView struct {
	view    View
	fetched time.Time
}

// NewViews returns views read through rdb and kept for maxAge (0: read
// every time).
func NewViews(rdb redis.Cmdable, maxAge time.Duration) *Views {
	return &Views{rdb: rdb, maxAge: maxAge, now: time.Now}
}

// Active returns the active view of the projection laid out by layout, as
// ActiveView does, from the cache while it is fresh. Errors are not cached.
func (vs *Views) Active(ctx context.Context, layout Layout) (View, error) {
	if vs.maxAge > 0 {
		if c, ok := vs.cached.Load(layout.Meta()); ok {
			if c := c.(cachedView); vs.now().Sub(c.fetched) < vs.maxAge {
				return c.view, nil
			}
		}
	}
	v, err := ActiveView(ctx, vs.rdb, layout)
	if err != nil {
		return View{}, err
	}
	if vs.maxAge > 0 {
		vs.cached.Store(layout.Meta(), cachedView{view: v, fetched: vs.now()})
	}
	return v, nil
}
