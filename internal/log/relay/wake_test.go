package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/log/relay"
)

// A caught-up relay reads when an append commits, not when its poll comes
// round: with a poll interval of a minute, each of three appends made while
// it waits is on Kafka within seconds.
func TestACommittedAppendWakesACaughtUpRelay(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.PollInterval = time.Minute
	run := e.startRelay(cfg, relay.Hooks{})
	waitFor(t, 10*time.Second, func() bool { return run.gauge("tributary_relay_leader") == 1 })
	for i := range 3 {
		time.Sleep(200 * time.Millisecond) // caught up: waiting for an announcement
		e.appendEvents("woken-"+string(rune('a'+i)), 1, 1)
		e.checkComplete(e.consume(i+1, 10*time.Second))
	}
}

// Without announcements — the trigger disabled, a notification lost — the
// relay still reads at its poll interval: events wait, none is lost.
func TestWithoutAnnouncementsTheRelayStillPolls(t *testing.T) {
	e := newEnv(t)
	if _, err := e.pool.Exec(context.Background(), `ALTER TABLE events DISABLE TRIGGER announce_append`); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.PollInterval = 100 * time.Millisecond
	run := e.startRelay(cfg, relay.Hooks{})
	waitFor(t, 10*time.Second, func() bool { return run.gauge("tributary_relay_leader") == 1 })
	time.Sleep(200 * time.Millisecond)
	e.appendEvents("unannounced", 4, 5)
	e.checkComplete(e.consume(20, 10*time.Second))
}
