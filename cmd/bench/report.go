package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"
)

// report collects every round's measurements and prints, per level, the
// median of the rounds.
type report struct {
	settings        settings
	postgresVersion string
	levels          []*levelResults // in the order of settings.clients
}

// levelResults are the rounds of one concurrency level.
type levelResults struct {
	clients     int
	writer, raw []phaseResult
}

// phaseResult is one measured phase, reduced to what the report shows.
type phaseResult struct {
	round            int
	perSecond        float64
	p50, p99, p999   time.Duration
	completed        int
	errors, rejected int
	firstErr         string
}

func newReport(s settings, postgresVersion string) *report {
	r := &report{settings: s, postgresVersion: postgresVersion}
	for _, n := range s.clients {
		r.levels = append(r.levels, &levelResults{clients: n})
	}
	return r
}

func newPhaseResult(round int, m measurement) phaseResult {
	p := phaseResult{
		round: round, perSecond: m.perSecond(),
		p50: m.quantile(0.50), p99: m.quantile(0.99), p999: m.quantile(0.999),
		completed: len(m.latencies), errors: m.errors, rejected: m.rejected,
	}
	if m.firstErr != nil {
		p.firstErr = m.firstErr.Error()
	}
	return p
}

func (r *report) level(clients int) *levelResults {
	i := slices.IndexFunc(r.levels, func(l *levelResults) bool { return l.clients == clients })
	return r.levels[i]
}

func (r *report) addWriter(round, clients int, m measurement) {
	l := r.level(clients)
	l.writer = append(l.writer, newPhaseResult(round, m))
}

func (r *report) addRaw(round, clients int, m measurement) {
	l := r.level(clients)
	l.raw = append(l.raw, newPhaseResult(round, m))
}

// errors counts the failed operations of the whole run.
func (r *report) errors() int {
	n := 0
	for _, l := range r.levels {
		for _, p := range slices.Concat(l.writer, l.raw) {
			n += p.errors
		}
	}
	return n
}

// levelSummary is one row of the report: medians over the rounds.
type levelSummary struct {
	clients          int
	writerPerSecond  float64
	p50, p99, p999   time.Duration
	rawPerSecond     float64
	ratio            float64
	errors, rejected int
}

func (l *levelResults) summary() levelSummary {
	s := levelSummary{
		clients:         l.clients,
		writerPerSecond: median(l.writer, func(p phaseResult) float64 { return p.perSecond }),
		p50:             median(l.writer, func(p phaseResult) time.Duration { return p.p50 }),
		p99:             median(l.writer, func(p phaseResult) time.Duration { return p.p99 }),
		p999:            median(l.writer, func(p phaseResult) time.Duration { return p.p999 }),
		rawPerSecond:    median(l.raw, func(p phaseResult) float64 { return p.perSecond }),
	}
	if s.rawPerSecond > 0 {
		s.ratio = s.writerPerSecond / s.rawPerSecond
	}
	for _, p := range slices.Concat(l.writer, l.raw) {
		s.errors += p.errors
		s.rejected += p.rejected
	}
	return s
}

// median returns the median of f over results; the mean of the middle two
// for an even count.
func median[R any, T ~int64 | ~float64](results []R, f func(R) T) T {
	if len(results) == 0 {
		return 0
	}
	xs := make([]T, len(results))
	for i, r := range results {
		xs[i] = f(r)
	}
	slices.SortFunc(xs, cmp.Compare)
	mid := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[mid]
	}
	return (xs[mid-1] + xs[mid]) / 2
}

