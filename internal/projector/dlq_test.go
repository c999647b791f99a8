package projector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/schemas"
)

const deadLetteredMetric = "tributary_projection_dead_lettered_total"

// produceRecords produces records and returns them, their partitions and
// offsets filled in.
func (e *env) produceRecords(cl *kgo.Client, recs ...*kgo.Record) []*kgo.Record {
	e.t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatalf("produce: %v", err)
	}
	return recs
}

// deadLetterRecords reads the dead-letter topic of projection name as it is
// on Kafka.
func (e *env) deadLetterRecords(name string) []*kgo.Record {
	e.t.Helper()
	topic := projector.DeadLetterTopic(e.prefix, name)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addrs...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		e.t.Fatalf("dead-letter topic %s: %v", topic, end.Err)
	}
	var recs []*kgo.Record
	for int64(len(recs)) < end.Offset {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("read %s: %d of %d records: %v", topic, len(recs), end.Offset, ctx.Err())
		}
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// wantDeadLetter checks a record of the dead-letter topic against the
// record it parks: same key, value and headers, plus the reason and the
// original coordinates.
func wantDeadLetter(t testing.TB, dl, orig *kgo.Record, attempts int, reasonHas ...string) {
	t.Helper()
	where := fmt.Sprintf("dead letter of %s/%d@%d", orig.Topic, orig.Partition, orig.Offset)
	if !bytes.Equal(dl.Key, orig.Key) || !bytes.Equal(dl.Value, orig.Value) {
		t.Fatalf("%s: key %q value %q, want %q %q", where, dl.Key, dl.Value, orig.Key, orig.Value)
	}
	for _, h := range orig.Headers {
		if got := header(dl, h.Key); got != string(h.Value) {
			t.Fatalf("%s: header %s = %q, want %q", where, h.Key, got, h.Value)
		}
	}
	want := map[string]string{
		projector.HeaderDLQTopic:     orig.Topic,
		projector.HeaderDLQPartition: strconv.Itoa(int(orig.Partition)),
		projector.HeaderDLQOffset:    strconv.FormatInt(orig.Offset, 10),
		projector.HeaderDLQAttempts:  strconv.Itoa(attempts),
	}
	for k, v := range want {
		if got := header(dl, k); got != v {
			t.Fatalf("%s: header %s = %q, want %q", where, k, got, v)
		}
	}
	reason := header(dl, projector.HeaderDLQReason)
	for _, s := range reasonHas {
		if !strings.Contains(reason, s) {
			t.Fatalf("%s: reason %q does not mention %q", where, reason, s)
		}
	}
}

// wantParked checks that DeadLetters lists exactly the records of the
// dead-letter topic, as their originals.
func wantParked(t testing.TB, parked []projector.Parked, dls, origs []*kgo.Record) {
	t.Helper()
	if len(parked) != len(dls) {
		t.Fatalf("DeadLetters lists %d events, the topic holds %d", len(parked), len(dls))
	}
	for i, pk := range parked {
		o := pk.Original
		if pk.DLQOffset != dls[i].Offset || pk.Reason != header(dls[i], projector.HeaderDLQReason) ||
			strconv.Itoa(pk.Attempts) != header(dls[i], projector.HeaderDLQAttempts) ||
			o.Topic != origs[i].Topic || o.Partition != origs[i].Partition || o.Offset != origs[i].Offset ||
			!bytes.Equal(o.Key, origs[i].Key) || !bytes.Equal(o.Value, origs[i].Value) ||
			!slices.EqualFunc(o.Headers, origs[i].Headers, func(a, b kgo.RecordHeader) bool {
				return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
			}) {
			t.Fatalf("DeadLetters[%d] = %+v (original %+v), want the record at %s/%d@%d", i, pk, o, origs[i].Topic, origs[i].Partition, origs[i].Offset)
		}
		if time.Since(pk.ParkedAt) > time.Minute || pk.ParkedAt.Before(origs[i].Timestamp) {
			t.Fatalf("DeadLetters[%d] parked at %v, the event was produced at %v", i, pk.ParkedAt, origs[i].Timestamp)
		}
	}
}

