package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/testenv"
)

// rateInterval stands for Grafana's $__rate_interval against a Prometheus
// that scrapes every second.
const rateInterval = "10s"

// A real Prometheus (Debian's package) scrapes the running writer, relay,
// projector and reader, with the chart's alert rules loaded, while load
// runs. Then every expression of every dashboard panel and every alert rule
// (its threshold left out) is valid and returns data. Then the lag panels
// are read while the account-summary projection is paused and after it
// resumes: they show exactly the events written meanwhile, per partition,
// and their growing age, and go back to 0.
func TestQueriesReturnData(t *testing.T) {
	promBin := requireTool(t, "prometheus")
	gate := newGate()
	p := newPipeline(t, pipelineOptions{summaryHooks: projector.Hooks{BeforeApply: gate.wait}})
	t.Cleanup(gate.open) // before the pipeline stops: a held step would hold its worker
	prom := startPrometheus(t, promBin, map[string]string{
		"writer": p.writer, "relay": p.relay, "projector": p.proj, "reader": p.reader,
	})
	waitFor(t, 30*time.Second, "Prometheus scraping the four processes", func() bool {
		v, ok := prom.scalar(t, `count(up{job=~"tributary-.*"} == 1)`)
		return ok && v == 4
	})

	// Load: commands of every kind (some refused), queries (some waiting
	// for a version, some for unknown accounts) and an event no projection
	// can apply.
	ids := make([]string, 16)
	for i := range ids {
		ids[i] = fmt.Sprintf("acc-load-%02d", i)
		p.command(t, p.writer+"/v1/accounts", fmt.Sprintf(`{"id":%q,"owner":"Ada","currency":"EUR","initialDeposit":10000}`, ids[i]), http.StatusCreated)
		p.command(t, p.writer+"/v1/accounts/"+ids[i]+"/activate", "", http.StatusOK)
	}
	produceUnknownEvent(t, p)
	for round := range 3 {
		for _, id := range ids {
			c := p.command(t, p.writer+"/v1/accounts/"+id+"/deposits", fmt.Sprintf(`{"amount":%d,"currency":"EUR","source":"salary"}`, 100+round), http.StatusOK)
			if status, body := p.do(t, http.MethodGet, fmt.Sprintf("%s/v1/accounts/%s?min_version=%d", p.reader, id, c.StreamVersion), ""); status != http.StatusOK {
				t.Fatalf("read %s at version %d: %d %s", id, c.StreamVersion, status, body)
			}
			p.command(t, p.writer+"/v1/accounts/"+id+"/withdrawals", `{"amount":99999999,"currency":"EUR","reason":"too much"}`, http.StatusUnprocessableEntity)
			p.do(t, http.MethodGet, p.reader+"/v1/accounts/no-such-"+id, "")
			p.do(t, http.MethodGet, p.reader+"/v1/accounts/"+id+"/transactions", "")
		}
	}
	waitFor(t, 30*time.Second, "Prometheus seeing every hop and the dead letters", func() bool {
		for _, q := range []string{
			`sum(tributary_commands_total)`, `sum(tributary_relay_events_published_total)`,
			`sum(tributary_projection_events_total{outcome="applied"})`, `sum(tributary_reader_consistency_wait_seconds_count)`,
			`count(tributary_projection_dead_lettered_total > 0)`, `sum(tributary_kafka_fetch_records_total)`,
		} {
			if v, ok := prom.scalar(t, q); !ok || v == 0 {
				return false
			}
		}
		v, ok := prom.scalar(t, `count(tributary_projection_dead_lettered_total > 0)`)
		return ok && v == 4
	})
	for name, reg := range p.registries {
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, pr := range problems {
			if isKpromGauge(pr.Metric) {
				continue
			}
			t.Errorf("%s: metric %s: %s", name, pr.Metric, pr.Text)
		}
	}

	// A rate needs two samples of a series in its window: wait until the
	// series that the load made have three in the last 10s.
	waitFor(t, 30*time.Second, "three scrapes of the load's series", func() bool {
		for _, m := range []string{
			"tributary_commands_total", "tributary_events_appended_total", "tributary_writer_http_request_duration_seconds_count",
			"tributary_relay_events_published_total", "tributary_kafka_produce_records_total",
			"tributary_projection_events_total", "tributary_projection_apply_seconds_count", "tributary_kafka_fetch_records_total",
			"tributary_reader_http_request_duration_seconds_count", "tributary_reader_consistency_wait_seconds_count",
		} {
			if v, ok := prom.scalar(t, `min(count_over_time(`+m+`[`+rateInterval+`]))`); !ok || v < 3 {
				return false
			}
		}
		return true
	})
	// The relay names the transaction holding its watermark back only while
	// one does: hold one (with a transaction id, not committed), commit an
	// event after it (which it then holds back), and wait until Prometheus
	// has scraped a holder; evaluate at that moment. Any holder on the
	// server counts (the watermark is the server's).
	release := holdTransaction(t, p.dbURL)
	heldBack := p.command(t, p.writer+"/v1/accounts/"+ids[0]+"/deposits", `{"amount":1,"currency":"EUR","source":"held back"}`, http.StatusOK)
	waitFor(t, 30*time.Second, "a scrape naming the transaction holding the relay back", func() bool {
		v, ok := prom.scalar(t, `count(tributary_relay_oldest_transaction_info)`)
		return ok && v >= 1
	})
	at := time.Now()
	release() // the lag panels below need the relay to pass
	// The summary applies the held-back deposit before the lag test pauses
	// it: otherwise the deposit could reach it only after the pause — the
	// lag panels, scraped before the relay passed, said "caught up" — and
	// lag by one more event than the test writes.
	waitFor(t, 30*time.Second, "the held-back deposit in the summary", func() bool {
		status, _ := p.do(t, http.MethodGet, fmt.Sprintf("%s/v1/accounts/%s?min_version=%d", p.reader, ids[0], heldBack.StreamVersion), "")
		return status == http.StatusOK
	})

	queries := dashboardQueries(t)
	var quiet []query // absent(...): no answer while every process is up
	for _, q := range ruleQueries(t) {
		for _, e := range withoutThresholds(t, q.expr) {
			queries = append(queries, query{where: q.where, expr: e})
		}
		for _, e := range absentCalls(t, q.expr) {
			quiet = append(quiet, query{where: q.where, expr: e})
		}
	}
	for _, q := range queries {
		expr := substitute(q.expr, rateInterval, ".*")
		res, err := prom.query(expr, at)
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", q.where, expr, err)
		case len(res) == 0:
			t.Errorf("%s: %s: no data", q.where, expr)
		}
	}
	for _, q := range quiet {
		res, err := prom.query(q.expr, at)
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", q.where, q.expr, err)
		case len(res) != 0:
			t.Errorf("%s: %s: answers %v while every process is up", q.where, q.expr, res)
		}
	}
	t.Logf("%d expressions of dashboards and alert rules evaluated, %d absent() checks", len(queries), len(quiet))
	for _, r := range prom.rules(t) {
		if r.Health != "ok" && r.Health != "unknown" {
			t.Errorf("rule %s in Prometheus: health %s: %s", r.Name, r.Health, r.LastError)
		}
	}

	testLagPanels(t, p, prom, gate, ids)
}

