package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// endToEndMethod says how the end-to-end latency is measured; the header
// and the JSON carry it.
const endToEndMethod = "a random --read-share of the accepted commands is followed at once, by the same client, by " +
	"GET /v1/accounts/{id} (or /v1/transfers/{id}) with min_version = the writer's ETag version: the reader waits " +
	"for the projection (reader.DefaultConfig: up to 2s, polling Redis after 1, 2, 4, 8, then every 16 ms), and on a " +
	"503 stale answer the client asks again; end-to-end = the writer's answer received -> the reader's 200 received " +
	"(relay poll + Kafka + projector + the reader's polling granularity + one HTTP round trip)"

// pipelineReport collects every round and prints the medians.
type pipelineReport struct {
	settings              pipelineSettings
	postgresVersion       string
	redisVersion          string
	keyPrefix             string
	loadBefore, loadAfter string
	pipeline              []pipelineMeasurement
	ceilings              []pipelineCeilings
}

func (m pipelineMeasurement) problems() string {
	var s string
	if m.refused > 0 {
		s += fmt.Sprintf("  %d refused (insufficient funds)", m.refused)
	}
	if m.stale > 0 {
		s += fmt.Sprintf("  %d stale answers (asked again)", m.stale)
	}
	if m.errors > 0 {
		s += fmt.Sprintf("  %d ERRORS, first: %v", m.errors, m.firstErr)
	}
	return s
}

// quantile is the nearest-rank q-quantile of sorted latencies, 0 if none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	return measurement{latencies: sorted}.quantile(q)
}

// invalid says why the run does not measure a working pipeline, "" if it
// does.
func (r *pipelineReport) invalid() string {
	var bad []string
	for i, m := range r.pipeline {
		if m.errors > 0 {
			bad = append(bad, fmt.Sprintf("pipeline round %d: %d requests failed, first: %v", i+1, m.errors, m.firstErr))
		}
	}
	for i, c := range r.ceilings {
		for _, side := range []struct {
			name string
			m    measurement
		}{{"raw INSERT", c.raw}, {"bare HTTP", c.bare}} {
			if side.m.errors > 0 {
				bad = append(bad, fmt.Sprintf("ceilings round %d, %s: %d failed, first: %v", i+1, side.name, side.m.errors, side.m.firstErr))
			}
		}
	}
	return strings.Join(bad, "; ")
}

// pipelineFigure is one row of the report: a median of the pipeline's
// rounds beside the median of its ceiling's rounds.
type pipelineFigure struct {
	name         string // in the JSON
	label        string
	latency      bool // seconds, else per second
	value        float64
	ceilingLabel string
	ceiling      float64
}

// ratio is value / ceiling: a share of the ceiling for a rate, a multiple
// of the floor for a latency.
func (f pipelineFigure) ratio() float64 {
	if f.ceiling == 0 {
		return 0
	}
	return f.value / f.ceiling
}

func (r *pipelineReport) redisCeilingLabel() string {
	if r.settings.redisCeiling == "go" {
		return "Redis EVALSHA events/s, go-redis pipelines of 32 on 8 connections"
	}
	return "Redis EVALSHA events/s, redis-benchmark -P 32 -c 8"
}