func wantReplayed(t testing.TB, got []projector.Replayed, want ...projector.ReplayOutcome) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replayed %d events, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Outcome != want[i] {
			t.Fatalf("replay of event %d (%s v%s): %q (%s), want %q", i, r.Parked.Type(),
				r.Parked.Header(kafka.HeaderStreamVersion), r.Outcome, r.Detail, want[i])
		}
	}
}

// without returns h without the accounts ids.
func without(h *history, ids ...string) *history {
	out := &history{byID: make(map[string][]log.Event)}
	for _, ev := range h.events {
		if !slices.Contains(ids, ev.AggregateID) {
			out.events = append(out.events, ev)
			out.byID[ev.AggregateID] = append(out.byID[ev.AggregateID], ev)
		}
	}
	return out
}

// only returns a history of one account's first n events.
func only(h *history, id string, n int) *history {
	evs := h.byID[id][:n]
	return &history{events: evs, byID: map[string][]log.Event{id: evs}}
}

// poison is a history produced with one account's event that the
// projection cannot apply, followed by later events of that account and of
// others on its partition.
type poison struct {
	e       *env
	h       *history
	id      string                    // the account whose event is poisoned
	at      int                       // the index of the poisoned event in h.byID[id]
	byEvent map[uuid.UUID]*kgo.Record // as produced
}

// producePoisoned picks an account with a deposit at version 3 or later, at
// least two events after it, and events of other accounts after it on the
// same partition; it produces h with that deposit passed through spoil.
func (e *env) producePoisoned(h *history, spoil func(log.Event) log.Event) *poison {
	e.t.Helper()
	pos := &poison{e: e, h: h, byEvent: make(map[uuid.UUID]*kgo.Record)}
search:
	for _, id := range slices.Sorted(maps.Keys(h.byID)) {
		evs := h.byID[id]
		for i := 2; i < len(evs)-2; i++ {
			if evs[i].Type != "FundsDeposited" {
				continue
			}
			p := readmodels.PartitionOf(id, partitions)
			others := 0
			for _, ev := range h.events[evs[i].GlobalPosition:] {
				if ev.AggregateID != id && readmodels.PartitionOf(ev.AggregateID, partitions) == p {
					others++
				}
			}
			if others >= 5 {
				pos.id, pos.at = id, i
				break search
			}
		}
	}
	if pos.id == "" {
		e.t.Fatal("no account of the history fits the poison scenario")
	}
	poisoned := h.byID[pos.id][pos.at].ID
	recs := make([]*kgo.Record, len(h.events))
	for i, ev := range h.events {
		if ev.ID == poisoned {
			ev = spoil(ev)
		}
		recs[i] = kafka.NewRecord(ev, e.cfg.Topics.For(ev.AggregateType), "test")
	}
	e.produceRecords(e.client, recs...)
	for i, ev := range h.events {
		pos.byEvent[ev.ID] = recs[i]
	}
	return pos
}

// parked returns the records of the poisoned account from the poisoned
// event on: what must be parked, in order.
func (p *poison) parked() []*kgo.Record {
	var recs []*kgo.Record
	for _, ev := range p.h.byID[p.id][p.at:] {
		recs = append(recs, p.byEvent[ev.ID])
	}
	return recs
}