// testLagPanels pauses the account-summary projection, writes, and reads
// the projection lag dashboard's panels as Prometheus answers them.
func testLagPanels(t *testing.T, p *pipeline, prom *promServer, gate *gate, ids []string) {
	panels := map[string]string{}
	for _, q := range dashboardQueries(t) {
		if strings.HasPrefix(q.where, "projection-lag.json: Lag ") {
			panels[strings.TrimPrefix(q.where, "projection-lag.json: ")] = q.expr
		}
	}
	const (
		worstSeconds = "Lag in seconds (worst partition)"
		totalEvents  = "Lag in events (all partitions)"
		partSeconds  = "Lag in seconds per partition"
		partEvents   = "Lag in events per partition"
	)
	for _, name := range []string{worstSeconds, totalEvents, partSeconds, partEvents} {
		if panels[name] == "" {
			t.Fatalf("projection-lag.json has no panel %q", name)
		}
	}
	// readBy answers a panel's query for projection, by the label key.
	readBy := func(panel, projection, key string) map[string]float64 {
		t.Helper()
		res, err := prom.query(substitute(panels[panel], rateInterval, projection), time.Now())
		if err != nil {
			t.Fatalf("%s: %v", panel, err)
		}
		out := map[string]float64{}
		for _, s := range res {
			out[s.Metric[key]] = s.value()
		}
		return out
	}
	read := func(panel, projection string) map[string]float64 {
		t.Helper()
		return readBy(panel, projection, "partition")
	}
	caughtUp := func(projection string) bool {
		ev, sec := read(totalEvents, projection), read(worstSeconds, projection)
		return len(ev) == 1 && ev[""] == 0 && len(sec) == 1 && sec[""] == 0
	}
	waitFor(t, 30*time.Second, "every projection caught up before the pause", func() bool {
		return caughtUp("account-summary") && caughtUp("account-history")
	})

	gate.close()
	paused := time.Now()
	want := map[string]float64{}
	for i := range 3 * partitions {
		id := ids[i%len(ids)]
		p.command(t, p.writer+"/v1/accounts/"+id+"/deposits", `{"amount":1,"currency":"EUR","source":"lag"}`, http.StatusOK)
		want[strconv.Itoa(int(readmodels.PartitionOf(id, partitions)))]++
	}
	total := float64(3 * partitions)

	// Paused: the events written since are the lag, each on its partition;
	// the age of the oldest grows; the other projections stay at 0.
	defer func() {
		if t.Failed() {
			t.Logf("the paused projection's lag: %v events (per partition %v; written per partition %v)",
				read(totalEvents, "account-summary"), read(partEvents, "account-summary"), want)
		}
	}()
	waitFor(t, 30*time.Second, "the lag in events of the paused projection", func() bool {
		return read(totalEvents, "account-summary")[""] == total
	})
	// The deposits went out one after another, so partitions began to lag
	// at slightly different times: wait until each one that has events
	// waiting lags by 3 seconds, then the worst one must too.
	waitFor(t, 30*time.Second, "a lag of 3 seconds on every partition with events waiting", func() bool {
		seconds := read(partSeconds, "account-summary")
		for k, n := range want {
			if n > 0 && seconds[k] < 3 {
				return false
			}
		}
		return true
	})
	if worst := read(worstSeconds, "account-summary")[""]; worst < 3 {
		t.Errorf("the worst partition lags %vs while every partition with events waiting lags 3s or more", worst)
	}
	perPartition := read(partEvents, "account-summary")
	seconds := read(partSeconds, "account-summary")
	for part := range partitions {
		k := strconv.Itoa(part)
		if perPartition[k] != want[k] {
			t.Errorf("partition %s: lag %v events, want %v (all %v)", k, perPartition[k], want[k], perPartition)
		}
		switch {
		case want[k] > 0 && (seconds[k] < 3 || seconds[k] > time.Since(paused).Seconds()+2):
			t.Errorf("partition %s: lag %vs with %v events waiting for %v", k, seconds[k], want[k], time.Since(paused))
		case want[k] == 0 && seconds[k] != 0:
			t.Errorf("partition %s: lag %vs with nothing waiting", k, seconds[k])
		}
	}
	before := read(worstSeconds, "account-summary")[""]
	waitFor(t, 10*time.Second, "the lag's age growing", func() bool {
		return read(worstSeconds, "account-summary")[""] >= before+1
	})
	if !caughtUp("account-history") {
		t.Errorf("account-history, not paused, lags: %v events, %vs", read(totalEvents, "account-history"), read(worstSeconds, "account-history"))
	}
	all := readBy(totalEvents, ".*", "projection")
	if len(all) != 4 || all["account-summary"] != total || all["account-history"]+all["account-directory"]+all["correlation"] != 0 {
		t.Errorf("all projections: %v events, want %v of account-summary only", all, total)
	}

	// Resumed: back to 0 events and 0 seconds on every partition.
	gate.open()
	waitFor(t, 30*time.Second, "the lag back to 0 after resuming", func() bool { return caughtUp("account-summary") })
	for _, panel := range []string{partEvents, partSeconds} {
		for part, v := range read(panel, "account-summary") {
			if v != 0 {
				t.Errorf("%s: partition %s at %v after resuming", panel, part, v)
			}
		}
	}
}

