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
)

// Consumer runs several projectors on one consumer-group membership: one
// Kafka client fetches their topics, each record is decoded, validated and
// upcast once, and every projection gets it. Each projection keeps its own
// workers per partition, its own positions (claimed and fenced by its own
// epochs, written with its read model), its own retries, dead-letter topic,
// lag gauges and generations; a rebuild's generation beside the served one
// runs on a client of its own (Projector.Group).
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
// projection's served generation (or its first build) from the shared
// client, runs a rebuild's generation beside it on its own, promotes a
// rebuilt generation once it has caught up, rebuilds a projection whose
// positions Redis lost, and drops retired generations. When a projection's
// fed generation changes (a promotion, a loss), the shared client leaves
// the group and joins again with the new generation: the other projections
// pause for that rebalance. On return every batch in flight is written
// with its position and the group is left.
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
	for {
		want := make(map[*Projector]int64, len(c.ps))
		served := make(map[*Projector]bool, len(c.ps))
		var fed map[*Projector]int64
		if shared != nil {
			fed = shared.gens()
		}
		for _, p := range c.ps {
			meta, state, err := p.supervise(ctx, own[p], besideMain)
			if err != nil {
				return err
			}
			switch state {
			case current:
				want[p] = mainGeneration(meta)
				served[p] = want[p] == meta.Active
			case unread:
				if gen, ok := fed[p]; ok {
					want[p] = gen // as it is, until Redis answers
				}
			case recreated:
				if shared != nil {
					shared.stop() // its generation starts again from nothing
					shared, fed = nil, nil
				}
			}
		}
		if shared != nil && !maps.Equal(fed, want) {
			c.log.Info("a projection's generation changed: joining the group again", "from", generations(fed), "to", generations(want))
			shared.stop()
			shared = nil
		}
		switch {
		case shared == nil && len(want) == len(c.ps):
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