// waitParked waits until the poisoned event and the account's later events
// are parked and every other account is applied, then checks the
// dead-letter topic, the metrics and DeadLetters. It returns the parked
// events.
func (p *poison) waitParked(pr *projector.Projector, reg *prometheus.Registry, reasonHas ...string) []projector.Parked {
	e, t := p.e, p.e.t
	t.Helper()
	ctx := context.Background()
	want := p.parked()
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "the later events of other accounts applied", e.caughtUp(q, without(p.h, p.id)))
	waitFor(t, 30*time.Second, "the poisoned events counted as dead-lettered", func() (bool, error) {
		return sumCounter(t, reg, deadLetteredMetric, "projection", accounts.SummaryName) >= float64(len(want)), nil
	})
	e.checkSummaries(q, without(p.h, p.id))
	e.checkSummaries(q, only(p.h, p.id, p.at)) // up to the event before the poison

	dls := e.deadLetterRecords(accounts.SummaryName)
	if len(dls) != len(want) {
		t.Fatalf("the dead-letter topic holds %d records, want %d: the poisoned event and the %d after it", len(dls), len(want), len(want)-1)
	}
	stream := readmodels.StreamKey(account.AggregateType, p.id)
	attempts := e.cfg.Retries + 1
	wantDeadLetter(t, dls[0], want[0], attempts, reasonHas...)
	for i := 1; i < len(dls); i++ {
		// Behind a parked event: a version gap, parked at once when the
		// worker knows the earlier one is parked.
		n, _ := strconv.Atoi(header(dls[i], projector.HeaderDLQAttempts))
		if n < 1 || n > attempts {
			t.Fatalf("dead letter %d: %d attempts, want 1 to %d", i, n, attempts)
		}
		wantDeadLetter(t, dls[i], want[i], n, "version gap",
			fmt.Sprintf("holds version %d of %s, the event is version %d", p.at, stream, p.at+1+i))
	}
	if reason := header(dls[len(dls)-1], projector.HeaderDLQReason); !strings.Contains(reason, "parked") {
		t.Fatalf("the last event behind the poisoned one: reason %q does not say that an earlier one is parked", reason)
	}
	wantSeries(t, reg, deadLetteredMetric, []string{"projection", "topic"}, map[string]float64{
		accounts.SummaryName + "|" + e.cfg.Topics.For(account.AggregateType): float64(len(want)),
	})
	if got := sumCounter(t, reg, eventsMetric, "outcome", "dead_lettered"); got != float64(len(want)) {
		t.Fatalf("%s{outcome=dead_lettered} = %v, want %d", eventsMetric, got, len(want))
	}
	parked, err := pr.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantParked(t, parked, dls, want)
	t.Logf("%d events of %s parked; the poisoned one after %d attempts: %s; the next after %d: %s",
		len(parked), p.id, parked[0].Attempts, parked[0].Reason, parked[1].Attempts, parked[1].Reason)
	return parked
}

