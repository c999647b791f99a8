package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	"github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/testenv"
)

// readModelRoot and topicPrefix are the defaults the processes run with.
const (
	readModelRoot = "tributary"
	topicPrefix   = "tributary"
)

// check is one promise, how many things it looked at, and what broke it.
type check struct {
	Name       string   `json:"name"`
	Checked    int      `json:"checked"`
	Violations int      `json:"violations"`
	Examples   []string `json:"examples,omitempty"`
}

func (c *check) failf(format string, args ...any) {
	c.Violations++
	if len(c.Examples) < 8 {
		c.Examples = append(c.Examples, fmt.Sprintf(format, args...))
	}
}

// verifier checks the run's outcome against the event store.
type verifier struct {
	store      *eventStore
	commands   []command
	outcomes   []outcome
	rdb        *redis.Client
	kafkaAddr  string
	partitions int32
}

// checkFunc is one check; eventual ones look at what the pipeline derives
// from the store (Kafka, read models) and may be repeated while it catches up.
type checkFunc struct {
	run      func(context.Context) (*check, error)
	eventual bool
}

// checks runs every check; the eventual ones that fail are repeated until
// they pass or until ends, so a lagging projection is not taken for a
// wrong one (the lag is what the settle time reports).
func (v *verifier) checks(ctx context.Context, until time.Time) ([]*check, error) {
	funcs := []checkFunc{
		{v.streamsAreContiguous, false}, {v.commandsKeptTheirWord, false}, {v.accessIsEnforced, false},
		{v.principalsAreRecorded, false}, {v.moneyIsConserved, false}, {v.transfersEnded, false}, {v.kafkaHoldsEveryEventInPlace, true}, {v.summariesAreTheFold, true},
		{v.historiesAreComplete, true}, {v.directoryIsTheFold, true}, {v.transfersModelIsTheFold, true},
		{v.correlationsAreComplete, true},
	}
	all := make([]*check, len(funcs))
	for i, f := range funcs {
		for {
			c, err := f.run(ctx)
			if err != nil {
				return nil, err
			}
			all[i] = c
			if c.Violations == 0 || !f.eventual || time.Now().After(until) {
				break
			}
			sleep(ctx, 2*time.Second)
		}
	}
	return all, nil
}

// streamsAreContiguous: every stream's versions are 1..N (G1).
func (v *verifier) streamsAreContiguous(context.Context) (*check, error) {
	c := &check{Name: "event store: every stream's versions are 1..N, no gap, no repeat"}
	for k, evs := range v.store.streams {
		c.Checked++
		for i, e := range evs {
			if e.Version != int64(i+1) {
				c.failf("%s %s: version %d at place %d", k.aggregateType, k.aggregateID, e.Version, i+1)
				break
			}
		}
	}
	return c, nil
}