// figures are the report's rows, in order.
func (r *pipelineReport) figures() []pipelineFigure {
	p, c := r.pipeline, r.ceilings
	rate := func(f func(pipelineMeasurement) float64) float64 { return median(p, f) }
	lat := func(f func(pipelineMeasurement) []time.Duration, q float64) float64 {
		return median(p, func(m pipelineMeasurement) time.Duration { return quantile(f(m), q) }).Seconds()
	}
	ceilingLat := func(f func(pipelineCeilings) measurement, q float64) float64 {
		return median(c, func(x pipelineCeilings) time.Duration { return f(x).quantile(q) }).Seconds()
	}
	raw := func(x pipelineCeilings) measurement { return x.raw }
	bare := func(x pipelineCeilings) measurement { return x.bare }
	commands := func(m pipelineMeasurement) []time.Duration { return m.commands }
	visible := func(m pipelineMeasurement) []time.Duration { return m.visible }
	n := r.settings.clients
	return []pipelineFigure{
		{"commandsPerSecond", "commands/s (accepted)", false,
			rate(func(m pipelineMeasurement) float64 { return m.commandsPerSecond }),
			fmt.Sprintf("raw single-row INSERT/s, %d connections", n),
			median(c, func(x pipelineCeilings) float64 { return x.raw.perSecond() })},
		{"commandP50Seconds", "command latency p50", true, lat(commands, 0.5), "raw INSERT p50", ceilingLat(raw, 0.5)},
		{"commandP99Seconds", "command latency p99", true, lat(commands, 0.99), "raw INSERT p99", ceilingLat(raw, 0.99)},
		{"commandP999Seconds", "command latency p999", true, lat(commands, 0.999), "raw INSERT p999", ceilingLat(raw, 0.999)},
		{"endToEndP50Seconds", "end-to-end p50 (writer's answer -> visible in the reader)", true, lat(visible, 0.5),
			"bare HTTP round trip p50", ceilingLat(bare, 0.5)},
		{"endToEndP99Seconds", "end-to-end p99", true, lat(visible, 0.99), "bare HTTP round trip p99", ceilingLat(bare, 0.99)},
		{"relayEventsPerSecond", "relay events/s (acknowledged by Kafka)", false,
			rate(pipelineMeasurement.relayPerSecond),
			"events appended/s, same window (the relay cannot pass it)",
			rate(pipelineMeasurement.appendedPerSecond)},
		{"projectorEventsPerSecond", fmt.Sprintf("projector events/s (applied, %d projections summed)", len(pipelineProjections())), false,
			rate(pipelineMeasurement.projectorPerSecond),
			r.redisCeilingLabel(),
			median(c, func(x pipelineCeilings) float64 { return x.redis.eventsPerSecond })},
		{"readerQueriesPerSecond", "reader queries/s", false,
			rate(func(m pipelineMeasurement) float64 { return m.queriesPerSecond }),
			fmt.Sprintf("bare net/http handler req/s, %d clients", n),
			median(c, func(x pipelineCeilings) float64 { return x.bare.perSecond() })},
	}
}

