package reader_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// G6: after every command, a read naming the writer's version returns that
// version or a newer one — 1,000 times, over eight counters written and
// read concurrently, alternating the query parameter and the header (with
// the writer's ETag as it came), and the parameter with the ETag of the
// version before in If-None-Match.
func TestReadYourWritesEveryTime(t *testing.T) {
	p := newPipeline(t, readertest.Config())
	const workers, runs = 8, 125
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		id := fmt.Sprintf("ryw-%d", w)
		openActive(p, id, 0)
		wg.Go(func() {
			value, previous := int64(0), ""
			for i := range runs {
				amount := int64(100 + i)
				r := p.Do(p.Writer, http.MethodPost, "/v1/counters/"+id+"/increments",
					fmt.Sprintf(`{"amount":%d,"unit":"items","note":"stocked"}`, amount))
				if r.Status != http.StatusOK {
					t.Errorf("increment: %d %s", r.Status, r.Body)
					return
				}
				value += amount
				var c struct{ StreamVersion int64 }
				r.JSON(t, &c)
				etag := r.Header.Get("ETag")
				switch i % 3 {
				case 0, 1:
					var got domaintest.Summary
					var q readertest.Response
					if i%3 == 0 {
						q = p.Read("/v1/counters/" + id + "?min_version=" + strconv.FormatInt(c.StreamVersion, 10))
					} else {
						q = p.Read("/v1/counters/"+id, reader.MinVersionHeader, etag)
					}
					if q.Status != http.StatusOK {
						t.Errorf("read %s at least v%d: %d %s", id, c.StreamVersion, q.Status, q.Body)
						return
					}
					q.JSON(t, &got)
					// Only this worker writes to id, so the version is exact.
					if got.Version != c.StreamVersion || got.Value != value || q.Header.Get("ETag") != etag {
						t.Errorf("read %s at least v%d: version %d value %d ETag %s; want v%d value %d ETag %s",
							id, c.StreamVersion, got.Version, got.Value, q.Header.Get("ETag"), c.StreamVersion, value, etag)
						return
					}
				case 2:
					var got domaintest.Summary
					q := p.Read("/v1/counters/"+id+"?min_version="+strconv.FormatInt(c.StreamVersion, 10), "If-None-Match", previous)
					q.JSON(t, &got)
					if q.Status != http.StatusOK || got.Version != c.StreamVersion || got.Value != value {
						t.Errorf("read %s at least v%d, not %s: %d %s", id, c.StreamVersion, previous, q.Status, q.Body)
						return
					}
				}
				previous = etag
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if done.Load() != workers*runs {
		t.Fatalf("%d of %d write-then-read runs saw their write", done.Load(), workers*runs)
	}
}

// A version the projection does not reach within the bound is said to be
// stale, with the version the reader has; it is never served silently old.
func TestStaleReadIsSaidNotServed(t *testing.T) {
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 300 * time.Millisecond
	cfg.AutoPipeline = false // the plain client's round trip per read, covered here
	p := newPipeline(t, cfg)
	v := openActive(p, "stale-1", 500)
	r := p.ReadWhenThere(fmt.Sprintf("/v1/counters/stale-1?min_version=%d", v.version))
	if r.Status != http.StatusOK {
		t.Fatalf("read at the written version: %d %s", r.Status, r.Body)
	}
	readertest.CheckStaleReads(t, p, []readertest.StaleRead{
		{Path: fmt.Sprintf("/v1/counters/stale-1?min_version=%d", v.version+1), Current: v.version},
		{Path: "/v1/counters/stale-1", Headers: []string{reader.MinVersionHeader, fmt.Sprintf(`"%d"`, v.version+5)}, Current: v.version},
		{Path: fmt.Sprintf("/v1/counters/stale-1?min_version=%d", v.version+1), Headers: []string{"Prefer", "wait=0.05"}, Current: v.version},
		{Path: "/v1/counters/never-created?min_version=1", Headers: []string{"Prefer", "wait=0"}, Current: 0},
		// A wait too large to be a duration is the server's bound, not none.
		{Path: fmt.Sprintf("/v1/counters/stale-1?min_version=%d", v.version+1), Headers: []string{"Prefer", "wait=1e300"}, Current: v.version},
	})
	readertest.CheckStaleCorrelation(t, p, "open-stale-1", v.position+1000)
}

// A correlation spanning several aggregates comes back as one causation
// tree: each event under the event that caused it, across counters, and
// the events of one command side by side. The chain is appended as a
// process manager would (each step caused by the previous event), and read
// as an operator, who sees every event whoever it was appended for.
func TestCausationTreeAcrossAggregates(t *testing.T) {
	p := newPipeline(t, readertest.Config())
	openActive(p, "tree-a", 10_000)
	openActive(p, "tree-b", 0)
	ctx := context.Background()
	corr := "move-" + uuid.NewString()
	appendOne := func(id string, causation string, ev domaintest.Event) log.Event {
		payload, _ := json.Marshal(ev)
		out, err := p.Store.Append(ctx, postgres.AppendRequest{
			AggregateType: domaintest.AggregateType, AggregateID: id, Expected: postgres.AnyVersion,
			Events:   []log.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Payload: payload}},
			Metadata: log.Metadata{CorrelationID: corr, CausationID: causation, Principal: "process-manager", OnBehalfOf: readertest.Owner},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	command := uuid.NewString()
	taken := appendOne("tree-a", command, domaintest.Decremented{Amount: 700, Unit: "items", Note: corr})
	added := appendOne("tree-b", taken.ID.String(), domaintest.Incremented{Amount: 700, Unit: "items", Note: corr})
	// A second effect of the increment, and an unrelated command in the same
	// correlation: siblings and a second root.
	fee := appendOne("tree-a", added.ID.String(), domaintest.Decremented{Amount: 1, Unit: "items", Note: "fee"})
	audit := appendOne("tree-b", "audit-command", domaintest.Incremented{Amount: 5, Unit: "items", Note: "audit"})

	// The four events lie on two partitions projected independently: wait
	// for each of them, as read-your-writes is per event.
	var tree reader.CausationTree
	var r readertest.Response
	for _, e := range []log.Event{taken, added, fee, audit} {
		r = p.ReadAs(readertest.AsOperator, fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr, e.GlobalPosition))
		if r.Status != http.StatusOK {
			t.Fatalf("correlation at position %d: %d %s", e.GlobalPosition, r.Status, r.Body)
		}
	}
	r.JSON(t, &tree)
	type edge struct{ parent, child string }
	var edges []edge
	var walk func(parent string, ns []*reader.Node)
	seen := map[string]int{}
	walk = func(parent string, ns []*reader.Node) {
		for _, n := range ns {
			seen[n.EventID]++
			if n.CorrelationID != corr {
				t.Errorf("event %s has correlation %s", n.EventID, n.CorrelationID)
			}
			if parent != "" && n.CausationID != parent {
				t.Errorf("event %s under %s says it was caused by %s", n.EventID, parent, n.CausationID)
			}
			edges = append(edges, edge{parent, n.EventID})
			walk(n.EventID, n.Children)
		}
	}
	walk("", tree.Roots)
	want := []edge{
		{"", taken.ID.String()}, {taken.ID.String(), added.ID.String()},
		{added.ID.String(), fee.ID.String()}, {"", audit.ID.String()},
	}
	if !slices.Equal(edges, want) || tree.Events != 4 || tree.TotalEvents != 4 || tree.Truncated || len(seen) != 4 {
		t.Fatalf("tree edges %v (events %d), want %v", edges, tree.Events, want)
	}
	if tree.Roots[0].CausationID != command || tree.Roots[0].AggregateID != "tree-a" || tree.Roots[0].Children[0].AggregateID != "tree-b" {
		t.Fatalf("roots %+v", tree.Roots)
	}

	// A command's own correlation: its events are siblings under nothing.
	c := p.Command(http.StatusCreated, "/v1/counters", `{"id":"tree-c","owner":"Bo","unit":"items","initial":5}`,
		"X-Correlation-ID", "open-tree-c")
	r = p.Read(fmt.Sprintf("/v1/correlations/open-tree-c?min_position=%d", c.GlobalPosition))
	r.JSON(t, &tree)
	if r.Status != http.StatusOK || tree.Events != 2 || len(tree.Roots) != 2 || tree.Roots[0].Type != "CounterCreated" ||
		tree.Roots[1].Type != "CounterIncremented" || tree.Roots[0].CausationID != c.CausationID {
		t.Fatalf("correlation of one command: %d %s", r.Status, r.Body)
	}
	if r := p.Read("/v1/correlations/nobody-" + uuid.NewString()); r.Status != http.StatusNotFound {
		t.Fatalf("unknown correlation: %d %s", r.Status, r.Body)
	}
	// A stranger sees none of it: as unknown.
	for _, corr := range []string{corr, "open-tree-c"} {
		if r := p.ReadAs(readertest.AsStranger, "/v1/correlations/"+corr); r.Status != http.StatusNotFound {
			t.Fatalf("a stranger reads correlation %s: %d %s", corr, r.Status, r.Body)
		}
	}
}

// A correlation larger than the reader's bound is answered with its
// earliest events, marked truncated, with the count of all; a stale answer
// counts them without reading them.
func TestLargeCorrelationIsTruncated(t *testing.T) {
	cfg := readertest.Config()
	cfg.MaxCorrelationEvents = 3
	p := newPipeline(t, cfg)
	corr := []string{"X-Correlation-ID", "big-" + uuid.NewString()}
	var positions []int64
	for _, c := range []struct{ path, body string }{
		{"/v1/counters", `{"id":"big-1","owner":"Ada","unit":"items","initial":5}`},
		{"/v1/counters/big-1/start", ""},
		{"/v1/counters/big-1/increments", `{"amount":1,"unit":"items","note":"a"}`},
		{"/v1/counters/big-1/increments", `{"amount":2,"unit":"items","note":"b"}`},
		{"/v1/counters/big-1/increments", `{"amount":3,"unit":"items","note":"c"}`},
	} {
		want := http.StatusOK
		if c.path == "/v1/counters" {
			want = http.StatusCreated
		}
		for _, e := range p.Command(want, c.path, c.body, corr...).Events {
			positions = append(positions, e.GlobalPosition)
		}
	}
	if len(positions) != 6 {
		t.Fatalf("%d events written, want 6", len(positions))
	}
	r := p.Read(fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr[1], positions[5]))
	var tree reader.CausationTree
	r.JSON(t, &tree)
	if r.Status != http.StatusOK || tree.Events != 3 || tree.TotalEvents != 6 || !tree.Truncated || len(tree.Roots) != 3 {
		t.Fatalf("a correlation of 6 events with a bound of 3: %d %s", r.Status, r.Body)
	}
	for i, root := range tree.Roots {
		if root.GlobalPosition != positions[i] {
			t.Errorf("root %d is at position %d, want the earliest events %v", i, root.GlobalPosition, positions[:3])
		}
	}
	r = p.Read(fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr[1], positions[5]+1000), "Prefer", "wait=0.05")
	var prob struct {
		Type          string
		EventsPresent int64
	}
	r.JSON(t, &prob)
	if r.Status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" || prob.EventsPresent != 6 {
		t.Errorf("a position the correlation does not hold: %d %s; want 503 stale with eventsPresent 6", r.Status, r.Body)
	}
}
