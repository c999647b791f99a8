package relay_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-es/tributary/internal/log/relay"
)

// A transaction held open anywhere on the server holds the relay's
// watermark back; the relay says which and for how long: the age gauge
// rises within a second or two, the info gauge names its pid and
// application_name, the events behind it wait (backlog), and all of it
// clears when it ends.
func TestTheTransactionHoldingTheRelayBackIsNamed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.startRelay(testConfig(), relay.Hooks{})
	e.appendEvents("before", 2, 1)
	e.consume(2, 30*time.Second)

	cfg, err := pgx.ParseConfig(e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "held-by-test"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	heldAt := time.Now() // no later than the transaction's start
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var pid int
	var xid string
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid(), pg_current_xact_id()::text`).Scan(&pid, &xid); err != nil {
		t.Fatal(err)
	}
	e.appendEvents("behind", 3, 1) // committed after the held transaction took its id: they wait

	// Other tests' transactions on the same server are short: ours becomes
	// the oldest.
	waitFor(t, 30*time.Second, func() bool {
		return r.labelled("tributary_relay_oldest_transaction_info", "pid", strconv.Itoa(pid), "application_name", "held-by-test") == 1 &&
			r.gauge("tributary_relay_oldest_transaction_seconds") >= 1 &&
			r.gauge("tributary_relay_backlog_events") >= 3 // measured after the appends committed
	})
	if age, open := r.gauge("tributary_relay_oldest_transaction_seconds"), time.Since(heldAt).Seconds(); age > open+1 {
		t.Fatalf("oldest transaction %.1fs old, but ours has been open %.1fs", age, open)
	}
	if b := r.gauge("tributary_relay_backlog_events"); b < 3 {
		t.Fatalf("backlog %v while the held transaction is open, want the 3 events behind it", b)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	e.consume(2+3, 30*time.Second)
	waitFor(t, 30*time.Second, func() bool {
		return r.labelled("tributary_relay_oldest_transaction_info", "pid", strconv.Itoa(pid), "application_name", "held-by-test") < 0
	})
}

// labelled is the value of the gauge name's series with the given label
// pairs, -1 when there is none.
func (r *running) labelled(name string, labels ...string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