// schemasWithFundsDepositedV3 are the event schemas plus a FundsDeposited v3
// shaped like v2: what a projector that knows v3 is deployed with.
func schemasWithFundsDepositedV3(t testing.TB) *log.Schemas {
	t.Helper()
	fsys := fstest.MapFS{}
	err := fs.WalkDir(schemas.Events, "events", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(schemas.Events, p)
		fsys[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	v2, ok := fsys["events/account/FundsDeposited.v2.json"]
	if !ok {
		t.Fatal("no FundsDeposited v2 schema")
	}
	fsys["events/account/FundsDeposited.v3.json"] = &fstest.MapFile{Data: bytes.ReplaceAll(v2.Data, []byte("v2"), []byte("v3"))}
	sch, err := log.LoadSchemas(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if !sch.Has(account.AggregateType, "FundsDeposited", 3) {
		t.Fatal("FundsDeposited v3 did not load")
	}
	return sch
}

// next produces the account's next event: a deposit of amount.
func (p *poison) next(amount int64) {
	p.e.t.Helper()
	evs := p.h.byID[p.id]
	payload, _ := json.Marshal(account.FundsDeposited{Amount: amount, Currency: "EUR", Source: "after replay"})
	last := p.h.events[len(p.h.events)-1]
	ev := log.Event{
		ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: p.id,
		Version: int64(len(evs) + 1), Type: "FundsDeposited", SchemaVersion: 2, Payload: payload,
		RecordedAt: last.RecordedAt.Add(time.Millisecond), GlobalPosition: last.GlobalPosition + 1,
		Metadata: log.Metadata{CorrelationID: "after-replay", CausationID: uuid.NewString(), Principal: "test"},
	}
	p.h.events = append(p.h.events, ev)
	p.h.byID[p.id] = append(evs, ev)
	p.e.produce([]log.Event{ev})
}

func replayOutcomes(n int, first, rest projector.ReplayOutcome) []projector.ReplayOutcome {
	out := []projector.ReplayOutcome{first}
	for range n - 1 {
		out = append(out, rest)
	}
	return out
}

// Acceptance: a poison event — here a schema version the projector does
// not know — is parked on the dead-letter topic with its reason after the
// retries; the account's later events are parked behind it, the partition
// moves on, the metrics count them, DeadLetters lists them, and a replay by
// a projector that knows the version applies them once, in order.
func TestDeadLetterUnknownSchemaVersionParkedThenReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := generate(30, 600, 41)
	reg := prometheus.NewRegistry()
	pr := e.projector(accounts.SummaryProjection{}, reg)
	e.run(pr)
	p := e.producePoisoned(h, func(ev log.Event) log.Event { ev.SchemaVersion = 3; return ev })
	parked := p.waitParked(pr, reg, "unknown event type or schema version", "FundsDeposited v3")
	ctx := context.Background()
	q := accounts.NewQueries(e.rdb, e.prefix)

	// The running projector cannot apply it yet: nothing changes.
	res, err := pr.Replay(ctx, parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, replayOutcomes(len(parked), projector.ReplayFailed, projector.ReplayWaiting)...)
	if !strings.Contains(res[0].Detail, "FundsDeposited v3") {
		t.Fatalf("failed replay: detail %q does not name the unknown version", res[0].Detail)
	}
	e.checkSummaries(q, only(h, p.id, p.at))

	// A projector that knows v3 replays them: once, in order.
	fixedReg := prometheus.NewRegistry()
	fixed := projector.New(accounts.SummaryProjection{}, e.cfg, projector.Deps{
		Redis: e.rdb, Schemas: schemasWithFundsDepositedV3(t), Upcasters: registered.Upcasters(), Metrics: projector.NewMetrics(fixedReg),
	})
	res, err = fixed.Replay(ctx, parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, replayOutcomes(len(parked), projector.ReplayApplied, projector.ReplayApplied)...)
	e.checkSummaries(q, h)
	res, err = fixed.Replay(ctx, parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, replayOutcomes(len(parked), projector.ReplayDuplicate, projector.ReplayDuplicate)...)
	e.checkSummaries(q, h)
	if got := sumCounter(t, fixedReg, eventsMetric, "outcome", "replayed"); got != float64(len(parked)) {
		t.Fatalf("%s{outcome=replayed} = %v, want %d", eventsMetric, got, len(parked))
	}
	if got := len(e.deadLetterRecords(accounts.SummaryName)); got != len(parked) {
		t.Fatalf("the dead-letter topic holds %d records after the replay, want %d", got, len(parked))
	}

	// The running projector applies the account's next event.
	p.next(1234)
	waitFor(t, 30*time.Second, "the event after the replay applied", e.caughtUp(q, h))
	e.checkSummaries(q, h)
}

// failingSummary is the summary projection with a bug in its handler: it
// cannot apply one event until the bug is fixed.
type failingSummary struct {
	accounts.SummaryProjection
	event uuid.UUID
	fixed *atomic.Bool
}

func (p failingSummary) Args(e log.Event) ([]string, error) {
	if e.ID == p.event && !p.fixed.Load() {
		return nil, errors.New("summary handler bug: overflow")
	}
	return p.SummaryProjection.Args(e)
}

// Acceptance: an event that a projection's handler fails on is parked with
// the handler's error, and replayed once the handler is fixed; replayed out
// of order, the later events wait for it.
func TestDeadLetterFailingHandlerParkedThenReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := generate(30, 600, 43)
	fixed := new(atomic.Bool)
	proj := failingSummary{fixed: fixed}
	// The history is on Kafka before the projector starts.
	p := e.producePoisoned(h, func(ev log.Event) log.Event { proj.event = ev.ID; return ev })
	reg := prometheus.NewRegistry()
	pr := e.projector(proj, reg)
	e.run(pr)
	parked := p.waitParked(pr, reg, "account-summary cannot apply FundsDeposited", "summary handler bug: overflow")
	ctx := context.Background()
	q := accounts.NewQueries(e.rdb, e.prefix)

	fixed.Store(true)
	reversed := slices.Clone(parked)
	slices.Reverse(reversed)
	res, err := pr.Replay(ctx, reversed)
	if err != nil {
		t.Fatal(err)
	}
	want := replayOutcomes(len(parked), projector.ReplayApplied, projector.ReplayWaiting)
	slices.Reverse(want)
	wantReplayed(t, res, want...)
	e.checkSummaries(q, only(h, p.id, p.at+1))

	res, err = pr.Replay(ctx, parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, replayOutcomes(len(parked), projector.ReplayDuplicate, projector.ReplayApplied)...)
	e.checkSummaries(q, h)
	res, err = pr.Replay(ctx, parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, replayOutcomes(len(parked), projector.ReplayDuplicate, projector.ReplayDuplicate)...)
	e.checkSummaries(q, h)

	p.next(99)
	waitFor(t, 30*time.Second, "the event after the replay applied", e.caughtUp(q, h))
	e.checkSummaries(q, h)
}

// firstEvents is the history of h's first n events.
func firstEvents(h *history, n int) *history {
	out := &history{events: h.events[:n], byID: make(map[string][]log.Event)}
	for _, ev := range out.events {
		out.byID[ev.AggregateID] = append(out.byID[ev.AggregateID], ev)
	}
	return out
}

// newEvent is event number pos of a history, version ver of account id.
func newEvent(id string, ver, pos int64, ev account.Event) log.Event {
	payload, _ := json.Marshal(ev)
	return log.Event{
		ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: id, Version: ver,
		Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload,
		RecordedAt:     time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).Add(time.Duration(pos) * time.Millisecond),
		GlobalPosition: pos, Metadata: log.Metadata{CorrelationID: "c-" + id, CausationID: uuid.NewString(), Principal: "test"},
	}
}

