package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// The kinds of fault.
const (
	killWriter    = "kill -9 writer"
	killRelay     = "kill -9 relay"
	killTransfers = "kill -9 process manager"
	killProjector = "kill -9 projector"
	restartRedis  = "restart Redis (data lost)"
	pausePostgres = "pause Postgres connections"
	// stallPostgres pauses longer than a request holds its Idempotency-Key
	// (30s): retries take the key over while the first attempt still waits.
	stallPostgres = "stall Postgres 40s"
	restartKafka  = "stop and start Kafka"
	// killRelayInOutage kills the relay while Kafka is down and it waits for
	// the acknowledgement of a batch: the moment a relay that moved its
	// checkpoint too early loses events.
	killRelayInOutage = "kill -9 relay in a Kafka outage"
)

// upBeforeNextKill is how long a restarted process runs before the next
// fault may hit it.
const upBeforeNextKill = 3 * time.Second

var faultKinds = []string{killWriter, killRelay, killTransfers, killProjector, restartRedis, pausePostgres, restartKafka, killRelayInOutage, stallPostgres}

// targets are the parts each kind of fault hits; faults that share a part
// take turns.
var targets = map[string][]string{
	killWriter: {"writer"}, killRelay: {"relay"}, killTransfers: {"transfers"}, killProjector: {"projector"},
	restartRedis: {"redis"}, pausePostgres: {"postgres"}, stallPostgres: {"postgres"}, restartKafka: {"kafka"}, killRelayInOutage: {"kafka", "relay"},
}

// fault is one planned fault and, once injected, what happened.
type fault struct {
	Kind string `json:"kind"`
	// At is the number of commands answered when the fault is due.
	At int `json:"at"`
	// For is how long the target stays down or paused.
	For time.Duration `json:"for"`
	// FiredAt is the number of commands answered when it began.
	FiredAt int    `json:"firedAt"`
	Err     string `json:"error,omitempty"`
}

// planFaults spreads n faults over the commands, between 5% and 90% of
// them: every kind once (when n allows 9), the rest at random, kills twice
// as likely as the others.
func planFaults(seed uint64, n, commands int) []fault {
	rng := rand.New(rand.NewPCG(seed, 0xfa0175))
	// The long stall comes once: the extra faults are the others, kills
	// twice as likely.
	weighted := append(slices.DeleteFunc(slices.Clone(faultKinds), func(k string) bool { return k == stallPostgres }),
		killWriter, killRelay, killTransfers, killProjector)
	kinds := make([]string, n)
	for i := range kinds {
		kinds[i] = weighted[rng.IntN(len(weighted))]
		if i < len(faultKinds) {
			kinds[i] = faultKinds[i]
		}
	}
	rng.Shuffle(n, func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	faults := make([]fault, n)
	for i, kind := range kinds {
		var d time.Duration
		switch kind {
		case pausePostgres:
			d = time.Duration(500+rng.IntN(3500)) * time.Millisecond
		case stallPostgres:
			d = 40 * time.Second
		case restartKafka, killRelayInOutage:
			d = time.Duration(400+rng.IntN(2600)) * time.Millisecond
		default:
			d = time.Duration(100+rng.IntN(1900)) * time.Millisecond
		}
		faults[i] = fault{Kind: kind, For: d, At: commands/20 + rng.IntN(commands*85/100)}
	}
	slices.SortFunc(faults, func(a, b fault) int { return a.At - b.At })
	return faults
}

// inject runs the faults, each when enough commands were answered (or at
// once when the load ended first); faults of one target wait for each
// other, faults of different targets may overlap. It returns when all were
// injected and their targets are back.
func (h *harness) inject(ctx context.Context, faults []fault, progress func() int, loadDone <-chan struct{}, out io.Writer) {
	parts := make(map[string]*sync.Mutex)
	for _, ps := range targets {
		for _, p := range ps {
			parts[p] = new(sync.Mutex)
		}
	}
	var wg sync.WaitGroup
	for i := range faults {
		f := &faults[i]
		for progress() < f.At && !closed(loadDone) {
			if ctx.Err() != nil {
				wg.Wait()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		f.FiredAt = progress()
		fmt.Fprintf(out, "chaos: fault %d/%d at %d commands: %s for %s\n", i+1, len(faults), f.FiredAt, f.Kind, f.For.Round(time.Millisecond))
		wg.Go(func() {
			for _, p := range targets[f.Kind] { // one order for all: no deadlock
				parts[p].Lock()
				defer parts[p].Unlock()
			}
			if err := h.injectOne(ctx, f.Kind, f.For); err != nil {
				f.Err = err.Error()
				fmt.Fprintf(out, "chaos: fault %s failed: %v\n", f.Kind, err)
			}
		})
	}
	wg.Wait()
}

func (h *harness) injectOne(ctx context.Context, kind string, d time.Duration) error {
	kill := func(p *process) error {
		if err := p.kill(); err != nil {
			return err
		}
		sleep(context.WithoutCancel(ctx), d)
		if err := p.start(); err != nil {
			return err
		}
		// The next fault of this process waits until it had time to join its
		// consumer group: kfake never expires a member killed inside its
		// JoinGroup (real Kafka does, after the session timeout), and its
		// partitions would stay assigned to the dead member for good.
		sleep(context.WithoutCancel(ctx), upBeforeNextKill)
		return nil
	}
	switch kind {
	case killWriter:
		return kill(h.writer)
	case killRelay:
		return kill(h.relay)
	case killTransfers:
		return kill(h.transfers)
	case killProjector:
		return kill(h.projector)
	case restartRedis:
		return h.restartRedis(context.WithoutCancel(ctx), d)
	case pausePostgres, stallPostgres:
		h.proxy.pause()
		sleep(context.WithoutCancel(ctx), d)
		h.proxy.resume()
		return nil
	case restartKafka:
		h.kafka.stop()
		sleep(context.WithoutCancel(ctx), d)
		return h.kafka.start()
	case killRelayInOutage:
		h.kafka.stop()
		sleep(context.WithoutCancel(ctx), d/2)
		err := h.relay.kill()
		sleep(context.WithoutCancel(ctx), d/2)
		if kerr := h.kafka.start(); kerr != nil {
			return kerr
		}
		if err != nil {
			return err
		}
		if err := h.relay.start(); err != nil {
			return err
		}
		sleep(context.WithoutCancel(ctx), upBeforeNextKill)
		return nil
	}
	return fmt.Errorf("unknown fault %q", kind)
}

// closed tells whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
