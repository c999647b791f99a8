package projector_test

import (
	"cmp"
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

const eventsMetric = "tributary_projection_events_total"

// counterSeries reads every series of counter name from reg: the values of
// labels, in that order, joined by "|" → the count.
func counterSeries(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := make(map[string]float64)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			values := make([]string, len(labels))
			for _, l := range m.GetLabel() {
				if i := slices.Index(labels, l.GetName()); i >= 0 {
					values[i] = l.GetValue()
				}
			}
			series[strings.Join(values, "|")] += m.GetCounter().GetValue()
		}
	}
	return series
}

// sumCounter sums the series of counter name in reg whose labels have the
// given values.
func sumCounter(t testing.TB, reg prometheus.Gatherer, name string, label, value string) float64 {
	t.Helper()
	var sum float64
	for k, v := range counterSeries(t, reg, name, label) {
		if k == value {
			sum += v
		}
	}
	return sum
}

// wantSeries checks that counter name in reg has exactly the series want
// (keys as counterSeries makes them).
func wantSeries(t testing.TB, reg prometheus.Gatherer, name string, labels []string, want map[string]float64) {
	t.Helper()
	got := counterSeries(t, reg, name, labels...)
	if !maps.Equal(got, want) {
		t.Fatalf("%s{%s}:\n got %v\nwant %v", name, strings.Join(labels, ","), got, want)
	}
}

// checkDirectoryIsTheFold compares the directory with the folds: every
// open account ranked by balance (ties by id, descending), and the accounts
// of each status by opening time.
func (e *env) checkDirectoryIsTheFold(q *accounts.Queries, h *history) {
	e.t.Helper()
	ctx := context.Background()
	var ranked []accounts.Ranked
	byStatus := make(map[account.Status][]accounts.Ranked)
	for id, evs := range h.byID {
		s := fold(e.t, evs)
		if s.Status != account.StatusClosed {
			ranked = append(ranked, accounts.Ranked{ID: id, Score: s.Balance})
		}
		byStatus[s.Status] = append(byStatus[s.Status], accounts.Ranked{ID: id, Score: evs[0].RecordedAt.UnixMilli()})
	}
	slices.SortFunc(ranked, func(a, b accounts.Ranked) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(b.ID, a.ID))
	})
	got, err := q.TopByBalance(ctx, "EUR", len(h.byID))
	if err != nil {
		e.t.Fatal(err)
	}
	if !slices.Equal(got, ranked) {
		e.t.Fatalf("accounts by balance:\n got %v\nwant %v", got, ranked)
	}
	for _, status := range []account.Status{account.StatusPending, account.StatusActive, account.StatusClosed} {
		want := byStatus[status]
		slices.SortFunc(want, func(a, b accounts.Ranked) int {
			return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(a.ID, b.ID))
		})
		got, err := q.ByStatus(ctx, string(status), len(h.byID))
		if err != nil {
			e.t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			e.t.Fatalf("%s accounts:\n got %v\nwant %v", status, got, want)
		}
	}
}

// Acceptance: the same events delivered twice by Kafka (duplicates from a
// relay retry) change nothing. The relay sends the history in runs; after
// some runs it sends again a contiguous run of events it sent before (its
// acknowledgement was lost), overlapping earlier re-sends, while the
// projections consume.
func TestDuplicateDeliveriesChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := generate(60, 1500, 3)
	projections := []readmodels.Projection{accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{}}
	regs := make(map[string]*prometheus.Registry)
	for _, p := range projections {
		regs[p.Name()] = prometheus.NewRegistry()
		e.run(e.projector(p, regs[p.Name()]))
	}

	rng := rand.New(rand.NewPCG(3, 2))
	var resent []log.Event
	var last [2]int // the previous re-sent run [from, to)
	for sent := 0; sent < len(h.events); {
		run := h.events[sent:min(sent+1+rng.IntN(150), len(h.events))]
		e.produce(run)
		sent += len(run)
		if rng.IntN(3) == 0 && sent < len(h.events) {
			continue
		}
		from := max(0, sent-1-rng.IntN(250))
		if last[1] > last[0] && rng.IntN(2) == 0 {
			from = last[0] + rng.IntN(last[1]-last[0]) // overlaps the previous re-send
		}
		to := min(sent, from+1+rng.IntN(120))
		e.produce(h.events[from:to])
		resent = append(resent, h.events[from:to]...)
		last = [2]int{from, to}
	}
	distinct := make(map[string]bool)
	for _, ev := range resent {
		distinct[ev.ID.String()] = true
	}
	overlapping := len(resent) - len(distinct)
	if len(resent) < 300 || overlapping < 20 {
		t.Fatalf("%d events re-sent, %d of them more than once: too weak a test", len(resent), overlapping)
	}
	t.Logf("%d events, %d re-sent (%d more than once)", len(h.events), len(resent), overlapping)

	want := make(map[string]map[string]float64) // projection → projection|type|outcome → count
	for _, p := range projections {
		want[p.Name()] = make(map[string]float64)
		for _, ev := range h.events {
			want[p.Name()][p.Name()+"|"+ev.Type+"|applied"]++
		}
		for _, ev := range resent {
			want[p.Name()][p.Name()+"|"+ev.Type+"|duplicate"]++
		}
	}
	for _, p := range projections {
		reg := regs[p.Name()]
		waitFor(t, 60*time.Second, p.Name()+" handled every delivery", func() (bool, error) {
			n := sumCounter(t, reg, eventsMetric, "projection", p.Name())
			return n >= float64(len(h.events)+len(resent)), nil
		})
		waitFor(t, 30*time.Second, p.Name()+" served", func() (bool, error) {
			_, err := readmodels.ActiveView(context.Background(), e.rdb, readmodels.NewLayout(e.prefix, p.Name()))
			return err == nil, nil
		})
	}

	q := accounts.NewQueries(e.rdb, e.prefix)
	e.checkSummaries(q, h)
	e.checkHistories(q, h)
	e.checkDirectoryIsTheFold(q, h)
	for _, p := range projections {
		wantSeries(t, regs[p.Name()], eventsMetric, []string{"projection", "type", "outcome"}, want[p.Name()])
		if got := sumCounter(t, regs[p.Name()], eventsMetric, "outcome", "duplicate"); got != float64(len(resent)) {
			t.Fatalf("%s counted %v duplicates, %d events were re-sent", p.Name(), got, len(resent))
		}
	}
}