// onPartitionLater tells whether events hold an event of an account on partition.
func onPartitionLater(events []log.Event, partition int32) bool {
	return slices.ContainsFunc(events, func(ev log.Event) bool {
		return readmodels.PartitionOf(ev.AggregateID, partitions) == partition
	})
}

// byCoordinates indexes dead letters by the coordinates of their originals.
func byCoordinates(dls []*kgo.Record) map[string]*kgo.Record {
	m := make(map[string]*kgo.Record)
	for _, dl := range dls {
		m[header(dl, projector.HeaderDLQPartition)+"@"+header(dl, projector.HeaderDLQOffset)] = dl
	}
	return m
}

func coordinates(rec *kgo.Record) string {
	return strconv.Itoa(int(rec.Partition)) + "@" + strconv.FormatInt(rec.Offset, 10)
}

// Acceptance: records that are not events the projection can read — no
// CloudEvents headers at all, a payload that is not JSON, an event type
// without a schema — are parked with a reason that names the problem, and
// their partitions move on. Replaying them fails and changes nothing.
func TestDeadLetterMalformedRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := generate(20, 300, 45)
	reg := prometheus.NewRegistry()
	pr := e.projector(accounts.SummaryProjection{}, reg)
	e.run(pr)
	topic := e.cfg.Topics.For(account.AggregateType)
	e.produce(h.events[:150])

	opened := newEvent("acc-bad-json", 1, 1000, account.AccountOpened{Owner: "o", Currency: "EUR"})
	notJSON := kafka.NewRecord(opened, topic, "test")
	notJSON.Value = []byte(`{"owner": "o", "currency":`)
	frozen := newEvent("acc-frozen", 1, 1001, account.AccountOpened{Owner: "o", Currency: "EUR"})
	frozen.Type, frozen.Payload = "FundsFrozen", json.RawMessage(`{"until":"2027-01-01"}`)
	bad := e.produceRecords(e.client,
		&kgo.Record{Topic: topic, Key: []byte("junk-1"), Value: []byte("not json")},
		notJSON,
		kafka.NewRecord(frozen, topic, "test"),
	)
	reasons := [][]string{
		{"not a Tributary event", "missing header " + kafka.HeaderType, "missing header " + kafka.HeaderSpecVersion},
		{"not JSON", "AccountOpened"},
		{"unknown event type or schema version", "FundsFrozen"},
	}
	e.produce(h.events[150:])
	for _, rec := range bad {
		if !onPartitionLater(h.events[150:], rec.Partition) {
			t.Fatalf("no event follows the malformed record on partition %d: too weak a test", rec.Partition)
		}
	}

	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "every account applied", e.caughtUp(q, h))
	waitFor(t, 30*time.Second, "the malformed records counted as dead-lettered", func() (bool, error) {
		return sumCounter(t, reg, deadLetteredMetric, "projection", accounts.SummaryName) >= float64(len(bad)), nil
	})
	e.checkSummaries(q, h)
	for _, id := range []string{"acc-bad-json", "acc-frozen", "junk-1"} {
		if _, found, err := q.Summary(context.Background(), id); err != nil || found {
			t.Fatalf("summary of %s: found=%v err=%v, want none", id, found, err)
		}
	}

	dls := e.deadLetterRecords(accounts.SummaryName)
	if len(dls) != len(bad) {
		t.Fatalf("the dead-letter topic holds %d records, want %d", len(dls), len(bad))
	}
	at := byCoordinates(dls)
	for i, rec := range bad {
		dl, ok := at[coordinates(rec)]
		if !ok {
			t.Fatalf("malformed record %d (%s) is not on the dead-letter topic", i, coordinates(rec))
		}
		wantDeadLetter(t, dl, rec, e.cfg.Retries+1, reasons[i]...)
	}
	// The partitions park concurrently: the topic's order is theirs.
	origs := make([]*kgo.Record, len(dls))
	for i, dl := range dls {
		origs[i] = bad[slices.IndexFunc(bad, func(r *kgo.Record) bool { return at[coordinates(r)] == dl })]
	}
	parked, err := pr.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantParked(t, parked, dls, origs)

	want := map[string]float64{
		accounts.SummaryName + "|unknown|dead_lettered":       1,
		accounts.SummaryName + "|AccountOpened|dead_lettered": 1,
		accounts.SummaryName + "|FundsFrozen|dead_lettered":   1,
	}
	for _, ev := range h.events {
		want[accounts.SummaryName+"|"+ev.Type+"|applied"]++
	}
	wantSeries(t, reg, eventsMetric, []string{"projection", "type", "outcome"}, want)
	wantSeries(t, reg, deadLetteredMetric, []string{"projection", "topic"}, map[string]float64{accounts.SummaryName + "|" + topic: 3})

	res, err := pr.Replay(context.Background(), parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, projector.ReplayFailed, projector.ReplayFailed, projector.ReplayFailed)
	for _, r := range res {
		if r.Detail != r.Parked.Reason {
			t.Fatalf("replay of a malformed record: detail %q, want the reason it was parked for, %q", r.Detail, r.Parked.Reason)
		}
	}
	e.checkSummaries(q, h)
}

