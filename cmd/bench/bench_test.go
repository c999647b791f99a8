package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/testenv"
)

func TestMedian(t *testing.T) {
	results := func(rates ...float64) []phaseResult {
		var out []phaseResult
		for _, r := range rates {
			out = append(out, phaseResult{perSecond: r})
		}
		return out
	}
	rate := func(p phaseResult) float64 { return p.perSecond }
	tests := []struct {
		name  string
		rates []float64
		want  float64
	}{
		{"none", nil, 0},
		{"one", []float64{7}, 7},
		{"odd count takes the middle", []float64{300, 100, 200}, 200},
		{"even count averages the middle two", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(results(tt.rates...), rate); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.rates, got, tt.want)
			}
		})
	}
}

func TestQuantileIsNearestRank(t *testing.T) {
	m := measurement{window: time.Second}
	for i := 1; i <= 1000; i++ {
		m.latencies = append(m.latencies, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 500 * time.Millisecond, 0.99: 990 * time.Millisecond, 0.999: 999 * time.Millisecond, 1: time.Second} {
		if got := m.quantile(q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if got := m.perSecond(); got != 1000 {
		t.Errorf("perSecond = %v, want 1000", got)
	}
	if got := (measurement{window: time.Second}).quantile(0.99); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	tests := [][]string{
		nil,
		{"reader"},
		{"writer", "--clients", "0"},
		{"writer", "--clients", "1,1"},
		{"writer", "--clients", ""},
		{"writer", "--rounds", "0"},
		{"writer", "--duration", "1ms"},
		{"writer", "--warmup", "-1s"},
		{"writer", "--accounts", "0"},
		{"writer", "--database-url", "host=localhost"},
		{"writer", "extra"},
		{"projector", "--rounds", "0"},
		{"projector", "--events", "0"},
		{"projector", "--events", "10", "--accounts", "20"},
		{"projector", "--partitions", "0"},
		{"projector", "--batch-size", "0"},
		{"projector", "--timeout", "0s"},
		{"projector", "--ceiling-pipeline", "0"},
		{"projector", "--redis-addr", "localhost"},
		{"projector", "--projections", "history"},
		{"projector", "--projections", "summary,summary"},
		{"projector", "extra"},
		{"pipeline", "--clients", "0"},
		{"pipeline", "--clients", "1,16"},
		{"pipeline", "--accounts", "1"},
		{"pipeline", "--rounds", "0"},
		{"pipeline", "--duration", "1ms"},
		{"pipeline", "--warmup", "-1s"},
		{"pipeline", "--read-share", "0"},
		{"pipeline", "--read-share", "1.5"},
		{"pipeline", "--transfer-share", "1"},
		{"pipeline", "--transfer-share", "-0.1"},
		{"pipeline", "--partitions", "0"},
		{"pipeline", "--settle-timeout", "0s"},
		{"pipeline", "--redis-ceiling", "lua"},
		{"pipeline", "--ceiling-requests", "0"},
		{"pipeline", "--redis-addr", "localhost"},
		{"pipeline", "--database-url", "host=localhost"},
		{"pipeline", "extra"},
	}
	for _, args := range tests {
		err := run(context.Background(), args, func(string) string { return "" }, &bytes.Buffer{})
		if code := config.ExitCode(err); code != 2 {
			t.Errorf("run(%q) = %v (exit %d), want exit 2", args, err, code)
		}
	}
	env := map[string]string{"BENCH_ROUNDS": "zero"}
	err := run(context.Background(), []string{"writer"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if code := config.ExitCode(err); code != 2 || !strings.Contains(err.Error(), "BENCH_ROUNDS") {
		t.Errorf("bad BENCH_ROUNDS: %v (exit %d), want exit 2 naming the variable", err, code)
	}
}

func TestTableSaysLoudlyWhenOperationsFailed(t *testing.T) {
	r := newReport(settings{clients: clientLevels{4}, rounds: 1}, "PostgreSQL test")
	r.addWriter(1, 4, measurement{window: time.Second, latencies: []time.Duration{time.Millisecond}, errors: 3, firstErr: errors.New("POST /v1/accounts/acc-1/deposits: 500")})
	r.addRaw(1, 4, measurement{window: time.Second, latencies: []time.Duration{time.Millisecond, time.Millisecond}})
	var out bytes.Buffer
	if err := r.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3 OPERATIONS FAILED", "NOT VALID", "clients 4, round 1, writer: 3 errors", "0.50"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if r.errors() != 3 {
		t.Errorf("errors() = %d, want 3", r.errors())
	}
}

// TestWriterBenchmark runs a tiny benchmark against the machine's Postgres
// and checks the JSON report.
func TestWriterBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against Postgres")
	}
	args := []string{"writer", "--json", "--rounds", "2", "--clients", "1,4", "--accounts", "20", "--warmup", "100ms", "--duration", "300ms"}
	getenv := func(k string) string {
		if k == "BENCH_DATABASE_URL" {
			return os.Getenv("TEST_DATABASE_URL")
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(t.Context(), args, getenv, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep jsonReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, out.String())
	}
	if rep.Errors != 0 || len(rep.Levels) != 2 || rep.PostgresVersion == "" || rep.NProc < 1 {
		t.Fatalf("unexpected report: %+v", rep)
	}
	for _, l := range rep.Levels {
		if l.WriterCommandsPerSecond <= 0 || l.RawInsertsPerSecond <= 0 || l.RatioWriterToRaw <= 0 || l.P99Seconds < l.P50Seconds {
			t.Errorf("level %d: implausible medians %+v", l.Clients, l)
		}
		if len(l.Writer) != 2 || len(l.Raw) != 2 {
			t.Errorf("level %d: %d writer and %d raw rounds, want 2 each", l.Clients, len(l.Writer), len(l.Raw))
		}
	}
}

func TestParseRedisBenchmarkCSV(t *testing.T) {
	out := `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"evalsha e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0","280898.88","0.851","0.096","0.407","3.647","6.919","10.551"
`
	got, err := parseRedisBenchmarkCSV([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if got.callsPerSecond != 280898.88 || got.p50 != 407*time.Microsecond || got.p99 != 6919*time.Microsecond {
		t.Errorf("parsed %+v", got)
	}
	for _, bad := range []string{"", "ERR unknown command\n", `"test","rps"` + "\n" + `"x","fast"` + "\n"} {
		if _, err := parseRedisBenchmarkCSV([]byte(bad)); err == nil {
			t.Errorf("parseRedisBenchmarkCSV(%q) did not fail", bad)
		}
	}
}

func TestRedisUsageFromInfo(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n# Commandstats\r\n" +
		"cmdstat_evalsha:calls=10,usec=300,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_eval:calls=2,usec=100,usec_per_call=50.00\r\ncmdstat_get:calls=7,usec=7\r\n"
	want := redisUsage{cpu: 3750 * time.Millisecond, evalCalls: 12, evalDuration: 400 * time.Microsecond}
	if got := parseRedisUsage(info); got != want {
		t.Errorf("parseRedisUsage = %+v, want %+v", got, want)
	}
	if got := infoField(info, "used_cpu"); got != "" {
		t.Errorf("infoField of a prefix = %q, want nothing", got)
	}
}

// TestProjectorBenchmark runs a tiny projector benchmark against the
// machine's Redis and checks the JSON report and that no key is left.
func TestProjectorBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against Redis")
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		t.Skip("redis-benchmark is not installed")
	}
	args := []string{"projector", "--json", "--rounds", "2", "--events", "3000", "--accounts", "100", "--partitions", "4",
		"--ceiling-requests", "2000", "--timeout", "1m"}
	getenv := func(k string) string {
		if k == "BENCH_REDIS_ADDR" {
			return os.Getenv("TEST_REDIS_ADDR")
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(t.Context(), args, getenv, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep jsonProjectorReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, out.String())
	}
	if rep.Invalid != "" || rep.RedisVersion == "" || rep.GoalMet == nil || len(rep.Projections) != 2 || len(rep.Ceilings) != 3 {
		t.Fatalf("unexpected report: %+v", rep)
	}
	for _, p := range rep.Projections {
		if p.EventsPerSecond <= 0 || p.RatioToCeiling <= 0 || p.GoCPUMicrosPerEvent <= 0 || len(p.Rounds) != 2 {
			t.Errorf("%s: implausible medians %+v", p.Name, p)
		}
		for _, r := range p.Rounds {
			if r.Applied != 3000*p.Projections || r.Duplicates != 0 || r.DeadLettered != 0 {
				t.Errorf("%s round %d applied %d events (%d duplicates, %d dead-lettered), want %d",
					p.Name, r.Round, r.Applied, r.Duplicates, r.DeadLettered, 3000*p.Projections)
			}
		}
	}
	for _, c := range rep.Ceilings {
		if c.CallsPerSecond <= 0 || (c.EventsPerCall > 0) != (c.EventsPerSecond > 0) || len(c.Rounds) != 2 {
			t.Errorf("ceiling %s: implausible %+v", c.Name, c)
		}
	}
	addr := os.Getenv("TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	left, _, err := rdb.Scan(t.Context(), 0, rep.RedisKeyPrefix+"*", 10_000).Result()
	if err != nil || len(left) > 0 || !strings.HasPrefix(rep.RedisKeyPrefix, "bench-projector-") {
		t.Errorf("keys left under %q: %v (err %v)", rep.RedisKeyPrefix, left, err)
	}
}

// TestPipelineBenchmark runs a tiny pipeline benchmark against the
// machine's Postgres and Redis and checks that the JSON report has every
// figure, nonzero, beside a nonzero ceiling, and that no key is left.
// The window is 3 s: the CPU split samples at 100 Hz, and in a 1 s window
// on a machine busy with the rest of the suite the reader's few
// milliseconds of CPU got no sample at all now and then.
func TestPipelineBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against Postgres and Redis")
	}
	args := []string{"pipeline", "--json", "--rounds", "1", "--clients", "4", "--accounts", "20", "--partitions", "4",
		"--warmup", "300ms", "--duration", "3s", "--read-share", "0.5", "--ceiling-requests", "5000", "--settle-timeout", "1m"}
	getenv := func(k string) string {
		switch k {
		case "BENCH_DATABASE_URL":
			return os.Getenv("TEST_DATABASE_URL")
		case "BENCH_REDIS_ADDR":
			return os.Getenv("TEST_REDIS_ADDR")
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(t.Context(), args, getenv, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep jsonPipelineReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, out.String())
	}
	if rep.Invalid != "" || rep.Errors != 0 || rep.PostgresVersion == "" || rep.RedisVersion == "" || len(rep.Projections) != 5 ||
		len(rep.PipelineRounds) != 1 || len(rep.CeilingRounds) != 1 || rep.EndToEndSamples == 0 || rep.Transfers == 0 {
		t.Fatalf("unexpected report: %s", out.String())
	}
	want := []string{"commandsPerSecond", "commandP50Seconds", "commandP99Seconds", "commandP999Seconds",
		"endToEndP50Seconds", "endToEndP99Seconds", "relayEventsPerSecond", "projectorEventsPerSecond", "readerQueriesPerSecond"}
	if len(rep.Figures) != len(want) {
		t.Fatalf("%d figures, want %d: %+v", len(rep.Figures), len(want), rep.Figures)
	}
	for i, f := range rep.Figures {
		if f.Name != want[i] || f.Value <= 0 || f.CeilingValue <= 0 || f.Ratio <= 0 || f.Ceiling == "" {
			t.Errorf("figure %d: %+v, want %s with a nonzero value, ceiling and ratio", i, f, want[i])
		}
	}
	checkPipelineCPU(t, rep.PipelineRounds[0].CPU)
	if len(rep.CPUPerCommand) != len(cpuRows()) {
		t.Errorf("CPU medians: %+v, want %d rows", rep.CPUPerCommand, len(cpuRows()))
	}
	addr := os.Getenv("TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	left, _, err := rdb.Scan(t.Context(), 0, rep.RedisKeyPrefix+"*", 10_000).Result()
	if err != nil || len(left) > 0 || !strings.HasPrefix(rep.RedisKeyPrefix, "bench-pipeline-") {
		t.Errorf("keys left under %q: %v (err %v)", rep.RedisKeyPrefix, left, err)
	}
}

// TestPipelineTable checks the text form: one row per figure with its
// ceiling and ratio, and failures said loudly.
func TestPipelineTable(t *testing.T) {
	lat := []time.Duration{time.Millisecond, 2 * time.Millisecond, 40 * time.Millisecond}
	m := pipelineMeasurement{
		clients: 4, window: time.Second, commands: lat, visible: lat, queries: 50, commandsPerSecond: 3, queriesPerSecond: 50,
		before: pipelineCounters{appended: map[string]int64{"account": 10}, applied: map[string]float64{"account-summary": 10}},
		after: pipelineCounters{appended: map[string]int64{"account": 110}, published: 100,
			applied: map[string]float64{"account-summary": 110}},
		errors: 2, firstErr: errors.New("POST /v1/transfers: 500"),
	}
	m.after.at = m.before.at.Add(time.Second)
	c := pipelineCeilings{
		raw:   measurement{window: time.Second, latencies: lat},
		bare:  measurement{window: time.Second, latencies: lat},
		redis: ceilingResult{eventsPerSecond: 1000},
	}
	m.cpu = windowCPU{process: 900 * time.Microsecond, postgres: 600 * time.Microsecond, redis: 30 * time.Microsecond,
		machine: 1800 * time.Microsecond, components: []time.Duration{300 * time.Microsecond, 150 * time.Microsecond, 0, 0, 0, 0, 0, 450 * time.Microsecond}}
	r := &pipelineReport{settings: pipelineSettings{clients: 4, rounds: 1}, pipeline: []pipelineMeasurement{m}, ceilings: []pipelineCeilings{c}}
	var out bytes.Buffer
	if err := r.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"commands/s", "command latency p50", "command latency p99", "command latency p999",
		"end-to-end p50", "end-to-end p99", "relay events/s", "projector events/s", "reader queries/s",
		"raw single-row INSERT/s", "redis-benchmark", "bare net/http handler", "NOT VALID", "2 requests failed", "0.10",
		"CPU per command (µs)", "  load generator    ", "         100", "\n  writer API      ", "          50",
		"bench process (all of the above)    ", "         300", "redis-server", "rest of the machine", "machine total"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRedisCeilingWithoutRedisBenchmark measures the go-redis fallback of
// the Redis ceiling and checks that it cleans up.
func TestRedisCeilingWithoutRedisBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against Redis")
	}
	addr := os.Getenv("TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	prefix := fmt.Sprintf("bench-ceiling-test-%d", time.Now().UnixNano())
	s := projectorSettings{accounts: 50, ceilingRequests: 2000, ceilingPipeline: 32, ceilingClients: 4}
	res, err := measureCeilingGoRedis(t.Context(), addr, s, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if res.eventsPerSecond <= 0 || res.callsPerSecond != res.eventsPerSecond {
		t.Errorf("implausible ceiling %+v", res)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if left, _, err := rdb.Scan(t.Context(), 0, prefix+"*", 1000).Result(); err != nil || len(left) > 0 {
		t.Errorf("keys left under %q: %v (err %v)", prefix, left, err)
	}
}

// TestBenchWriterVerifiesTokens: the writer the benchmarks measure
// authenticates for real (jwt mode, not off): no token and a token of
// another key are refused, an account's owner is let in, and another
// principal is kept out of it.
func TestBenchWriterVerifiesTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("runs against Postgres")
	}
	a, err := newBenchAuth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w, err := startWriter(t.Context(), testenv.PostgresURL(t), a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.close() })
	stranger, err := auth.NewSigner(benchIssuer, benchAudience)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := stranger.Token("bench-owner-00", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := newCommandClient(w.baseURL, 1, 0, a)
	defer c.close()
	open := []byte(`{"id":"acc-1","owner":"bench","currency":"EUR","initialDeposit":100}`)
	for _, tt := range []struct {
		name, path, authorization string
		body                      []byte
		want                      string // in the error; "" for success
	}{
		{"no token", "/v1/accounts", "", open, "401"},
		{"a token of another key", "/v1/accounts", "Bearer " + forged, open, "401"},
		{"the owner", "/v1/accounts", a.owner(0), open, ""},
		{"another principal", "/v1/accounts/acc-1/activate", a.owner(1), nil, "403"},
		{"the owner again", "/v1/accounts/acc-1/activate", a.owner(0), nil, ""},
	} {
		err := c.post(t.Context(), w.baseURL+tt.path, tt.authorization, tt.body)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: POST %s: %v, want %q", tt.name, tt.path, err, tt.want)
		}
	}
}

// checkPipelineCPU checks a round's CPU table: every part of this process
// measured, the parts adding up to the process, the busiest parts seen by
// the profile, and Postgres and the machine seen. The load generator is not
// checked here: in this test's one-second window it is ~2 samples of the
// profile, and may be none.
func checkPipelineCPU(t *testing.T, c jsonCPU) {
	t.Helper()
	if c.SplitError != "" {
		t.Fatalf("no split of the process: %s", c.SplitError)
	}
	byName := make(map[string]jsonCPUPart)
	for _, p := range c.Parts {
		byName[p.Name] = p
		t.Logf("%-24s %8.4f s  %7.1f µs/command", p.Name, p.CPUSeconds, p.MicrosecondsPerCommand)
	}
	t.Logf("%d commands, %d profile samples", c.AcceptedCommands, c.ProfileSamples)
	var sum float64
	for _, name := range []string{"loadGenerator", "writerAPI", "relay", "transfersProcessManager", "kafka", "projectors", "reader", "other"} {
		p, ok := byName[name]
		if !ok {
			t.Fatalf("no %s in %+v", name, c.Parts)
		}
		sum += p.CPUSeconds
	}
	process := byName["benchProcess"].CPUSeconds
	if process <= 0 || math.Abs(sum-process) > 1e-6*process {
		t.Errorf("the parts add up to %.6f s, the process used %.6f s", sum, process)
	}
	// Postgres and the machine are read from /proc; the process's parts
	// from profile samples (100 a second of CPU), of which a machine loaded
	// by other tests may give a short round too few for the reader's part.
	measured := []string{"postgres", "machine"}
	if c.ProfileSamples >= 200 {
		measured = append(measured, "projectors", "reader")
	}
	for _, name := range measured {
		if p := byName[name]; p.CPUSeconds <= 0 || p.MicrosecondsPerCommand <= 0 {
			t.Errorf("%s: %+v, want some CPU (%d profile samples)", name, p, c.ProfileSamples)
		}
	}
	if c.AcceptedCommands == 0 || c.ProfileSamples == 0 || c.PostgresProcesses == 0 {
		t.Errorf("implausible CPU table: %+v", c)
	}
}
