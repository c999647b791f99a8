package projector_test

import (
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/testenv"
)

// A projector started before its Kafka keeps trying for StartTimeout and
// then projects as usual (orchestrators start the parts in any order; the
// chaos suite restarts Kafka while projectors restart).
func TestStartsWhenKafkaComesUpLate(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	addr := ln.Addr().String()
	ln.Close()
	e.cfg.Client = []kgo.Opt{kgo.SeedBrokers(addr)}
	e.cfg.StartTimeout = 30 * time.Second
	stop := e.run(e.projector(accounts.SummaryProjection{}, nil))

	time.Sleep(1500 * time.Millisecond) // the projector is trying to reach nobody
	c := testenv.Kafka(t, kfake.Ports(port))
	e.addrs = c.ListenAddrs()
	e.client = testenv.KafkaClient(t, e.addrs)
	// The new cluster has no topic yet; whether the projector's start made
	// it before this produce is a race the test must not depend on.
	if err := e.cfg.Topics.Ensure(t.Context(), e.client, e.cfg.Topics.For(account.AggregateType)); err != nil {
		t.Fatal(err)
	}
	h := generate(20, 300, 11)
	e.produce(h.events)
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "summaries caught up", e.caughtUp(q, h))
	e.checkSummaries(q, h)
	if err := stop(); err != nil {
		t.Fatalf("the projector ended with %v", err)
	}
}

// Without Kafka for all of StartTimeout, the start fails and says why.
func TestStartGivesUpAfterStartTimeout(t *testing.T) {
	e := newEnv(t)
	e.cfg.Client = []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}
	e.cfg.StartTimeout = 2 * time.Second
	p := e.projector(accounts.SummaryProjection{}, nil)
	began := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(t.Context()) }()
	select {
	case err := <-runErr:
		if err == nil || time.Since(began) < 2*time.Second {
			t.Fatalf("Run returned %v after %s, want an error after the 2s StartTimeout", err, time.Since(began))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still trying 20s after a 2s StartTimeout")
	}
}
