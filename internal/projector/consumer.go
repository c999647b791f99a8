package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tributary-es/tributary/internal/readmodels"
)

// Consumer runs several projectors on one consumer-group membership: one
// Kafka client fetches their topics, each record is decoded, validated and
// upcast once, and every projection gets it. Each projection keeps its own
// workers per partition, its own positions (claimed and fenced by its own
// epochs, written with its read model), its own retries, dead-letter topic,
// lag gauges and generations; a generation built beside the served ones
// runs on a client of its own (Projector.Group; see Run).
//
// The projections of a partition share its fetching: it pauses while any
// of their queues for it is full (Config.QueueLimit), so a projection that
// cannot apply a partition's events holds the others back on that
// partition once they are a queue ahead of it, and not on the other
// partitions.
type Consumer struct {
	ps    []*Projector
	group string
	log   *slog.Logger
	ready atomic.Bool
}

// ConsumerGroup names the consumer group of the processes that run the
// given projections on a shared consumer: <prefix>.projector.<names sorted,
// joined by "+">. Processes running the same projections share a group and
// the partitions.
func ConsumerGroup(prefix string, projections []string) string {
	names := slices.Sorted(slices.Values(projections))
	return prefix + ".projector." + strings.Join(names, "+")
}

// NewConsumer returns a consumer of the projectors. They must be made with
// the same Kafka settings (Config.Client, Topics, GroupPrefix, fetch and
// session settings: the first one's are used) and the same Schemas and
// Upcasters, as records are decoded once for all of them.
func NewConsumer(projectors ...*Projector) (*Consumer, error) {
	if len(projectors) == 0 {
		return nil, errors.New("a consumer needs at least one projector")
	}
	first := projectors[0]
	names := make([]string, 0, len(projectors))
	for _, p := range projectors {
		switch {
		case slices.Contains(names, p.Name()):
			return nil, fmt.Errorf("projection %s is given twice", p.Name())
		case p.cfg.Topics != first.cfg.Topics || p.cfg.GroupPrefix != first.cfg.GroupPrefix:
			return nil, fmt.Errorf("projection %s has other topics or another group prefix than %s", p.Name(), first.Name())
		case p.deps.Schemas != first.deps.Schemas || p.deps.Upcasters != first.deps.Upcasters:
			return nil, fmt.Errorf("projection %s has other schemas or upcasters than %s", p.Name(), first.Name())
		}
		names = append(names, p.Name())
	}
	group := ConsumerGroup(first.cfg.GroupPrefix, names)
	return &Consumer{ps: projectors, group: group, log: first.deps.Logger.With("consumergroup", group)}, nil
}

// Group is the consumer group the consumer is a member of.
func (c *Consumer) Group() string { return c.group }