// isKpromGauge tells the franz-go kprom gauges named like counters, which
// GatherAndLint flags and which cannot be renamed from outside kprom: the
// only lint problems allowed.
func isKpromGauge(metric string) bool {
	return metric == "tributary_kafka_buffered_fetch_records_total" || metric == "tributary_kafka_buffered_produce_records_total"
}

// gate pauses a projector's atomic steps while closed.
type gate struct {
	closed atomic.Bool
	mu     sync.Mutex
	opened chan struct{}
}

func newGate() *gate { return &gate{opened: make(chan struct{})} }

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.opened = make(chan struct{})
	g.closed.Store(true)
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed.Swap(false) {
		close(g.opened)
	}
}

// wait is a BeforeApply hook: it holds the step while the gate is closed.
func (g *gate) wait(ctx context.Context, _ readmodels.Batch) error {
	if !g.closed.Load() {
		return nil
	}
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	select {
	case <-opened:
	case <-ctx.Done():
	}
	return nil
}

// command posts a command as the pipeline's principal and checks its
// status.
func (p *pipeline) command(t *testing.T, url, body string, want int) struct{ StreamVersion int64 } {
	t.Helper()
	status, b := p.do(t, http.MethodPost, url, body)
	if status != want {
		t.Fatalf("POST %s %s: %d %s, want %d", url, body, status, b, want)
	}
	var r struct{ StreamVersion int64 }
	if status < 300 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// produceUnknownEvent puts an event of a type no schema knows on the
// account topic: every projection dead-letters it.
func produceUnknownEvent(t *testing.T, p *pipeline) {
	t.Helper()
	cl := testenv.KafkaClient(t, p.brokers, relay.ProducerOptions(5*time.Second)...)
	e := log.Event{ID: uuid.New(), AggregateType: "account", AggregateID: "acc-poison", Version: 1, Type: "Bogus",
		SchemaVersion: 1, Payload: []byte(`{}`), RecordedAt: time.Now(), GlobalPosition: 1,
		Metadata: log.Metadata{CorrelationID: "poison", CausationID: "poison", Principal: "test"}}
	topics := kafka.Topics{Prefix: "tributary", Partitions: partitions}
	if err := cl.ProduceSync(context.Background(), kafka.NewRecord(e, topics.For("account"), "/test")).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// withoutThresholds are the parts of an alert expression that must return
// data: its comparisons with a constant left out, each side of and/or/
// unless on its own, and what absent() looks for.
func withoutThresholds(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parsePromQL(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var parts func(parser.Expr) []string
	parts = func(e parser.Expr) []string {
		switch b := e.(type) {
		case *parser.ParenExpr:
			return parts(b.Expr)
		case *parser.Call:
			// absent(v) answers only while v has no series: v must have some.
			if b.Func.Name == "absent" && len(b.Args) == 1 {
				return parts(b.Args[0])
			}
		case *parser.BinaryExpr:
			switch {
			case b.Op == parser.LAND || b.Op == parser.LOR || b.Op == parser.LUNLESS:
				return append(parts(b.LHS), parts(b.RHS)...)
			case b.Op.IsComparisonOperator() && !b.ReturnBool:
				if _, ok := b.RHS.(*parser.NumberLiteral); ok {
					return parts(b.LHS)
				}
				if _, ok := b.LHS.(*parser.NumberLiteral); ok {
					return parts(b.RHS)
				}
			}
		}
		return []string{e.String()}
	}
	return parts(e)
}

// absentCalls are the absent(...) calls in an alert expression.
func absentCalls(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parsePromQL(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var calls []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if c, ok := n.(*parser.Call); ok && c.Func.Name == "absent" {
			calls = append(calls, c.String())
		}
		return nil
	})
	return calls
}

// holdTransaction opens a transaction on the database at databaseURL that
// holds a transaction id, as a stuck client would, and returns what ends it.
func holdTransaction(t *testing.T, databaseURL string) (release func()) {
	t.Helper()
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "telemetry-test-holder"
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(t.Context())
	if err == nil {
		_, err = tx.Exec(t.Context(), "SELECT pg_current_xact_id()")
	}
	if err != nil {
		conn.Close(context.Background())
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(context.Background())
			_ = conn.Close(context.Background())
		})
	}
	t.Cleanup(release)
	return release
}

