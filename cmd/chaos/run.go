package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// report is what a run prints.
type report struct {
	Seed      uint64 `json:"seed"`
	Broken    bool   `json:"brokenRelay"`
	Commands  int    `json:"commands"`
	Accepted  int    `json:"accepted"`
	Refused   int    `json:"refused"`
	Undecided int    `json:"undecided"`
	Retried   int    `json:"retried"` // commands that took more than one attempt
	// Principals own the accounts; the operator and the trespassers (other
	// principals, no token, forged tokens) send some commands besides.
	Principals int            `json:"principals"`
	Senders    map[string]int `json:"commandsBySender"`
	Events     int            `json:"events"`
	LoadSecs   float64        `json:"loadSeconds"`
	// Latency of a command until its definite answer, retries included.
	LatencyP50 time.Duration `json:"latencyP50"`
	LatencyP99 time.Duration `json:"latencyP99"`
	LatencyMax time.Duration `json:"latencyMax"`
	// Slowest is the command that waited longest, and why.
	Slowest string `json:"slowest"`
	// SettleSecs is how long the pipeline took, after the load, until every
	// transfer had ended and every check passed (or the settle time ran out).
	SettleSecs float64  `json:"settleSeconds"`
	Faults     []fault  `json:"faults"`
	Exits      []string `json:"unaskedExits,omitempty"`
	Checks     []*check `json:"checks"`
	Violations int      `json:"violations"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	s, err := parseSettings(args, getenv, stderr)
	if err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr} // progress comes from several goroutines
	fmt.Fprintf(stderr, "chaos: seed %d: %d commands by %d clients on %d accounts of %d principals, %d faults; building and starting the platform\n",
		s.seed, s.commands, s.clients, s.accounts, s.principals, s.faults)
	p := plan{seed: s.seed, accounts: s.accounts, commands: s.commands, principals: s.principals}
	h, err := startHarness(ctx, s, p, stderr)
	if err != nil {
		return err
	}
	keep := s.keep
	defer func() { h.close(keep) }()

	l := newLoad(p, h.writerURL, s.clients, s.giveUp, h.creds)
	faults := planFaults(s.seed, s.faults, s.commands)
	loadDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { h.inject(ctx, faults, func() int { return int(l.done.Load()) }, loadDone, stderr) })
	wg.Go(func() { reportProgress(ctx, l, loadDone, stderr) })
	began := time.Now()
	l.run(ctx)
	close(loadDone)
	wg.Wait()
	rep := report{Seed: s.seed, Broken: s.broken, Commands: s.commands, Faults: faults, LoadSecs: time.Since(began).Seconds()}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "chaos: load done in %.1fs; waiting for the pipeline to settle\n", rep.LoadSecs)

	settleBegan := time.Now()
	until := settleBegan.Add(s.settle)
	if err := waitForTransfers(ctx, h.dbURL, until); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
	}
	store, err := readStore(ctx, h.dbURL)
	if err != nil {
		return err
	}
	waitForReadModels(ctx, h, store, until)
	v := &verifier{store: store, commands: l.commands, outcomes: l.outcomes, rdb: h.rdb,
		kafkaAddr: h.kafka.addr(), partitions: int32(s.partitions)}
	rep.Checks, err = v.checks(ctx, until)
	if err != nil {
		return err
	}
	rep.SettleSecs = time.Since(settleBegan).Seconds()
	rep.Events = len(store.events)
	rep.Principals, rep.Senders = s.principals, make(map[string]int)
	for _, c := range l.commands {
		rep.Senders[c.as.String()]++
	}
	for _, o := range l.outcomes {
		switch {
		case o.accepted():
			rep.Accepted++
		case o.refused():
			rep.Refused++
		default:
			rep.Undecided++
		}
		if o.attempts > 1 {
			rep.Retried++
		}
	}
	rep.latencies(l)
	for _, p := range append(h.processes(), h.redis) {
		rep.Exits = append(rep.Exits, p.unaskedExits()...)
	}
	for _, c := range rep.Checks {
		rep.Violations += c.Violations
	}
	if s.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Violations > 0 {
		keep = true
		return fmt.Errorf("%w: %d (seed %d; replay with --seed %d)", errViolations, rep.Violations, s.seed, s.seed)
	}
	return nil
}

// reportProgress prints how far the load is every few seconds.
func reportProgress(ctx context.Context, l *load, done <-chan struct{}, out io.Writer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
			fmt.Fprintf(out, "chaos: %d of %d commands answered\n", l.done.Load(), len(l.commands))
		}
	}
}

// waitForTransfers waits until every transfer in the store has ended.
func waitForTransfers(ctx context.Context, databaseURL string, until time.Time) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		var open int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT aggregate_id FROM events WHERE aggregate_type = 'transfer'
            GROUP BY aggregate_id HAVING NOT bool_or(event_type IN ('TransferCompleted', 'TransferFailed'))) t`).Scan(&open)
		if err != nil {
			return err
		}
		if open == 0 {
			return nil
		}
		if time.Now().After(until) {
			return fmt.Errorf("%d transfers still open when the settle time ran out", open)
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// waitForReadModels waits until every account's summary and history stand
// at its last version (the checks then repeat what lags further).
func waitForReadModels(ctx context.Context, h *harness, store *eventStore, until time.Time) {
	q := accounts.NewQueries(h.rdb, readModelRoot)
	ids := store.ids("account")
	for time.Now().Before(until) && ctx.Err() == nil {
		behind := 0
		for _, id := range ids {
			want := store.version("account", id)
			s, errS := q.SummaryVersion(ctx, id)
			hv, errH := q.HistoryVersion(ctx, id)
			if errS != nil || errH != nil || s != want || hv != want {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// writeText prints the report as a table.
func (r report) writeText(w io.Writer) error {
	var b strings.Builder
	verdict := "PASS: no violation"
	if r.Violations > 0 {
		verdict = fmt.Sprintf("FAIL: %d violations", r.Violations)
	}
	broken := ""
	if r.Broken {
		broken = " (deliberately broken relay: checkpoint before ack)"
	}
	fmt.Fprintf(&b, "chaos report, seed %d%s — %s\n\n", r.Seed, broken, verdict)
	fmt.Fprintf(&b, "commands  %d: %d accepted, %d refused, %d without answer; %d needed retries\n", r.Commands, r.Accepted, r.Refused, r.Undecided, r.Retried)
	fmt.Fprintf(&b, "senders   %d principals own the accounts; commands by owners %d, the operator %d, strangers %d, no token %d, forged tokens %d\n",
		r.Principals, r.Senders[asOwner.String()], r.Senders[asOperator.String()], r.Senders[asStranger.String()],
		r.Senders[asAnonymous.String()], r.Senders[asForger.String()])
	fmt.Fprintf(&b, "latency   p50 %s, p99 %s, max %s (retries included); slowest: %s\n", r.LatencyP50.Round(time.Microsecond),
		r.LatencyP99.Round(time.Microsecond), r.LatencyMax.Round(time.Millisecond), r.Slowest)
	fmt.Fprintf(&b, "events    %d in the store\n", r.Events)
	fmt.Fprintf(&b, "time      load %.1fs, settle and check %.1fs\n\n", r.LoadSecs, r.SettleSecs)
	fmt.Fprintf(&b, "faults (%d):\n", len(r.Faults))
	for i, f := range r.Faults {
		status := ""
		if f.Err != "" {
			status = " — FAILED TO INJECT: " + f.Err
		}
		fmt.Fprintf(&b, "  %2d. at %6d commands: %-32s for %s%s\n", i+1, f.FiredAt, f.Kind, f.For.Round(time.Millisecond), status)
	}
	if len(r.Exits) > 0 {
		fmt.Fprintf(&b, "\nprocesses that exited on their own and were restarted (%d):\n", len(r.Exits))
		for _, e := range r.Exits {
			fmt.Fprintf(&b, "  - %s\n", e)
		}
	}
	fmt.Fprintf(&b, "\nchecks:\n")
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if c.Violations > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %-*s  %7d checked, %d violations\n", mark, width, c.Name, c.Checked, c.Violations)
		for _, e := range c.Examples {
			fmt.Fprintf(&b, "         - %s\n", e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// latencies fills in the latency figures.
func (r *report) latencies(l *load) {
	ds := make([]time.Duration, len(l.outcomes))
	slowest := 0
	for i, o := range l.outcomes {
		ds[i] = o.latency
		if o.latency > l.outcomes[slowest].latency {
			slowest = i
		}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	r.LatencyP50, r.LatencyP99, r.LatencyMax = at(0.50), at(0.99), ds[len(ds)-1]
	c, o := l.commands[slowest], l.outcomes[slowest]
	r.Slowest = fmt.Sprintf("%s (%s %s), %d attempts, final status %d", c.id, c.kind, c.account, o.attempts, o.status)
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