// kafkaHoldsEveryEventInPlace reads every record of the event topics: each
// is a stored event, in the partition its key hashes to (Kafka's murmur2,
// computed independently), and each aggregate's events come in version
// order (repeats of what came before are allowed: delivery is at least
// once); and every stored event is there.
func (v *verifier) kafkaHoldsEveryEventInPlace(ctx context.Context) (*check, error) {
	c := &check{Name: "Kafka: every committed event once or more, in its key's partition, in order"}
	topics := kafka.Topics{Prefix: topicPrefix}
	names := []string{topics.For(account.AggregateType), topics.For(transfer.AggregateType)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(v.kafkaAddr))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list the topics' end offsets: %w", err)
	}
	consume := make(map[string]map[int32]kgo.Offset)
	remaining := make(map[string]map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset == 0 {
			return
		}
		if consume[o.Topic] == nil {
			consume[o.Topic], remaining[o.Topic] = make(map[int32]kgo.Offset), make(map[int32]int64)
		}
		consume[o.Topic][o.Partition] = kgo.NewOffset().At(0)
		remaining[o.Topic][o.Partition] = o.Offset
	})
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("list the topics' end offsets: %w", err)
	}
	reader, err := kgo.NewClient(kgo.SeedBrokers(v.kafkaAddr), kgo.ConsumePartitions(consume), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		return nil, err
	}
	defer reader.Close()
	last := make(map[streamKey]int64) // highest version seen per aggregate
	records, repeats := 0, 0
	for len(remaining) > 0 {
		fs := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fs.EachError(func(t string, p int32, err error) { c.failf("fetch %s/%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			records++
			if end, ok := remaining[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining[r.Topic], r.Partition)
				if len(remaining[r.Topic]) == 0 {
					delete(remaining, r.Topic)
				}
			}
			e, err := kafka.DecodeRecord(r)
			if err != nil {
				c.failf("%s/%d@%d does not decode: %v", r.Topic, r.Partition, r.Offset, err)
				return
			}
			stored, ok := v.store.byID[e.ID.String()]
			switch {
			case !ok:
				c.failf("%s/%d@%d: event %s is not in the store", r.Topic, r.Partition, r.Offset, e.ID)
				return
			case stored.AggregateID != e.AggregateID || stored.Version != e.Version || stored.Type != e.Type:
				c.failf("%s/%d@%d: event %s says %s v%d %s, the store %s v%d %s", r.Topic, r.Partition, r.Offset, e.ID,
					e.AggregateID, e.Version, e.Type, stored.AggregateID, stored.Version, stored.Type)
			case r.Topic != topics.For(stored.AggregateType):
				c.failf("%s/%d@%d: a %s event on the wrong topic", r.Topic, r.Partition, r.Offset, stored.AggregateType)
			case r.Partition != testenv.KafkaPartition(r.Key, v.partitions):
				c.failf("%s/%d@%d: key %q belongs in partition %d", r.Topic, r.Partition, r.Offset, r.Key, testenv.KafkaPartition(r.Key, v.partitions))
			}
			k := streamKey{stored.AggregateType, stored.AggregateID}
			switch seen := last[k]; {
			case stored.Version <= seen:
				repeats++
			case stored.Version == seen+1:
				last[k] = stored.Version
			default:
				c.failf("%s %s: v%d came after v%d (%s/%d@%d): out of order or missing", k.aggregateType, k.aggregateID,
					stored.Version, seen, r.Topic, r.Partition, r.Offset)
				last[k] = stored.Version
			}
		})
	}
	missing := 0
	for k, evs := range v.store.streams {
		c.Checked += len(evs)
		if got := last[k]; got < int64(len(evs)) {
			missing += len(evs) - int(got)
			c.failf("%s %s: Kafka has up to v%d of %d", k.aggregateType, k.aggregateID, got, len(evs))
		}
	}
	c.Name += fmt.Sprintf(" (%d records, %d repeats, %d events missing)", records, repeats, missing)
	return c, nil
}

// commandsKeptTheirWord: every accepted command's events are stored, once,
// under its correlation id; no refused command left an event; every stored
// event belongs to an accepted command; every command got an answer.
func (v *verifier) commandsKeptTheirWord(context.Context) (*check, error) {
	c := &check{Name: "commands: accepted ones stored exactly once, refused ones left nothing, all answered"}
	acceptedIDs := make(map[string]bool)
	for i, cmd := range v.commands {
		o := v.outcomes[i]
		c.Checked++
		stored := v.store.byCorrelation[cmd.id]
		switch {
		case o.status == 0:
			c.failf("%s (%s %s): no definite answer: %s", cmd.id, cmd.kind, cmd.account, o.problem)
		case o.refused():
			if len(stored) > 0 {
				c.failf("%s (%s %s) was refused (%d %s) but left %d events, e.g. %s v%d", cmd.id, cmd.kind, cmd.account,
					o.status, o.problem, len(stored), stored[0].Type, stored[0].Version)
			}
		case o.accepted():
			acceptedIDs[cmd.id] = true
			for _, ae := range o.response.Events {
				e, ok := v.store.byID[ae.ID]
				if !ok || e.CorrelationID != cmd.id || e.Version != ae.Version || e.Type != ae.Type {
					c.failf("%s (%s %s): answered event %s (%s v%d) is not stored as answered", cmd.id, cmd.kind, cmd.account, ae.ID, ae.Type, ae.Version)
				}
			}
			// An account command's events are all it caused; a transfer's
			// request is followed by the process manager's steps.
			if n := len(stored); cmd.kind != "transfer" && n != len(o.response.Events) {
				c.failf("%s (%s %s): answered %d events, stored %d", cmd.id, cmd.kind, cmd.account, len(o.response.Events), n)
			}
			if cmd.kind == "transfer" && countType(stored, "TransferRequested") != 1 {
				c.failf("%s: stored %d TransferRequested events", cmd.id, countType(stored, "TransferRequested"))
			}
		default:
			c.failf("%s: unexpected final status %d", cmd.id, o.status)
		}
	}
	for corr, evs := range v.store.byCorrelation {
		if !acceptedIDs[corr] {
			c.failf("%d stored events (e.g. %s %s v%d) carry correlation %s, which no accepted command had", len(evs),
				evs[0].AggregateID, evs[0].Type, evs[0].Version, corr)
		}
	}
	return c, nil
}