// promServer is a Prometheus server of the test.
type promServer struct {
	url string
}

// sample is one series of a query's answer.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// startPrometheus runs prometheus scraping every second the processes at
// the given base URLs (job tributary-<name>), with the chart's rules, until
// the test ends.
func startPrometheus(t *testing.T, bin string, targets map[string]string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join(filesDir, "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %q\nscrape_configs:\n", rules)
	for name, base := range targets {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfg, "  - job_name: tributary-%s\n    static_configs:\n      - targets: [%q]\n        labels: {component: %s}\n", name, u.Host, name)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	prom := &promServer{url: "http://" + addr}
	waitFor(t, 30*time.Second, "Prometheus ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get(prom.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return prom
}

// query evaluates expr at a time; an invalid expression is an error.
func (p *promServer) query(expr string, at time.Time) ([]sample, error) {
	resp, err := http.PostForm(p.url+"/api/v1/query", url.Values{
		"query": {expr}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)},
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: %s", body.ErrorType, body.Error)
	}
	switch body.Data.ResultType {
	case "vector":
		var out []sample
		err := json.Unmarshal(body.Data.Result, &out)
		return out, err
	case "scalar":
		var v [2]any
		err := json.Unmarshal(body.Data.Result, &v)
		return []sample{{Value: v}}, err
	default:
		return nil, fmt.Errorf("result type %s", body.Data.ResultType)
	}
}

// scalar is the value of a query with one series, false when it has none.
func (p *promServer) scalar(t *testing.T, expr string) (float64, bool) {
	t.Helper()
	res, err := p.query(expr, time.Now())
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	if len(res) != 1 {
		return 0, false
	}
	return res[0].value(), true
}

// rule is a rule as Prometheus evaluates it.
type rule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// rules lists the loaded rules.
func (p *promServer) rules(t *testing.T) []rule {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Groups []struct {
				Rules []rule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range body.Data.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("Prometheus loaded no rules")
	}
	return out
}
