package readmodels

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Meta is a projection's generation bookkeeping.
type Meta struct {
	// Partitions is the partition count the projection's keys are laid out for.
	Partitions int32
	// Active is the generation readers use; 0 while there is none.
	Active int64
	// Target is the generation being written; equal to Active unless a
	// (re)build is running.
	Target int64
	// Retired maps generations no longer used to when they were retired;
	// their keys are removed after a grace period.
	Retired map[int64]time.Time
}

// Rebuilding tells whether a build of Target is running.
func (m Meta) Rebuilding() bool { return m.Target != m.Active }

// ErrPartitionsChanged: the projection was built for another partition count.
var ErrPartitionsChanged = errors.New("read model was built for another partition count")

// ensureScript creates the bookkeeping of a projection that has none (first
// start, or Redis lost its data): generation 1, built before it is served.
const ensureScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'partitions', ARGV[1], 'gens', 1, 'target', 1)
  return 'created'
end
return redis.call('HGET', KEYS[1], 'partitions') or ''
`

// rebuildScript starts a new target generation, unless one is already being
// built (ARGV[2] = "1" forces a new one). ARGV[1] is now in ms.
const rebuildScript = `
local target = redis.call('HGET', KEYS[1], 'target')
local active = redis.call('HGET', KEYS[1], 'active')
if not target then
  return {'missing', 0}
end
if target ~= active and ARGV[2] ~= '1' then
  return {'running', tonumber(target)}
end
local gen = redis.call('HINCRBY', KEYS[1], 'gens', 1)
redis.call('HSET', KEYS[1], 'target', gen)
if target ~= active then
  redis.call('HSET', KEYS[1], 'retired:' .. target, ARGV[1])
end
return {'started', gen}
`

// promoteScript makes the target generation ARGV[1] active, retiring the
// old one; ARGV[2] is now in ms.
const promoteScript = `
if redis.call('HGET', KEYS[1], 'target') ~= ARGV[1] then
  return 0
end
local active = redis.call('HGET', KEYS[1], 'active')
if active == ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'active', ARGV[1])
if active then
  redis.call('HSET', KEYS[1], 'retired:' .. active, ARGV[2])
end
return 1
`

// lostScript handles a generation that lost positions: readers stop using
// it, and a new target generation is built from the start.
const lostScript = `
local active = redis.call('HGET', KEYS[1], 'active')
local target = redis.call('HGET', KEYS[1], 'target')
if active == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'active')
  redis.call('HSET', KEYS[1], 'retired:' .. ARGV[1], ARGV[2])
end
if target == ARGV[1] then
  local gen = redis.call('HINCRBY', KEYS[1], 'gens', 1)
  redis.call('HSET', KEYS[1], 'target', gen)
  if active ~= ARGV[1] then
    redis.call('HSET', KEYS[1], 'retired:' .. ARGV[1], ARGV[2])
  end