// Acceptance: a record on another partition than the one Kafka's default
// partitioner gives its key (a producer that does not partition by
// murmur2) is parked with a reason naming murmur2, and its partition
// moves on.
func TestDeadLetterRecordOnTheWrongPartition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := generate(20, 300, 47)
	reg := prometheus.NewRegistry()
	pr := e.projector(accounts.SummaryProjection{}, reg)
	e.run(pr)
	topic := e.cfg.Topics.For(account.AggregateType)
	e.produce(h.events[:150])

	const id = "acc-misplaced"
	right := testenv.KafkaPartition([]byte(id), partitions)
	wrong := (right + 3) % partitions
	manual := testenv.KafkaClient(t, e.addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	recs := []*kgo.Record{
		kafka.NewRecord(newEvent(id, 1, 1000, account.AccountOpened{Owner: "o", Currency: "EUR"}), topic, "test"),
		kafka.NewRecord(newEvent(id, 2, 1001, account.AccountActivated{}), topic, "test"),
	}
	for _, r := range recs {
		r.Partition = wrong
	}
	e.produceRecords(manual, recs...)
	e.produce(h.events[150:])
	if !onPartitionLater(h.events[150:], wrong) {
		t.Fatalf("no event follows the misplaced records on partition %d: too weak a test", wrong)
	}

	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "every account applied", e.caughtUp(q, h))
	waitFor(t, 30*time.Second, "the misplaced records counted as dead-lettered", func() (bool, error) {
		return sumCounter(t, reg, deadLetteredMetric, "projection", accounts.SummaryName) >= float64(len(recs)), nil
	})
	e.checkSummaries(q, h)
	if _, found, err := q.Summary(context.Background(), id); err != nil || found {
		t.Fatalf("summary of the misplaced account: found=%v err=%v, want none", found, err)
	}
	dls := e.deadLetterRecords(accounts.SummaryName)
	if len(dls) != len(recs) {
		t.Fatalf("the dead-letter topic holds %d records, want %d", len(dls), len(recs))
	}
	reason := fmt.Sprintf("aggregate %s is on partition %d but murmur2 puts it on %d", id, wrong, right)
	for i := range dls {
		wantDeadLetter(t, dls[i], recs[i], e.cfg.Retries+1, reason)
	}
	wantSeries(t, reg, deadLetteredMetric, []string{"projection", "topic"}, map[string]float64{accounts.SummaryName + "|" + topic: 2})
	parked, err := pr.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantParked(t, parked, dls, recs)
	res, err := pr.Replay(context.Background(), parked)
	if err != nil {
		t.Fatal(err)
	}
	wantReplayed(t, res, projector.ReplayFailed, projector.ReplayFailed)
	if _, found, err := q.Summary(context.Background(), id); err != nil || found {
		t.Fatalf("summary of the misplaced account after a replay: found=%v err=%v, want none", found, err)
	}
}

