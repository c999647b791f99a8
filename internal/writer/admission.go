package writer

import (
	"context"
	"time"
)

// admission bounds the commands the API works on at once. A command beyond
// the bound waits for one to finish, at most wait; one that still finds no
// room is shed: answered 503 (overloaded) before anything of it is read or
// written. Under a load past what Postgres takes, the commands admitted
// keep their latency and the rest learn at once to come back, instead of
// every command queueing until its client gives up.
type admission struct {
	slots chan struct{} // nil: no bound
	wait  time.Duration
}

func newAdmission(limit int, wait time.Duration) *admission {
	a := &admission{wait: wait}
	if limit > 0 {
		a.slots = make(chan struct{}, limit)
	}
	return a
}

// enter takes a place for a command, waiting at most a.wait; ok is false
// when none came free in time (or ctx ended). release gives the place back.
func (a *admission) enter(ctx context.Context) (release func(), ok bool) {
	if a.slots == nil {
		return func() {}, true
	}
	select {
	case a.slots <- struct{}{}:
		return a.leave, true
	default:
	}
	if a.wait <= 0 {
		return nil, false
	}
	timer := time.NewTimer(a.wait)
	defer timer.Stop()
	select {
	case a.slots <- struct{}{}:
		return a.leave, true
	case <-timer.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

func (a *admission) leave() { <-a.slots }