end
return 1
`

// Generations reads and changes a projection's generation bookkeeping. Each
// change is one script on the one meta key, so it is atomic, also in a
// Redis Cluster.
type Generations struct {
	rdb    redis.UniversalClient
	layout Layout
}

// NewGenerations returns the bookkeeping of the projection laid out by layout.
func NewGenerations(rdb redis.UniversalClient, layout Layout) *Generations {
	return &Generations{rdb: rdb, layout: layout}
}

// Ensure creates the bookkeeping if it is missing, and checks that the
// projection is laid out for partitions. created tells that it was missing:
// a first start, or Redis lost its data.
func (g *Generations) Ensure(ctx context.Context, partitions int32) (created bool, err error) {
	res, err := redis.NewScript(ensureScript).Run(ctx, g.rdb, []string{g.layout.Meta()}, partitions).Text()
	if err != nil {
		return false, fmt.Errorf("%s: ensure generations: %w", g.layout.Name(), err)
	}
	if res == "created" {
		return true, nil
	}
	if res != strconv.Itoa(int(partitions)) {
		return false, fmt.Errorf("%w: %s is laid out for %s partitions, the topics have %d; rebuild it under another prefix",
			ErrPartitionsChanged, g.layout.Name(), res, partitions)
	}
	return false, nil
}

// Read returns the bookkeeping; ok is false when there is none.
func (g *Generations) Read(ctx context.Context) (m Meta, ok bool, err error) {
	fields, err := g.rdb.HGetAll(ctx, g.layout.Meta()).Result()
	if err != nil {
		return Meta{}, false, fmt.Errorf("%s: read generations: %w", g.layout.Name(), err)
	}
	if len(fields) == 0 {
		return Meta{}, false, nil
	}
	m.Retired = make(map[int64]time.Time)
	for k, v := range fields {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			return Meta{}, false, fmt.Errorf("%s: generations field %s=%q is not a number", g.layout.Name(), k, v)
		}
		switch {
		case k == "partitions":
			m.Partitions = int32(n)
		case k == "active":
			m.Active = n
		case k == "target":
			m.Target = n
		case strings.HasPrefix(k, "retired:"):
			gen, perr := strconv.ParseInt(strings.TrimPrefix(k, "retired:"), 10, 64)
			if perr == nil {
				m.Retired[gen] = time.UnixMilli(n)
			}
		}
	}
	return m, true, nil
}

// StartRebuild starts building a new generation from the start of the
// topics, unless one is already being built (then it returns that one with
// started false). force replaces a running build.
func (g *Generations) StartRebuild(ctx context.Context, force bool) (gen int64, started bool, err error) {
	f := ""
	if force {
		f = "1"
	}
	res, err := redis.NewScript(rebuildScript).Run(ctx, g.rdb, []string{g.layout.Meta()}, time.Now().UnixMilli(), f).Slice()
	if err != nil {
		return 0, false, fmt.Errorf("%s: start rebuild: %w", g.layout.Name(), err)
	}
	gen, _ = res[1].(int64)
	switch res[0] {
	case "missing":
		return 0, false, fmt.Errorf("%s has never been built: start the projector", g.layout.Name())
	case "running":
		return gen, false, nil
	}
	return gen, true, nil
}

// Promote makes gen, the target, the active generation. It reports false
// when gen is not the target any more or is already active.
func (g *Generations) Promote(ctx context.Context, gen int64) (bool, error) {
	n, err := redis.NewScript(promoteScript).Run(ctx, g.rdb, []string{g.layout.Meta()}, gen, time.Now().UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("%s: promote generation %d: %w", g.layout.Name(), gen, err)
	}
	return n == 1, nil
}

// Lost takes gen out of service after it lost positions, and starts
// building a new generation if gen was the target.
func (g *Generations) Lost(ctx context.Context, gen int64) error {
	if err := redis.NewScript(lostScript).Run(ctx, g.rdb, []string{g.layout.Meta()}, gen, time.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("%s: retire lost generation %d: %w", g.layout.Name(), gen, err)
	}
	return nil
}

// Drop removes every key of a retired generation and then its retirement
// record.
func (g *Generations) Drop(ctx context.Context, gen int64) error {
	err := forEachShard(ctx, g.rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, g.layout.GenerationPattern(gen), 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 500 {
				if err := c.Unlink(ctx, keys...).Err(); err != nil {
					return err
				}
				keys = keys[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if len(keys) > 0 {
			return c.Unlink(ctx, keys...).Err()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: drop generation %d: %w", g.layout.Name(), gen, err)
	}
	return g.rdb.HDel(ctx, g.layout.Meta(), "retired:"+strconv.FormatInt(gen, 10)).Err()
}

// forEachShard runs fn on every master of a cluster, or on the one server.
func forEachShard(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unsupported Redis client %T", rdb)
}

// ReadyToServe tells whether generation target may replace active: every
// partition of every topic of target reached the end of its topic once, and
// stands at or beyond active's position, so that readers never go back in
// time at the switch. active 0 means none is served yet.
func (g *Generations) ReadyToServe(ctx context.Context, target, active int64, topics []string, partitions int32) (bool, error) {
	read := func(gen int64) ([]*redis.SliceCmd, error) {
		pipe := g.rdb.Pipeline()
		var cmds []*redis.SliceCmd
		for p := range partitions {
			for _, t := range topics {
				cmds = append(cmds, pipe.HMGet(ctx, g.layout.Position(gen, p), "next:"+t, "caughtup:"+t))
			}
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	// The active generation first: it only moves forward, so a target at or
	// beyond what it read is at or beyond where it was.
	var served []*redis.SliceCmd
	if active != 0 {
		var err error
		if served, err = read(active); err != nil {
			return false, err
		}
	}
	built, err := read(target)
	if err != nil {
		return false, err
	}
	for i, c := range built {
		if c.Val()[1] != "1" {
			return false, nil
		}
		if served != nil && position(c.Val()[0]) < position(served[i].Val()[0]) {
			return false, nil
		}
	}
	return true, nil
}

func position(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
