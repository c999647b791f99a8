package relay_test

import (
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/log/relay"
)

// A caught-up relay reads when an append of its process is announced, not
// when its poll comes round: with a poll interval of a minute, each of three
// appends made while it waits is on Kafka within seconds.
func TestAnAnnouncedAppendWakesACaughtUpRelay(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.PollInterval = time.Minute
	cfg.Appended = e.store.Appended()
	run := e.startRelay(cfg, relay.Hooks{})
	waitFor(t, 10*time.Second, func() bool { return run.gauge("tributary_relay_leader") == 1 })
	for i := range 3 {
		time.Sleep(200 * time.Millisecond) // caught up: waiting
		e.appendEvents("woken-"+string(rune('a'+i)), 1, 1)
		e.checkComplete(e.consume(i+1, 10*time.Second))
	}
}

// Appends nobody announces — another process's — are read at the poll
// interval.
func TestUnannouncedAppendsAreReadAtThePoll(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.PollInterval = 100 * time.Millisecond
	run := e.startRelay(cfg, relay.Hooks{})
	waitFor(t, 10*time.Second, func() bool { return run.gauge("tributary_relay_leader") == 1 })
	time.Sleep(200 * time.Millisecond)
	e.appendEvents("unannounced", 4, 5)
	e.checkComplete(e.consume(20, 10*time.Second))
}
