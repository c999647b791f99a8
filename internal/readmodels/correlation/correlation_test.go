package correlation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	"github.com/tributary-es/tributary/internal/testenv"
)

const partitions = 8

// project applies events to generation 1 of p as a projector does — per
// topic and Kafka partition of the aggregate, in batches, each in the one
// atomic step with its position — and returns the outcomes per event id.
// epoch "" replays them beside the owner.
func project(t *testing.T, rdb redis.UniversalClient, root string, p readmodels.Projection, events []log.Event, epoch string) map[uuid.UUID]readmodels.Outcome {
	t.Helper()
	ctx := context.Background()
	layout := readmodels.NewLayout(root, p.Name())
	if _, err := readmodels.NewGenerations(rdb, layout).Ensure(ctx, partitions); err != nil {
		t.Fatal(err)
	}
	steps := readmodels.NewSteps(rdb, layout, p)
	type topicPartition struct {
		topic     string
		partition int32
	}
	var order []topicPartition
	queues := make(map[topicPartition][]log.Event)
	for _, e := range events {
		tp := topicPartition{root + "." + e.AggregateType + ".events", readmodels.PartitionOf(e.AggregateID, partitions)}
		if _, ok := queues[tp]; !ok {
			order = append(order, tp)
		}
		queues[tp] = append(queues[tp], e)
	}
	outcomes := make(map[uuid.UUID]readmodels.Outcome)
	for _, tp := range order {
		evs := queues[tp]
		if epoch != "" {
			if _, err := steps.Claim(ctx, 1, tp.topic, tp.partition, epoch, false); err != nil {
				t.Fatal(err)
			}
		}
		for start := 0; start < len(evs); start += 13 {
			b := readmodels.Batch{Generation: 1, Topic: tp.topic, Partition: tp.partition, Epoch: epoch}
			batch := evs[start:min(start+13, len(evs))]
			for i, e := range batch {
				args, err := p.Args(e)
				if err != nil {
					t.Fatal(err)
				}
				b.Items = append(b.Items, readmodels.Item{
					Offset: int64(start + i), Stream: readmodels.StreamKey(e.AggregateType, e.AggregateID),
					ID: e.AggregateID, Version: e.Version, Args: args,
				})
			}
			res, err := steps.Apply(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if res.Gap != nil || len(res.Outcomes) != len(batch) {
				t.Fatalf("batch at %s/%d@%d: outcomes %q gap %+v", tp.topic, tp.partition, start, string(res.Outcomes), res.Gap)
			}
			for i, e := range batch {
				outcomes[e.ID] = res.Outcomes[i]
			}
		}
	}
	return outcomes
}

func event(aggregateType, id string, version int64, typ string, pos int64, corr, cause string) log.Event {
	return log.Event{
		ID: uuid.Must(uuid.NewV7()), AggregateType: aggregateType, AggregateID: id, Version: version,
		Type: typ, SchemaVersion: 1, Payload: json.RawMessage(`{}`),
		RecordedAt:     time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(time.Duration(pos) * time.Millisecond),
		GlobalPosition: pos,
		Metadata:       log.Metadata{CorrelationID: corr, CausationID: cause, Principal: "test"},
	}
}

func link(e log.Event) correlation.Link {
	return correlation.Link{
		EventID: e.ID.String(), CausationID: e.CausationID, CorrelationID: e.CorrelationID,
		AggregateType: e.AggregateType, AggregateID: e.AggregateID, Version: e.Version, Type: e.Type,
		GlobalPosition: e.GlobalPosition, RecordedAt: e.RecordedAt, Principal: e.Principal, OnBehalfOf: e.OnBehalfOf,
	}
}

// Events returns exactly the events of a correlation id, across aggregate
// types and partitions, in global order, with their causation ids.
func TestEventsOfACorrelation(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	h := testenv.GenerateAccounts(40, 600, 21)
	events := h.Events

	// A transfer between two accounts on different partitions: the
	// transfer's events and the two accounts' share one correlation id,
	// each caused by the one before. The transfer's id is also an account
	// id: versions are kept per aggregate type.
	var from, to string
	for id := range h.ByID {
		switch {
		case from == "":
			from = id
		case to == "" && readmodels.PartitionOf(id, partitions) != readmodels.PartitionOf(from, partitions):
			to = id
		}
	}
	pos := int64(len(events))
	next := func() int64 { pos++; return pos }
	requested := event("transfer", to, 1, "TransferRequested", next(), "req-transfer", "cmd-"+uuid.NewString())
	unrelated := event("account", from, int64(len(h.ByID[from])+1), "FundsDeposited", next(), "", "cmd-other")
	withdrawn := event("account", from, int64(len(h.ByID[from])+2), "FundsWithdrawn", next(), "req-transfer", requested.ID.String())
	deposited := event("account", to, int64(len(h.ByID[to])+1), "FundsDeposited", next(), "req-transfer", requested.ID.String())
	completed := event("transfer", to, 2, "TransferCompleted", next(), "req-transfer", deposited.ID.String())
	// Delivered as Kafka would: per partition in order, the transfer topic
	// after the account topic, so not in global order overall.
	events = append(events, requested, unrelated, completed, withdrawn, deposited)

	proj := correlation.Projection{Types: []string{"account", "transfer"}}
	if proj.Name() != correlation.Name || strings.Join(proj.AggregateTypes(), ",") != "account,transfer" {
		t.Fatalf("projection %s of %v", proj.Name(), proj.AggregateTypes())
	}
	if _, err := correlation.Events(ctx, rdb, root, "req-transfer"); !errors.Is(err, readmodels.ErrNotReady) {
		t.Fatalf("events before the index is built: err = %v, want ErrNotReady", err)
	}
	for id, o := range project(t, rdb, root, proj, events, "owner") {
		if o != readmodels.Applied {
			t.Fatalf("event %s: outcome %c, want applied", id, o)
		}
	}
	if ok, err := readmodels.NewGenerations(rdb, readmodels.NewLayout(root, correlation.Name)).Promote(ctx, 1); err != nil || !ok {
		t.Fatalf("promote: %v %v", ok, err)
	}

	byCorrelation := make(map[string][]log.Event)
	for _, e := range h.Events {
		byCorrelation[e.CorrelationID] = append(byCorrelation[e.CorrelationID], e)
	}
	byCorrelation["req-transfer"] = []log.Event{requested, withdrawn, deposited, completed}
	check := func() {
		t.Helper()
		for corr, evs := range byCorrelation {
			got, err := correlation.Events(ctx, rdb, root, corr)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(evs) {
				t.Fatalf("correlation %s has %d events, want %d: %+v", corr, len(got), len(evs), got)
			}
			for i, l := range got {
				want := link(evs[i])
				if !l.RecordedAt.Equal(want.RecordedAt) {
					t.Fatalf("correlation %s event %d recorded at %v, want %v", corr, i, l.RecordedAt, want.RecordedAt)
				}
				l.RecordedAt, want.RecordedAt = time.Time{}, time.Time{}
				if l != want {
					t.Fatalf("correlation %s event %d:\n got %+v\nwant %+v", corr, i, l, want)
				}
			}
		}
		if got, err := correlation.Events(ctx, rdb, root, "no-such-request"); err != nil || len(got) != 0 {
			t.Fatalf("an unknown correlation id gives %v, %v", got, err)
		}
		// First: the earliest events in global order, merged across
		// partitions (req-transfer's second event is on another partition
		// than its first and third), and the count of all.
		for corr, evs := range byCorrelation {
			for _, limit := range []int{0, 1, 2, len(evs) - 1, len(evs), len(evs) + 1} {
				if limit < 0 {
					continue
				}
				got, total, err := correlation.First(ctx, rdb, root, corr, limit)
				if err != nil || total != int64(len(evs)) || len(got) != min(limit, len(evs)) {
					t.Fatalf("First(%s, %d): %d events of %d, err %v; want %d of %d", corr, limit, len(got), total, err, min(limit, len(evs)), len(evs))
				}
				for i, l := range got {
					if l.EventID != evs[i].ID.String() {
						t.Fatalf("First(%s, %d): event %d is %s at %d, want %s at %d", corr, limit, i, l.EventID, l.GlobalPosition, evs[i].ID, evs[i].GlobalPosition)
					}
				}
			}
		}
		if _, _, err := correlation.First(ctx, rdb, root, "req-transfer", -1); err == nil {
			t.Fatal("First with a negative limit: no error")
		}
	}
	if len(byCorrelation) < 100 {
		t.Fatalf("only %d correlation ids: too weak a test", len(byCorrelation))
	}
	check()

	// Delivered again (a relay retry, a replay): nothing changes.
	for id, o := range project(t, rdb, root, proj, events, "") {
		if o != readmodels.Duplicate {
			t.Fatalf("event %s delivered again: outcome %c, want duplicate", id, o)
		}
	}
	check()
}

// Audience is the access policy's MaySee as an index key: a principal who
// is not an operator may see an event exactly when it is the event's
// audience.
func TestAudienceIsThePolicy(t *testing.T) {
	names := []string{"", "alice", "bob", "process-manager"}
	for _, principal := range names {
		for _, onBehalfOf := range names {
			audience := correlation.Audience(principal, onBehalfOf)
			for _, subject := range []string{"alice", "bob", "carol", "process-manager"} {
				if may := (auth.Principal{Subject: subject}).MaySee(principal, onBehalfOf); may != (subject == audience) {
					t.Errorf("an event of %q on behalf of %q: %s may see it %v, but its audience is %q", principal, onBehalfOf, subject, may, audience)
				}
			}
		}
	}
}

// Each principal reads the events of a correlation it may see — its own,
// and those a process manager appended on its behalf — from a set of its
// own: bounded, counted and waited for like the whole correlation, and the
// same whoever else's events share the correlation id. Operators read them
// all. A redelivery changes nothing.
func TestEventsSeenByTheirAudience(t *testing.T) {
	rdb, root := testenv.Redis(t)
	ctx := context.Background()
	type meta struct{ principal, onBehalfOf string }
	var events []log.Event
	add := func(corr, aggregate string, m meta) {
		pos := int64(len(events) + 1)
		version := int64(1)
		for _, e := range events {
			if e.AggregateID == aggregate {
				version++
			}
		}
		e := event("account", aggregate, version, "FundsDeposited", pos, corr, fmt.Sprint("cause-", pos))
		e.Principal, e.OnBehalfOf = m.principal, m.onBehalfOf
		events = append(events, e)
	}
	// Accounts on several partitions; alice's transfer, bob reusing its
	// correlation id, events of nobody's.
	for i := range 12 {
		acc := fmt.Sprintf("acc-%d", i%5)
		switch i % 4 {
		case 0:
			add("shared", acc, meta{"alice", ""})
		case 1:
			add("shared", acc, meta{"process-manager", "alice"})
		case 2:
			add("shared", acc, meta{"bob", ""})
		default:
			add("shared", acc, meta{"process-manager", "bob"})
		}
	}
	add("shared", "acc-9", meta{"", ""})
	add("shared", "acc-8", meta{"process-manager", ""})
	// Two keys a naive layout would confuse: audience "a:1" of correlation
	// "x", audience "a" of correlation "1:x".
	add("x", "acc-7", meta{"a:1", ""})
	add("1:x", "acc-7", meta{"a", ""})
	proj := correlation.Projection{Types: []string{"account"}}
	project(t, rdb, root, proj, events, "owner")
	if ok, err := readmodels.NewGenerations(rdb, readmodels.NewLayout(root, correlation.Name)).Promote(ctx, 1); err != nil || !ok {
		t.Fatalf("promote: %v %v", ok, err)
	}

	check := func() {
		t.Helper()
		for _, corr := range []string{"shared", "x", "1:x"} {
			for _, subject := range []string{"alice", "bob", "carol", "a", "a:1", "process-manager"} {
				var want []log.Event
				for _, e := range events {
					if e.CorrelationID == corr && (auth.Principal{Subject: subject}).MaySee(e.Principal, e.OnBehalfOf) {
						want = append(want, e)
					}
				}
				for _, limit := range []int{0, 1, 2, 100} {
					got, total, err := correlation.FirstSeenBy(ctx, rdb, root, corr, subject, limit)
					if err != nil || total != int64(len(want)) || len(got) != min(limit, len(want)) {
						t.Fatalf("%s of %s, limit %d: %d of %d events (%v), want %d of %d", subject, corr, limit, len(got), total, err, min(limit, len(want)), len(want))
					}
					for i, l := range got {
						w := link(want[i])
						l.RecordedAt, w.RecordedAt = time.Time{}, time.Time{}
						if l != w {
							t.Fatalf("%s of %s: event %d\n got %+v\nwant %+v", subject, corr, i, l, w)
						}
					}
				}
				for _, e := range events {
					visible := e.CorrelationID == corr && slices.ContainsFunc(want, func(w log.Event) bool { return w.ID == e.ID })
					if has, err := correlation.HasSeenBy(ctx, rdb, root, corr, subject, e.GlobalPosition); err != nil || has != visible {
						t.Fatalf("%s of %s has position %d: %v (%v), want %v", subject, corr, e.GlobalPosition, has, err, visible)
					}
				}
			}
		}
		all, total, err := correlation.First(ctx, rdb, root, "shared", 100)
		if err != nil || len(all) != 14 || total != 14 {
			t.Fatalf("an operator reads %d of %d events of the shared correlation (%v), want all 14", len(all), total, err)
		}
	}
	check()
	if _, _, err := correlation.FirstSeenBy(ctx, rdb, root, "shared", "", 10); err == nil {
		t.Fatal("FirstSeenBy without an audience: no error")
	}
	if _, err := correlation.HasSeenBy(ctx, rdb, root, "shared", "", 1); err == nil {
		t.Fatal("HasSeenBy without an audience: no error")
	}
	for id, o := range project(t, rdb, root, proj, events, "") {
		if o != readmodels.Duplicate {
			t.Fatalf("event %s delivered again: outcome %c, want duplicate", id, o)
		}
	}
	check()
}

// The link is written without encoding/json's reflection; it must still be
// the Link json.Marshal writes, byte for byte, whatever the strings hold.
func TestLinkIsLinksJSON(t *testing.T) {
	odd := `<"q"> & \ ` + "\t\u2028é\xff"
	for _, e := range []log.Event{
		{ID: uuid.Must(uuid.NewV7()), AggregateType: "account", AggregateID: "a1", Version: 3, Type: "FundsDeposited",
			GlobalPosition: 1234567, RecordedAt: time.Date(2026, 12, 4, 5, 6, 7, 123000, time.FixedZone("x", 3600)),
			Metadata: log.Metadata{CorrelationID: "c1", CausationID: "k1", Principal: "alice"}},
		{ID: uuid.Must(uuid.NewV7()), AggregateType: odd, AggregateID: odd, Version: 1, Type: odd,
			GlobalPosition: 1, RecordedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Metadata: log.Metadata{CorrelationID: odd, CausationID: odd, Principal: odd, OnBehalfOf: odd}},
	} {
		args, err := correlation.Projection{}.Args(e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(correlation.Link{EventID: e.ID.String(), CausationID: e.CausationID, CorrelationID: e.CorrelationID,
			AggregateType: e.AggregateType, AggregateID: e.AggregateID, Version: e.Version, Type: e.Type,
			GlobalPosition: e.GlobalPosition, RecordedAt: e.RecordedAt.UTC(), Principal: e.Principal, OnBehalfOf: e.OnBehalfOf})
		if err != nil {
			t.Fatal(err)
		}
		if args[2] != string(want) {
			t.Fatalf("link\n%s\njson.Marshal writes\n%s", args[2], want)
		}
	}
}