// moneyIsConserved: per currency, the balances sum to what accepted
// commands put in minus what they took out; no balance was ever negative;
// each transfer moved its money at most once.
func (v *verifier) moneyIsConserved(context.Context) (*check, error) {
	c := &check{Name: "money: conserved per currency, never negative, each transfer's money moved at most once"}
	want := make(map[string]int64)
	for i, cmd := range v.commands {
		if !v.outcomes[i].accepted() {
			continue
		}
		switch cmd.kind {
		case "open", "deposit":
			want[cmd.currency] += cmd.amount
		case "withdraw":
			want[cmd.currency] -= cmd.amount
		}
	}
	got := make(map[string]int64)
	for _, id := range v.store.ids(account.AggregateType) {
		c.Checked++
		st, err := v.store.account(id, func(e log.Event, st account.State) {
			if st.Balance < 0 {
				c.failf("%s went negative (%d) at v%d %s", id, st.Balance, e.Version, e.Type)
			}
		})
		if err != nil {
			c.failf("%v", err)
			continue
		}
		got[st.Currency] += st.Balance
	}
	for _, cur := range slices.Sorted(maps.Keys(want)) {
		if got[cur] != want[cur] {
			c.failf("%s: balances sum to %d, accepted commands put in %d net", cur, got[cur], want[cur])
		}
	}
	return c, nil
}

// transfersEnded: every transfer completed or failed; a completed one took
// from its source and gave to its destination once; a failed one moved
// nothing in the end (nothing taken, or taken and refunded once).
func (v *verifier) transfersEnded(context.Context) (*check, error) {
	c := &check{Name: "transfers: every one ended; completed moved once, failed moved nothing or was refunded once"}
	withdrawn := make(map[string][]log.Event)
	deposited := make(map[string][]log.Event)
	refunded := make(map[string][]log.Event)
	for _, e := range v.store.events {
		if e.AggregateType != account.AggregateType {
			continue
		}
		var p struct{ Reason, Source string }
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return nil, fmt.Errorf("%s v%d: %w", e.AggregateID, e.Version, err)
		}
		if id, ok := strings.CutPrefix(p.Reason, "transfer:"); ok && e.Type == "FundsWithdrawn" {
			withdrawn[id] = append(withdrawn[id], e)
		}
		if id, ok := strings.CutPrefix(p.Source, "transfer:"); ok && e.Type == "FundsDeposited" {
			deposited[id] = append(deposited[id], e)
		}
		if id, ok := strings.CutPrefix(p.Source, "refund:transfer:"); ok && e.Type == "FundsDeposited" {
			refunded[id] = append(refunded[id], e)
		}
	}
	for _, id := range v.store.ids(transfer.AggregateType) {
		c.Checked++
		st, err := v.store.transfer(id)
		if err != nil {
			c.failf("%v", err)
			continue
		}
		w, d, r := withdrawn[id], deposited[id], refunded[id]
		switch {
		case st.Status != transfer.StatusCompleted && st.Status != transfer.StatusFailed:
			c.failf("transfer %s is still %q", id, st.Status)
		case len(w) > 1 || len(d) > 1 || len(r) > 1:
			c.failf("transfer %s: %d withdrawals, %d deposits, %d refunds", id, len(w), len(d), len(r))
		case len(w) == 1 && w[0].AggregateID != st.From, len(d) == 1 && d[0].AggregateID != st.To, len(r) == 1 && r[0].AggregateID != st.From:
			c.failf("transfer %s from %s to %s moved money on other accounts", id, st.From, st.To)
		case st.Status == transfer.StatusCompleted && (len(w) != 1 || len(d) != 1 || len(r) != 0):
			c.failf("transfer %s completed with %d withdrawals, %d deposits, %d refunds", id, len(w), len(d), len(r))
		case st.Status == transfer.StatusFailed && (len(d) != 0 || len(w) != len(r)):
			c.failf("transfer %s failed with %d withdrawals, %d deposits, %d refunds", id, len(w), len(d), len(r))
		}
	}
	return c, nil
}