// writeHeader states the machine and what is measured.
func (r *report) writeHeader(w io.Writer) {
	s := r.settings
	fmt.Fprintf(w, "Tributary writer benchmark\n")
	fmt.Fprintf(w, "  go        %s %s/%s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "  nproc     %d\n", runtime.NumCPU())
	fmt.Fprintf(w, "  postgres  %s\n", r.postgresVersion)
	fmt.Fprintf(w, "  writer    in-process as cmd/writer builds it (pgxpool MaxConns %d, snapshots every 100 events, noop tracer),\n", writerMaxConns)
	fmt.Fprintf(w, "            over real HTTP/1.1 keep-alive connections on 127.0.0.1, one per client\n")
	fmt.Fprintf(w, "  auth      %s\n", authMethod)
	fmt.Fprintf(w, "  load      %d accounts; each command picks one at random: %.0f%% deposits, %.0f%% withdrawals\n",
		s.accounts, depositShare*100, (1-depositShare)*100)
	generator := "Go net/http clients in this process"
	if s.load == "wrk" {
		generator = "wrk, a separate process (p999 from its HdrHistogram)"
	}
	fmt.Fprintf(w, "  generator %s\n", generator)
	fmt.Fprintf(w, "  ceiling   autocommit single-row INSERT with a jsonb payload, one pgx connection per client\n")
	fmt.Fprintf(w, "  rounds    %d, each level %s warm-up + %s measured, writer and raw alternating which goes first\n",
		s.rounds, s.warmup, s.duration)
	fmt.Fprintf(w, "  note      the load generator, the writer and Postgres share this machine's CPUs\n\n")
}

// writeTable prints the medians as a table, and the errors loudly.
func (r *report) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\nmedian of %d rounds (ratio = median writer cmd/s / median raw insert/s):\n\n", r.settings.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "clients\twriter cmd/s\tp50\tp99\tp999\traw insert/s\tratio writer/raw\t\n")
	var errors, rejected int
	for _, l := range r.levels {
		s := l.summary()
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%.0f\t%.2f\t\n",
			s.clients, s.writerPerSecond, ms(s.p50), ms(s.p99), ms(s.p999), s.rawPerSecond, s.ratio)
		errors += s.errors
		rejected += s.rejected
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if rejected > 0 {
		fmt.Fprintf(w, "%d commands were rejected with 422 insufficient funds; with this mix none should be\n", rejected)
	}
	if errors == 0 {
		fmt.Fprintln(w, "errors: 0")
		return nil
	}
	fmt.Fprintf(w, "!!! %d OPERATIONS FAILED: THESE NUMBERS ARE NOT VALID !!!\n", errors)
	for _, l := range r.levels {
		for _, side := range []struct {
			name    string
			results []phaseResult
		}{{"writer", l.writer}, {"raw", l.raw}} {
			for _, p := range side.results {
				if p.errors > 0 {
					fmt.Fprintf(w, "  clients %d, round %d, %s: %d errors, first: %s\n", l.clients, p.round, side.name, p.errors, p.firstErr)
				}
			}
		}
	}
	return nil
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// jsonReport is the --json form of the report. Latencies are in seconds.
type jsonReport struct {
	GoVersion       string      `json:"goVersion"`
	GOMAXPROCS      int         `json:"gomaxprocs"`
	NProc           int         `json:"nproc"`
	PostgresVersion string      `json:"postgresVersion"`
	Accounts        int         `json:"accounts"`
	Rounds          int         `json:"rounds"`
	WarmupSeconds   float64     `json:"warmupSeconds"`
	DurationSeconds float64     `json:"durationSeconds"`
	Levels          []jsonLevel `json:"levels"`
	Errors          int         `json:"errors"`
}

type jsonLevel struct {
	Clients                 int         `json:"clients"`
	WriterCommandsPerSecond float64     `json:"writerCommandsPerSecond"`
	P50Seconds              float64     `json:"p50Seconds"`
	P99Seconds              float64     `json:"p99Seconds"`
	P999Seconds             float64     `json:"p999Seconds"`
	RawInsertsPerSecond     float64     `json:"rawInsertsPerSecond"`
	RatioWriterToRaw        float64     `json:"ratioWriterToRaw"`
	Errors                  int         `json:"errors"`
	Rejected                int         `json:"rejected"`
	Writer                  []jsonPhase `json:"writerRounds"`
	Raw                     []jsonPhase `json:"rawRounds"`
}

type jsonPhase struct {
	Round       int     `json:"round"`
	PerSecond   float64 `json:"perSecond"`
	P50Seconds  float64 `json:"p50Seconds"`
	P99Seconds  float64 `json:"p99Seconds"`
	P999Seconds float64 `json:"p999Seconds"`
	Completed   int     `json:"completed"`
	Errors      int     `json:"errors"`
	Rejected    int     `json:"rejected"`
	FirstError  string  `json:"firstError,omitempty"`
}

func toJSONPhases(results []phaseResult) []jsonPhase {
	out := make([]jsonPhase, len(results))
	for i, p := range results {
		out[i] = jsonPhase{
			Round: p.round, PerSecond: p.perSecond,
			P50Seconds: p.p50.Seconds(), P99Seconds: p.p99.Seconds(), P999Seconds: p.p999.Seconds(),
			Completed: p.completed, Errors: p.errors, Rejected: p.rejected, FirstError: p.firstErr,
		}
	}
	return out
}

// writeJSON prints the report as one indented JSON document.
func (r *report) writeJSON(w io.Writer) error {
	s := r.settings
	out := jsonReport{
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NProc: runtime.NumCPU(),
		PostgresVersion: r.postgresVersion, Accounts: s.accounts, Rounds: s.rounds,
		WarmupSeconds: s.warmup.Seconds(), DurationSeconds: s.duration.Seconds(),
		Levels: []jsonLevel{}, Errors: r.errors(),
	}
	for _, l := range r.levels {
		sum := l.summary()
		out.Levels = append(out.Levels, jsonLevel{
			Clients: sum.clients, WriterCommandsPerSecond: sum.writerPerSecond,
			P50Seconds: sum.p50.Seconds(), P99Seconds: sum.p99.Seconds(), P999Seconds: sum.p999.Seconds(),
			RawInsertsPerSecond: sum.rawPerSecond, RatioWriterToRaw: sum.ratio,
			Errors: sum.errors, Rejected: sum.rejected,
			Writer: toJSONPhases(l.writer), Raw: toJSONPhases(l.raw),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