// Ready tells whether the consumer is consuming: the topics and
// bookkeeping of every projection are set up. It says nothing of lag, so a
// rollout never waits for a projection to catch up.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Run keeps the projections up to date until ctx ends: it feeds each
// projection's served generation from the shared client, runs a generation
// being built beside it on a client of its own, promotes a built generation
// once it has caught up, rebuilds a projection whose positions Redis lost,
// and drops retired generations. When the generations the shared client
// feeds change (a promotion, a loss), it leaves the group and joins again
// with the new ones: the other projections pause for that rebalance. On
// return every batch in flight is written with its position and the group
// is left.
//
// Where a generation being built runs: the first build of a projection
// (generation 1) in the shared client — on a new deployment all are built
// at once; a projection added to running ones keeps them back on each
// partition to a queue ahead of it until it has caught up — and a later
// one (a rebuild, also after lost positions) on a client of its own,
// joining the shared client once it is served.
func (c *Consumer) Run(ctx context.Context) error {
	for _, p := range c.ps {
		if err := p.setUp(ctx); err != nil {
			return err
		}
	}
	own := make(map[*Projector]map[int64]*runnerHandle, len(c.ps))
	for _, p := range c.ps {
		own[p] = make(map[int64]*runnerHandle)
	}
	var shared *runnerHandle
	c.setReady(true)
	defer c.setReady(false)
	defer func() {
		if shared != nil {
			shared.stop()
		}
		for _, runners := range own {
			stopAll(runners)
		}
	}()
	tick := time.NewTicker(c.ps[0].cfg.Poll)
	defer tick.Stop()
	metas := make(map[*Projector]readmodels.Meta, len(c.ps))
	states := make(map[*Projector]bookkeeping, len(c.ps))
	for {
		var fed map[*Projector]int64
		if shared != nil {
			fed = shared.gens()
		}
		for _, p := range c.ps {
			meta, state, err := p.readBookkeeping(ctx, own[p])
			if err != nil {
				return err
			}
			metas[p], states[p] = meta, state
		}
		want := make(map[*Projector]int64, len(c.ps))
		served := make(map[*Projector]bool, len(c.ps))
		pending := false // a projection whose place is not known yet
		for _, p := range c.ps {
			meta := metas[p]
			switch states[p] {
			case current:
				if gen := sharedGeneration(meta); gen != 0 {
					want[p], served[p] = gen, gen == meta.Active
				}
			case unread:
				if gen, ok := fed[p]; ok {
					want[p] = gen // as it is, until Redis answers
				} else {
					pending = true
				}
			case recreated:
				pending = true
			}
		}
		lost := false // a fed generation whose bookkeeping is gone
		for p := range fed {
			lost = lost || states[p] == recreated
		}
		if shared != nil && (lost || !maps.Equal(fed, want)) {
			c.log.Info("the generations the shared consumer feeds change: joining the group again", "from", generations(fed), "to", generations(want))
			shared.stop()
			shared = nil
		}
		for _, p := range c.ps {
			if states[p] != current {
				continue
			}
			var beside []int64
			if meta := metas[p]; meta.Target != 0 && meta.Target != want[p] {
				beside = []int64{meta.Target}
			}
			p.keep(ctx, metas[p], own[p], beside)
		}
		switch {
		case shared == nil && !pending && len(want) > 0:
			shared = startRunner(ctx, c.group, want, served, c.ps)
		case shared != nil:
			for _, l := range shared.r.lanes {
				if s, ok := served[l.p]; ok {
					l.served.Store(s)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if shared != nil && shared.exited() {
			err := shared.err
			gens := shared.gens()
			shared = nil
			if le, ok := errors.AsType[*laneError](err); ok {
				if err := le.p.handleRunnerExit(ctx, le.gen, le.err); err != nil {
					return err
				}
			} else if err != nil && ctx.Err() == nil {
				return fmt.Errorf("consumer group %s (generations %v): %w", c.group, generations(gens), err)
			}
		}
		for _, p := range c.ps {
			if err := p.reapRunners(ctx, own[p]); err != nil {
				return err
			}
		}
	}
}

// sharedGeneration is the generation of a projection that the shared
// client feeds, 0 for none: the served one, or the first build
// (generation 1: a new deployment, a projection added, or Redis emptied).
// A later generation being built — a rebuild, or a rebuild after lost
// positions — runs on a client of its own until it is served. The choice
// depends only on the bookkeeping in Redis, so every process makes the
// same one: a generation is never fed by two groups at once, except while
// the processes one after the other move a promoted generation into their
// shared consumers.
func sharedGeneration(m readmodels.Meta) int64 {
	switch {
	case m.Active != 0:
		return m.Active
	case m.Target == 1:
		return m.Target
	}
	return 0
}

func (c *Consumer) setReady(ready bool) {
	c.ready.Store(ready)
	for _, p := range c.ps {
		p.ready.Store(ready)
	}
}

// generations names the projections' generations, for logs.
func generations(gens map[*Projector]int64) map[string]int64 {
	m := make(map[string]int64, len(gens))
	for p, gen := range gens {
		m[p.Name()] = gen
	}
	return m
}