// summariesAreTheFold: each account summary equals the fold of its events.
func (v *verifier) summariesAreTheFold(ctx context.Context) (*check, error) {
	c := &check{Name: "read model account-summary: equals the fold of the event store, owner included"}
	q := accounts.NewQueries(v.rdb, readModelRoot)
	for _, id := range v.store.ids(account.AggregateType) {
		c.Checked++
		want, err := v.store.account(id, nil)
		if err != nil {
			return nil, err
		}
		got, found, err := q.Summary(ctx, id)
		switch {
		case err != nil:
			c.failf("%s: %v", id, err)
		case !found:
			c.failf("%s: no summary", id)
		case got.Balance != want.Balance || got.Status != string(want.Status) || got.Currency != want.Currency ||
			got.Owner != want.Owner || got.Version != v.store.version(account.AggregateType, id):
			c.failf("%s: summary %+v, fold %+v at v%d", id, got, want, v.store.version(account.AggregateType, id))
		case got.Principal != v.store.owner(account.AggregateType, id):
			c.failf("%s: summary owned by %q, the stream by %q", id, got.Principal, v.store.owner(account.AggregateType, id))
		}
	}
	return c, nil
}

// historiesAreComplete: each account's history holds every event once, in
// order, with the balance after it.
func (v *verifier) historiesAreComplete(ctx context.Context) (*check, error) {
	c := &check{Name: "read model account-history: every event once, newest first, balances as folded, owner kept"}
	q := accounts.NewQueries(v.rdb, readModelRoot)
	for _, id := range v.store.ids(account.AggregateType) {
		c.Checked++
		var balances []int64
		if _, err := v.store.account(id, func(_ log.Event, st account.State) { balances = append(balances, st.Balance) }); err != nil {
			return nil, err
		}
		evs := v.store.streams[streamKey{account.AggregateType, id}]
		next := int64(len(evs)) // the version the next entry must have
		for before := int64(0); ; {
			page, err := q.History(ctx, id, before, 200)
			if err != nil {
				c.failf("%s: %v", id, err)
				break
			}
			if owner := v.store.owner(account.AggregateType, id); page.Owner != owner {
				c.failf("%s: history owned by %q, the stream by %q", id, page.Owner, owner)
				break
			}
			for _, en := range page.Entries {
				if en.Version != next || next < 1 || en.EventID != evs[next-1].ID.String() || en.BalanceAfter != balances[next-1] {
					c.failf("%s: history entry v%d (%s, balance %d) where v%d was due", id, en.Version, en.EventID, en.BalanceAfter, next)
					next = -1
					break
				}
				next--
			}
			if page.Next == 0 || next < 0 {
				break
			}
			before = page.Next
		}
		if next > 0 {
			c.failf("%s: history lacks v1..v%d", id, next)
		}
	}
	return c, nil
}

// directoryIsTheFold: the directory ranks every open account of a currency
// by its balance, and lists every account under its status.
func (v *verifier) directoryIsTheFold(ctx context.Context) (*check, error) {
	c := &check{Name: "read model account-directory: balances per currency and statuses equal the fold"}
	q := accounts.NewQueries(v.rdb, readModelRoot)
	wantBalance := make(map[string]map[string]int64) // currency → id → balance
	wantStatus := make(map[string]map[string]bool)   // status → ids
	for _, id := range v.store.ids(account.AggregateType) {
		st, err := v.store.account(id, nil)
		if err != nil {
			return nil, err
		}
		c.Checked++
		if wantStatus[string(st.Status)] == nil {
			wantStatus[string(st.Status)] = make(map[string]bool)
		}
		wantStatus[string(st.Status)][id] = true
		if st.Status != account.StatusClosed {
			if wantBalance[st.Currency] == nil {
				wantBalance[st.Currency] = make(map[string]int64)
			}
			wantBalance[st.Currency][id] = st.Balance
		}
	}
	page := func(first func(*accounts.Ranked) (accounts.DirectoryPage, error)) (map[string]int64, error) {
		got := make(map[string]int64)
		var after *accounts.Ranked
		for {
			p, err := first(after)
			if err != nil {
				return nil, err
			}
			for _, r := range p.Items {
				got[r.ID] = r.Score
			}
			if p.Next == nil {
				return got, nil
			}
			after = p.Next
		}
	}
	for cur, want := range wantBalance {
		got, err := page(func(after *accounts.Ranked) (accounts.DirectoryPage, error) {
			return q.ByBalancePage(ctx, cur, after, 500)
		})
		if err != nil {
			c.failf("%s balances: %v", cur, err)
			continue
		}
		if !maps.Equal(got, want) {
			c.failf("%s balances: directory has %d accounts, the fold %d (%s)", cur, len(got), len(want), firstDifference(got, want))
		}
	}
	for status, want := range wantStatus {
		got, err := page(func(after *accounts.Ranked) (accounts.DirectoryPage, error) {
			return q.ByStatusPage(ctx, status, after, 500)
		})
		if err != nil {
			c.failf("status %s: %v", status, err)
			continue
		}
		if len(got) != len(want) || !everyKeyIn(got, want) {
			c.failf("status %s: directory lists %d accounts, the fold %d", status, len(got), len(want))
		}
	}
	return c, nil
}