// writeHeader states the machine and what is measured.
func (r *pipelineReport) writeHeader(w io.Writer) {
	s := r.settings
	fmt.Fprintf(w, "Tributary pipeline benchmark\n")
	fmt.Fprintf(w, "  go        %s %s/%s, GOMAXPROCS %d, nproc %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(w, "  postgres  %s\n", r.postgresVersion)
	fmt.Fprintf(w, "  redis     %s, key prefix %s (deleted at the end)\n", r.redisVersion, r.keyPrefix)
	fmt.Fprintf(w, "  pipeline  in this process, default settings: writer API + relay + transfers process manager (as cmd/writer serve),\n")
	fmt.Fprintf(w, "            %d projectors (as cmd/projector run), reader API (as cmd/reader); Kafka = in-process kfake, %d partitions a topic\n",
		len(pipelineProjections()), s.partitions)
	fmt.Fprintf(w, "  load      %d Go HTTP clients over %d accounts: %.0f%% transfers, %.0f%% deposits, %.0f%% withdrawals;\n",
		s.clients, s.accounts, s.transferShare*100, (1-s.transferShare)*pipelineDepositShare*100, (1-s.transferShare)*(1-pipelineDepositShare)*100)
	fmt.Fprintf(w, "            %.0f%% of the accepted commands followed by a read of what they wrote\n", s.readShare*100)
	fmt.Fprintf(w, "  auth      %s\n", authMethod)
	fmt.Fprintf(w, "  visible   %s\n", endToEndMethod)
	fmt.Fprintf(w, "  ceilings  with the pipeline idle, at the same concurrency: raw autocommit single-row INSERTs (jsonb) into the same database;\n")
	fmt.Fprintf(w, "            %s of the summary step's work for one event;\n", r.redisCeilingLabel())
	fmt.Fprintf(w, "            a trivial net/http handler (a summary-sized JSON body) driven by the same Go clients (token sent, not verified)\n")
	fmt.Fprintf(w, "  rounds    %d, each %s warm-up + %s measured, pipeline and ceilings alternating which goes first\n", s.rounds, s.warmup, s.duration)
	fmt.Fprintf(w, "  cpu       per command accepted in each measured window: this process by getrusage, split by a CPU profile of the window\n")
	fmt.Fprintf(w, "            (each part's goroutines labelled component=<part>); every postgres and redis-server process by /proc/<pid>/stat;\n")
	fmt.Fprintf(w, "            the machine's busy time by /proc/stat\n")
	fmt.Fprintf(w, "  note      the load generator, the pipeline, Postgres and Redis share this machine's CPUs\n\n")
}

// writeTable prints the medians as one table, and the problems loudly.
func (r *pipelineReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\nmedian of %d rounds; load average %s before, %s after\n", r.settings.rounds, r.loadBefore, r.loadAfter)
	fmt.Fprintf(w, "(ratio: pipeline / ceiling for a rate; for a latency, how many times its floor)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "figure\tpipeline\tceiling, same run\t\tratio\n")
	for _, f := range r.figures() {
		if f.latency {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fx\n", f.label, ms(time.Duration(f.value*float64(time.Second))),
				f.ceilingLabel, ms(time.Duration(f.ceiling*float64(time.Second))), f.ratio())
		} else {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%.0f\t%.2f\n", f.label, f.value, f.ceilingLabel, f.ceiling, f.ratio())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := r.totals()
	fmt.Fprintf(w, "\nin the measured windows: %d deposits, %d withdrawals, %d transfers accepted; %d refused for insufficient funds;\n",
		t.accepted[kindDeposit], t.accepted[kindWithdrawal], t.accepted[kindTransfer], t.refused)
	fmt.Fprintf(w, "busy cores in the windows (median): this process %.2f, the machine %.2f of %d\n",
		median(r.pipeline, func(m pipelineMeasurement) float64 { p, _ := m.cores(); return p }),
		median(r.pipeline, func(m pipelineMeasurement) float64 { _, c := m.cores(); return c }), runtime.NumCPU())
	fmt.Fprintf(w, "%d end-to-end samples; %d stale answers asked again. Whole run: %d of %d transfers failed (insufficient funds), %.0f duplicate deliveries skipped\n",
		t.samples, t.stale, t.transfersFailed, t.transfersRequested, t.duplicates)
	r.writeCPUTable(w)
	if bad := r.invalid(); bad != "" {
		fmt.Fprintf(w, "!!! REQUESTS FAILED: THESE NUMBERS ARE NOT VALID !!!\n  %s\n", bad)
		return nil
	}
	fmt.Fprintln(w, "errors: 0")
	return nil
}

// pipelineTotals sum the rounds.
type pipelineTotals struct {
	accepted                            [kinds]int
	refused, stale, errors, samples     int
	transfersRequested, transfersFailed int64
	duplicates                          float64
}

func (r *pipelineReport) totals() pipelineTotals {
	var t pipelineTotals
	for _, m := range r.pipeline {
		for k := range kinds {
			t.accepted[k] += m.accepted[k]
		}
		t.refused += m.refused
		t.stale += m.stale
		t.errors += m.errors
		t.samples += len(m.visible)
	}
	if n := len(r.pipeline); n > 0 {
		last := r.pipeline[n-1].settled
		t.transfersRequested, t.transfersFailed = last.requested, last.failed
		for _, d := range last.duplicates {
			t.duplicates += d
		}
	}
	return t
}

// jsonPipelineReport is the --json form of the report. Latencies are in
// seconds.
type jsonPipelineReport struct {
	GoVersion         string       `json:"goVersion"`
	GOMAXPROCS        int          `json:"gomaxprocs"`
	NProc             int          `json:"nproc"`
	PostgresVersion   string       `json:"postgresVersion"`
	RedisVersion      string       `json:"redisVersion"`
	RedisKeyPrefix    string       `json:"redisKeyPrefix"`
	Clients           int          `json:"clients"`
	Accounts          int          `json:"accounts"`
	Rounds            int          `json:"rounds"`
	WarmupSeconds     float64      `json:"warmupSeconds"`
	DurationSeconds   float64      `json:"durationSeconds"`
	ReadShare         float64      `json:"readShare"`
	TransferShare     float64      `json:"transferShare"`
	Partitions        int          `json:"partitions"`
	Projections       []string     `json:"projections"`
	RedisCeiling      string       `json:"redisCeiling"`
	EndToEndMethod    string       `json:"endToEndMethod"`
	LoadAverageBefore string       `json:"loadAverageBefore"`
	LoadAverageAfter  string       `json:"loadAverageAfter"`
	Figures           []jsonFigure `json:"figures"`
	Deposits          int          `json:"deposits"`
	Withdrawals       int          `json:"withdrawals"`
	Transfers         int          `json:"transfers"`
	Refused           int          `json:"refused"`
	EndToEndSamples   int          `json:"endToEndSamples"`
	Stale             int          `json:"stale"`
	Errors            int          `json:"errors"`
	TransfersFailed   int64        `json:"transfersFailed"`
	Duplicates        float64      `json:"duplicates"`
	// CPUPerCommand is the CPU table: each part's median over the rounds.
	CPUPerCommand  []jsonCPUMedian            `json:"cpuPerCommand"`
	PipelineRounds []jsonPipelineRound        `json:"pipelineRounds"`
	CeilingRounds  []jsonPipelineCeilingRound `json:"ceilingRounds"`
	Invalid        string                     `json:"invalid,omitempty"`
}

// jsonFigure is one row: the pipeline's median, its ceiling's median, and
// their ratio.
type jsonFigure struct {
	Name         string  `json:"name"`
	Label        string  `json:"label"`
	Value        float64 `json:"value"`
	Ceiling      string  `json:"ceiling"`
	CeilingValue float64 `json:"ceilingValue"`
	Ratio        float64 `json:"ratio"`
}

type jsonPipelineRound struct {
	CommandsPerSecond  float64 `json:"commandsPerSecond"`
	CommandP50Seconds  float64 `json:"commandP50Seconds"`
	CommandP99Seconds  float64 `json:"commandP99Seconds"`
	CommandP999Seconds float64 `json:"commandP999Seconds"`
	EndToEndP50Seconds float64 `json:"endToEndP50Seconds"`
	EndToEndP99Seconds float64 `json:"endToEndP99Seconds"`
	// The end-to-end latency of transfer requests alone (TransferRequested
	// visible at /v1/transfers/{id}).
	TransferEndToEndP50Seconds float64 `json:"transferEndToEndP50Seconds"`
	TransferEndToEndP99Seconds float64 `json:"transferEndToEndP99Seconds"`
	RelayEventsPerSecond       float64 `json:"relayEventsPerSecond"`
	AppendedEventsPerSecond    float64 `json:"appendedEventsPerSecond"`
	ProjectorEventsPerSecond   float64 `json:"projectorEventsPerSecond"`
	ReaderQueriesPerSecond     float64 `json:"readerQueriesPerSecond"`
	SettleSeconds              float64 `json:"settleSeconds"`
	// ProcessBusyCores and MachineBusyCores are the CPUs kept busy on
	// average in the window by this process (load generator and pipeline)
	// and by the whole machine.
	ProcessBusyCores float64 `json:"processBusyCores"`
	MachineBusyCores float64 `json:"machineBusyCores"`
	Refused          int     `json:"refused"`
	Stale            int     `json:"stale"`
	Errors           int     `json:"errors"`
	FirstError       string  `json:"firstError,omitempty"`
	// CPU is where the CPU time of the measured window went, per part.
	CPU jsonCPU `json:"cpu"`
}

type jsonPipelineCeilingRound struct {
	RawInsertsPerSecond   float64 `json:"rawInsertsPerSecond"`
	RawP50Seconds         float64 `json:"rawP50Seconds"`
	RawP99Seconds         float64 `json:"rawP99Seconds"`
	RedisEventsPerSecond  float64 `json:"redisEventsPerSecond"`
	BareRequestsPerSecond float64 `json:"bareRequestsPerSecond"`
	BareP50Seconds        float64 `json:"bareP50Seconds"`
	BareP99Seconds        float64 `json:"bareP99Seconds"`
	Errors                int     `json:"errors"`
}

// writeJSON prints the report as one indented JSON document.
func (r *pipelineReport) writeJSON(w io.Writer) error {
	s := r.settings
	t := r.totals()
	out := jsonPipelineReport{
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NProc: runtime.NumCPU(),
		PostgresVersion: r.postgresVersion, RedisVersion: r.redisVersion, RedisKeyPrefix: r.keyPrefix,
		Clients: s.clients, Accounts: s.accounts, Rounds: s.rounds,
		WarmupSeconds: s.warmup.Seconds(), DurationSeconds: s.duration.Seconds(),
		ReadShare: s.readShare, TransferShare: s.transferShare, Partitions: s.partitions,
		RedisCeiling: r.redisCeilingLabel(), EndToEndMethod: endToEndMethod,
		LoadAverageBefore: r.loadBefore, LoadAverageAfter: r.loadAfter,
		Deposits: t.accepted[kindDeposit], Withdrawals: t.accepted[kindWithdrawal], Transfers: t.accepted[kindTransfer],
		Refused: t.refused, EndToEndSamples: t.samples, Stale: t.stale, Errors: t.errors,
		TransfersFailed: t.transfersFailed, Duplicates: t.duplicates, Invalid: r.invalid(), CPUPerCommand: r.jsonCPUMedians(),
		Figures: []jsonFigure{}, PipelineRounds: []jsonPipelineRound{}, CeilingRounds: []jsonPipelineCeilingRound{},
	}
	for _, p := range pipelineProjections() {
		out.Projections = append(out.Projections, p.Name())
	}
	for _, f := range r.figures() {
		out.Figures = append(out.Figures, jsonFigure{Name: f.name, Label: f.label, Value: f.value, Ceiling: f.ceilingLabel, CeilingValue: f.ceiling, Ratio: f.ratio()})
	}
	for _, m := range r.pipeline {
		jr := jsonPipelineRound{
			CommandsPerSecond: m.commandsPerSecond,
			CommandP50Seconds: quantile(m.commands, 0.5).Seconds(), CommandP99Seconds: quantile(m.commands, 0.99).Seconds(),
			CommandP999Seconds: quantile(m.commands, 0.999).Seconds(),
			EndToEndP50Seconds: quantile(m.visible, 0.5).Seconds(), EndToEndP99Seconds: quantile(m.visible, 0.99).Seconds(),
			TransferEndToEndP50Seconds: quantile(m.visibleTransfers, 0.5).Seconds(), TransferEndToEndP99Seconds: quantile(m.visibleTransfers, 0.99).Seconds(),
			RelayEventsPerSecond: m.relayPerSecond(), AppendedEventsPerSecond: m.appendedPerSecond(),
			ProjectorEventsPerSecond: m.projectorPerSecond(), ReaderQueriesPerSecond: m.queriesPerSecond,
			SettleSeconds: m.settleTime.Seconds(), Refused: m.refused, Stale: m.stale, Errors: m.errors, CPU: m.jsonCPU(),
		}
		jr.ProcessBusyCores, jr.MachineBusyCores = m.cores()
		if m.firstErr != nil {
			jr.FirstError = m.firstErr.Error()
		}
		out.PipelineRounds = append(out.PipelineRounds, jr)
	}
	for _, c := range r.ceilings {
		out.CeilingRounds = append(out.CeilingRounds, jsonPipelineCeilingRound{
			RawInsertsPerSecond: c.raw.perSecond(), RawP50Seconds: c.raw.quantile(0.5).Seconds(), RawP99Seconds: c.raw.quantile(0.99).Seconds(),
			RedisEventsPerSecond:  c.redis.eventsPerSecond,
			BareRequestsPerSecond: c.bare.perSecond(), BareP50Seconds: c.bare.quantile(0.5).Seconds(), BareP99Seconds: c.bare.quantile(0.99).Seconds(),
			Errors: c.raw.errors + c.bare.errors,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