// Acceptance: while one partition retries a poison event, the other
// partitions keep going: their accounts catch up before the event is
// parked; then its partition moves on.
func TestDeadLetterOtherPartitionsKeepGoingWhileOneRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Backoffs long enough (5 s + 10 s) that the other partitions catch up
	// well within them also on a loaded machine under -race.
	e.cfg.Retries = 2
	e.cfg.RetryBackoff = 5 * time.Second
	retrying := 0 * time.Millisecond
	for attempt := range e.cfg.Retries {
		retrying += e.cfg.RetryBackoff << attempt
	}
	h := generate(40, 800, 49)
	reg := prometheus.NewRegistry()
	pr := e.projector(accounts.SummaryProjection{}, reg)
	e.run(pr)
	q := accounts.NewQueries(e.rdb, e.prefix)
	e.produce(h.events[:400])
	waitFor(t, 60*time.Second, "the first half applied", e.caughtUp(q, firstEvents(h, 400)))

	const id = "acc-poison"
	ev := newEvent(id, 1, 5000, account.AccountOpened{Owner: "o", Currency: "EUR"})
	ev.SchemaVersion = 7
	stuck := readmodels.PartitionOf(id, partitions)
	if !onPartitionLater(h.events[400:], stuck) {
		t.Fatalf("no event follows the poison event on partition %d: too weak a test", stuck)
	}
	rec := e.produceRecords(e.client, kafka.NewRecord(ev, e.cfg.Topics.For(account.AggregateType), "test"))[0]
	e.produce(h.events[400:])

	others := &history{byID: make(map[string][]log.Event)}
	for aid, evs := range h.byID {
		if readmodels.PartitionOf(aid, partitions) != stuck {
			others.byID[aid] = evs
		}
	}
	waitFor(t, retrying, "the other partitions caught up while one retries", e.caughtUp(q, others))
	if n := sumCounter(t, reg, deadLetteredMetric, "projection", accounts.SummaryName); n != 0 {
		t.Fatalf("the poison event was parked (%v) before the other partitions caught up: too slow to tell", n)
	}
	behind := false
	for aid, evs := range h.byID {
		s, _, err := q.Summary(context.Background(), aid)
		if err != nil {
			t.Fatal(err)
		}
		if readmodels.PartitionOf(aid, partitions) == stuck && s.Version < int64(len(evs)) {
			behind = true
		}
	}
	if !behind {
		t.Fatalf("partition %d is not held up by its poison event", stuck)
	}
	if dls := e.deadLetterRecords(accounts.SummaryName); len(dls) != 0 {
		t.Fatalf("the dead-letter topic holds %d records while the event is retried", len(dls))
	}

	waitFor(t, 60*time.Second, "the stuck partition moved on", e.caughtUp(q, h))
	waitFor(t, 30*time.Second, "the poison event counted as dead-lettered", func() (bool, error) {
		return sumCounter(t, reg, deadLetteredMetric, "projection", accounts.SummaryName) >= 1, nil
	})
	e.checkSummaries(q, h)
	dls := e.deadLetterRecords(accounts.SummaryName)
	if len(dls) != 1 {
		t.Fatalf("the dead-letter topic holds %d records, want 1", len(dls))
	}
	wantDeadLetter(t, dls[0], rec, e.cfg.Retries+1, "unknown event type or schema version", "AccountOpened v7")
	parked, err := pr.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantParked(t, parked, dls, []*kgo.Record{rec})
	if waited := parked[0].ParkedAt.Sub(rec.Timestamp); waited < retrying {
		t.Fatalf("parked %v after it was produced, before its %d retries (%v of backoff)", waited, e.cfg.Retries, retrying)
	}
}

// registered is this build's registry of domains, made once for the
// package's tests (each make costs the schemas' and documents' assembly).
var registered = domains.Must()