// transfersModelIsTheFold: each transfer in the transfers read model
// equals the fold of its events.
func (v *verifier) transfersModelIsTheFold(ctx context.Context) (*check, error) {
	c := &check{Name: "read model transfers: equals the fold of the event store, requester included"}
	q := transfers.NewQueries(v.rdb, readModelRoot, readmodels.NewViews(v.rdb, 0))
	for _, id := range v.store.ids(transfer.AggregateType) {
		c.Checked++
		want, err := v.store.transfer(id)
		if err != nil {
			return nil, err
		}
		got, found, err := q.Get(ctx, id)
		switch {
		case err != nil:
			c.failf("%s: %v", id, err)
		case !found:
			c.failf("%s: not in the read model", id)
		case got.Status != string(want.Status) || got.From != want.From || got.To != want.To || got.Amount != want.Amount ||
			got.Currency != want.Currency || got.Reason != want.Reason || got.Version != v.store.version(transfer.AggregateType, id):
			c.failf("%s: read model %+v, fold %+v at v%d", id, got, want, v.store.version(transfer.AggregateType, id))
		case got.Principal != v.store.owner(transfer.AggregateType, id):
			c.failf("%s: read model says %q requested it, the stream %q", id, got.Principal, v.store.owner(transfer.AggregateType, id))
		}
	}
	return c, nil
}

// correlationsAreComplete: each correlation id's trace holds exactly the
// stored events that carry it.
func (v *verifier) correlationsAreComplete(ctx context.Context) (*check, error) {
	c := &check{Name: "read model correlation: every correlation holds exactly its stored events, with who asked"}
	ids := slices.Sorted(maps.Keys(v.store.byCorrelation))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Go(func() {
			for id := range work {
				links, err := correlation.Events(ctx, v.rdb, readModelRoot, id)
				got := make(map[string]string) // event id → principal / on behalf of
				for _, l := range links {
					got[l.EventID] = l.Principal + " / " + l.OnBehalfOf
				}
				want := make(map[string]string)
				for _, e := range v.store.byCorrelation[id] {
					want[e.ID.String()] = e.Principal + " / " + e.OnBehalfOf
				}
				mu.Lock()
				c.Checked++
				switch {
				case err != nil:
					c.failf("%s: %v", id, err)
				case len(links) != len(want) || len(got) != len(want):
					c.failf("%s: the trace holds %d events, the store %d", id, len(links), len(want))
				case !maps.Equal(got, want):
					c.failf("%s: the trace's events and principals (by / on behalf of) %v, the store's %v", id, got, want)
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return c, nil
}

func firstDifference(got, want map[string]int64) string {
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[id]; !ok || g != want[id] {
			return fmt.Sprintf("e.g. %s: directory %d (listed %v), fold %d", id, g, ok, want[id])
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			return fmt.Sprintf("e.g. %s listed but not due", id)
		}
	}
	return "same"
}

func everyKeyIn(got map[string]int64, want map[string]bool) bool {
	for id := range got {
		if !want[id] {
			return false
		}
	}
	return true
}

func countType(evs []log.Event, eventType string) int {
	n := 0
	for _, e := range evs {
		if e.Type == eventType {
			n++
		}
	}
	return n
}
