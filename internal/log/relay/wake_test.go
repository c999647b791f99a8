package relay_test

import (
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/log/relay"
)

// A caught-up relay reads when an append is announced, not when its poll
// comes round: with a poll interval of a minute, each of three appends
// made while it waits is on Kafka within seconds. The announcements are
// the test's, repeated until the event is on Kafka: the read one wakes
// may find the watermark held by a transaction of another test on the
// same server (the watermark is server-wide), and then only the next
// announcement, not the poll, may read it. (That the store announces its
// appends is postgres's TestAppendedAnnouncesAppendsWithoutEverBlockingThem.)
func TestAnAnnouncedAppendWakesACaughtUpRelay(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.PollInterval = time.Minute
	announced := make(chan struct{}, 1)
	cfg.Appended = announced
	run := e.startRelay(cfg, relay.Hooks{})
	waitFor(t, 10*time.Second, func() bool { return run.gauge("tributary_relay_leader") == 1 })
	for i := range 3 {
		time.Sleep(200 * time.Millisecond) // caught up: waiting
		e.appendEvents("woken-"+string(rune('a'+i)), 1, 1)
		stop := make(chan struct{})
		go func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case announced <- struct{}{}:
				default:
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		e.checkComplete(e.consume(i+1, 30*time.Second))
		close(stop)
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
