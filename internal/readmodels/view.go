package readmodels

import (
	"context"
	"fmt"
	"strconv"

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
func ActiveView(ctx context.Context, rdb redis.UniversalClient, layout Layout) (View, error) {
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
