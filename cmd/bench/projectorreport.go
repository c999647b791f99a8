package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// The acceptance goal of the projector benchmark, for the summary
// projection: events/s, and the share of the event-like EVALSHA ceiling.
const (
	goalEventsPerSecond = 100_000
	goalRatio           = 0.40
)

// projectorReport collects every round and prints the medians.
type projectorReport struct {
	settings              projectorSettings
	redisVersion          string
	keyPrefix             string
	loadBefore, loadAfter string
	runs                  map[string][]projectionRun // by projection set
	ceilings              map[string][]ceilingResult // by ceiling kind
}

func newProjectorReport(s projectorSettings, redisVersion string) *projectorReport {
	return &projectorReport{
		settings: s, redisVersion: redisVersion,
		runs: make(map[string][]projectionRun), ceilings: make(map[string][]ceilingResult),
	}
}

func (r *projectorReport) addProjections(set string, run projectionRun) {
	r.runs[set] = append(r.runs[set], run)
}

func (r *projectorReport) addCeiling(kind ceilingKind, c ceilingResult) {
	r.ceilings[kind.name] = append(r.ceilings[kind.name], c)
}

// invalid says why the run does not measure a working projector, "" if it does.
func (r *projectorReport) invalid() string {
	var bad []string
	for _, set := range r.settings.sets {
		for _, run := range r.runs[set.name] {
			if p := run.problems(); p != "" {
				bad = append(bad, fmt.Sprintf("%s round %d:%s", set.name, run.round, p))
			}
		}
	}
	return strings.Join(bad, "; ")
}

// ceilingSummary is the median of one ceiling's rounds.
type ceilingSummary struct {
	callsPerSecond, eventsPerSecond float64
}

func (r *projectorReport) ceiling(kind ceilingKind) ceilingSummary {
	rs := r.ceilings[kind.name]
	return ceilingSummary{
		callsPerSecond:  median(rs, func(c ceilingResult) float64 { return c.callsPerSecond }),
		eventsPerSecond: median(rs, func(c ceilingResult) float64 { return c.eventsPerSecond }),
	}
}

// projectionSummary is one row of the report: medians over the rounds.
type projectionSummary struct {
	name             string
	perSecond        float64
	elapsed, startup time.Duration
	// per event of the topic, in µs: this process's CPU, the Redis
	// server's CPU, and the time Redis spent inside the scripts.
	goCPU, redisCPU, redisScript float64
	// ratio is perSecond / the event-like ceiling (one event per call);
	// batchRatio is against the batched one.
	ratio, batchRatio float64
}

func (r *projectorReport) summary(set projectionSet) projectionSummary {
	rs := r.runs[set.name]
	s := projectionSummary{
		name:      set.name,
		perSecond: median(rs, func(p projectionRun) float64 { return p.perSecond() }),
		elapsed:   median(rs, func(p projectionRun) time.Duration { return p.elapsed }),
		startup:   median(rs, func(p projectionRun) time.Duration { return p.startup }),
		goCPU:     median(rs, projectionRun.goCPUPerEvent),
		redisCPU:  median(rs, projectionRun.redisCPUPerEvent),
		redisScript: median(rs, func(p projectionRun) float64 {
			return float64(p.redis.evalDuration.Microseconds()) / float64(p.events)
		}),
	}
	if c := r.ceiling(ceilingEvent).eventsPerSecond; c > 0 {
		s.ratio = s.perSecond / c
	}
	if c := r.ceiling(ceilingBatch).eventsPerSecond; c > 0 {
		s.batchRatio = s.perSecond / c
	}
	return s
}

// goalMet tells whether the summary projection reached both goals.
func (s projectionSummary) goalMet() bool {
	return s.perSecond >= goalEventsPerSecond && s.ratio >= goalRatio
}

// writeHeader states the machine and what is measured.
func (r *projectorReport) writeHeader(w io.Writer) {
	s := r.settings
	fmt.Fprintf(w, "Tributary projector benchmark\n")
	fmt.Fprintf(w, "  go        %s %s/%s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "  nproc     %d, load average %s\n", runtime.NumCPU(), loadAverage())
	fmt.Fprintf(w, "  redis     %s at %s (shared: the CPU figures are the whole server's)\n", r.redisVersion, s.redisAddr)
	fmt.Fprintf(w, "  topic     %d account events over %d accounts on %d partitions of an in-process kfake, filled before measuring\n",
		s.events, s.accounts, s.partitions)
	fmt.Fprintf(w, "  projector projector.New/Run as deployed (DefaultConfig, BatchSize %d), each build under a fresh Redis prefix and\n", s.batchSize)
	fmt.Fprintf(w, "            consumer group, timed from Run until every partition's stored position reached the end offset\n")
	fmt.Fprintf(w, "  ceilings  redis-benchmark -P %d -c %d EVALSHA: %q; and a script doing the summary step's work for a deposit\n",
		s.ceilingPipeline, s.ceilingClients, trivialScript)
	fmt.Fprintf(w, "            (HGET version, HINCRBY balance, HSET version+updatedAt, HSET version) with 1 and with %d events a call\n",
		ceilingBatch.eventsPerCall)
	fmt.Fprintf(w, "  rounds    %d, projector and ceilings alternating which goes first\n", s.rounds)
	fmt.Fprintf(w, "  note      the projector, kfake, Redis and redis-benchmark share this machine's CPUs\n\n")
}

// writeTable prints the medians as a table and the goal.
func (r *projectorReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\nmedian of %d rounds (ratio = projector events/s / event-like EVALSHA ceiling, one event per call):\n\n", r.settings.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "projections\tevents/s\telapsed\tstartup\tgo cpu µs/event\tredis cpu µs/event\tin scripts µs/event\tratio\tratio to batched\t\n")
	for _, set := range r.settings.sets {
		s := r.summary(set)
		fmt.Fprintf(tw, "%s\t%.0f\t%.2fs\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t\n",
			s.name, s.perSecond, s.elapsed.Seconds(), s.startup.Round(time.Millisecond), s.goCPU, s.redisCPU, s.redisScript, s.ratio, s.batchRatio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nceilings (redis-benchmark -P %d -c %d):\n\n", r.settings.ceilingPipeline, r.settings.ceilingClients)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "script\tevents/call\tEVALSHA/s\tevents/s\t\n")
	for _, kind := range ceilingKinds {
		c := r.ceiling(kind)
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t\n", kind.name, kind.eventsPerCall, c.callsPerSecond, c.eventsPerSecond)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.runs[summaryOnly.name]) > 0 {
		s := r.summary(summaryOnly)
		verdict := "MET"
		if !s.goalMet() {
			verdict = "NOT MET"
		}
		fmt.Fprintf(w, "\ngoal (summary: at least %d events/s and %.2f of the ceiling): %s (%.0f events/s, %.2f)\n",
			goalEventsPerSecond, goalRatio, verdict, s.perSecond, s.ratio)
	}
	fmt.Fprintf(w, "load average before the rounds %s, after %s\n", r.loadBefore, r.loadAfter)
	if bad := r.invalid(); bad != "" {
		fmt.Fprintf(w, "!!! %s: THESE NUMBERS ARE NOT VALID !!!\n", bad)
	}
	return nil
}

// jsonProjectorReport is the --json form of the report. Times are in seconds,
// per-event costs in µs.
type jsonProjectorReport struct {
	GoVersion         string           `json:"goVersion"`
	GOMAXPROCS        int              `json:"gomaxprocs"`
	NProc             int              `json:"nproc"`
	RedisVersion      string           `json:"redisVersion"`
	RedisKeyPrefix    string           `json:"redisKeyPrefix"` // of every key the run wrote, all deleted
	Events            int              `json:"events"`
	Accounts          int              `json:"accounts"`
	Partitions        int              `json:"partitions"`
	BatchSize         int              `json:"batchSize"`
	Rounds            int              `json:"rounds"`
	LoadAverageBefore string           `json:"loadAverageBefore"`
	LoadAverageAfter  string           `json:"loadAverageAfter"`
	Projections       []jsonProjection `json:"projections"`
	Ceilings          []jsonCeiling    `json:"ceilings"`
	GoalMet           *bool            `json:"goalMet,omitempty"` // of the summary, when measured
	Invalid           string           `json:"invalid,omitempty"`
}

type jsonProjection struct {
	Name                      string                `json:"name"`
	Projections               int                   `json:"projections"`
	EventsPerSecond           float64               `json:"eventsPerSecond"`
	ElapsedSeconds            float64               `json:"elapsedSeconds"`
	StartupSeconds            float64               `json:"startupSeconds"`
	GoCPUMicrosPerEvent       float64               `json:"goCpuMicrosPerEvent"`
	RedisCPUMicrosPerEvent    float64               `json:"redisCpuMicrosPerEvent"`
	RedisScriptMicrosPerEvent float64               `json:"redisScriptMicrosPerEvent"`
	RatioToCeiling            float64               `json:"ratioToCeiling"`
	RatioToBatchedCeiling     float64               `json:"ratioToBatchedCeiling"`
	Rounds                    []jsonProjectionRound `json:"rounds"`
}

type jsonProjectionRound struct {
	Round                  int     `json:"round"`
	EventsPerSecond        float64 `json:"eventsPerSecond"`
	ElapsedSeconds         float64 `json:"elapsedSeconds"`
	StartupSeconds         float64 `json:"startupSeconds"`
	Applied                int     `json:"applied"`
	Duplicates             int     `json:"duplicates"`
	DeadLettered           int     `json:"deadLettered"`
	GoCPUSeconds           float64 `json:"goCpuSeconds"`
	RedisCPUSeconds        float64 `json:"redisCpuSeconds"`
	RedisScriptCalls       int64   `json:"redisScriptCalls"`
	RedisScriptSeconds     float64 `json:"redisScriptSeconds"`
	Problems               string  `json:"problems,omitempty"`
	GoCPUMicrosPerEvent    float64 `json:"goCpuMicrosPerEvent"`
	RedisCPUMicrosPerEvent float64 `json:"redisCpuMicrosPerEvent"`
}

type jsonCeiling struct {
	Name            string             `json:"name"`
	Script          string             `json:"script"`
	EventsPerCall   int                `json:"eventsPerCall"`
	CallsPerSecond  float64            `json:"callsPerSecond"`
	EventsPerSecond float64            `json:"eventsPerSecond"`
	Rounds          []jsonCeilingRound `json:"rounds"`
}

type jsonCeilingRound struct {
	Round           int     `json:"round"`
	CallsPerSecond  float64 `json:"callsPerSecond"`
	EventsPerSecond float64 `json:"eventsPerSecond"`
	P50Seconds      float64 `json:"p50Seconds"`
	P99Seconds      float64 `json:"p99Seconds"`
}

// writeJSON prints the report as one indented JSON document.
func (r *projectorReport) writeJSON(w io.Writer) error {
	s := r.settings
	out := jsonProjectorReport{
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NProc: runtime.NumCPU(),
		RedisVersion: r.redisVersion, RedisKeyPrefix: r.keyPrefix, Events: s.events, Accounts: s.accounts, Partitions: s.partitions,
		BatchSize: s.batchSize, Rounds: s.rounds, LoadAverageBefore: r.loadBefore, LoadAverageAfter: r.loadAfter,
		Invalid: r.invalid(),
	}
	if len(r.runs[summaryOnly.name]) > 0 {
		met := r.summary(summaryOnly).goalMet()
		out.GoalMet = &met
	}
	for _, set := range r.settings.sets {
		sum := r.summary(set)
		p := jsonProjection{
			Name: set.name, Projections: len(set.projections), EventsPerSecond: sum.perSecond,
			ElapsedSeconds: sum.elapsed.Seconds(), StartupSeconds: sum.startup.Seconds(),
			GoCPUMicrosPerEvent: sum.goCPU, RedisCPUMicrosPerEvent: sum.redisCPU, RedisScriptMicrosPerEvent: sum.redisScript,
			RatioToCeiling: sum.ratio, RatioToBatchedCeiling: sum.batchRatio, Rounds: []jsonProjectionRound{},
		}
		for _, run := range r.runs[set.name] {
			p.Rounds = append(p.Rounds, jsonProjectionRound{
				Round: run.round, EventsPerSecond: run.perSecond(), ElapsedSeconds: run.elapsed.Seconds(),
				StartupSeconds: run.startup.Seconds(), Applied: run.applied, Duplicates: run.duplicates,
				DeadLettered: run.deadLettered, GoCPUSeconds: run.goCPU.Seconds(), RedisCPUSeconds: run.redis.cpu.Seconds(),
				RedisScriptCalls: run.redis.evalCalls, RedisScriptSeconds: run.redis.evalDuration.Seconds(),
				Problems: strings.TrimSpace(run.problems()), GoCPUMicrosPerEvent: run.goCPUPerEvent(),
				RedisCPUMicrosPerEvent: run.redisCPUPerEvent(),
			})
		}
		out.Projections = append(out.Projections, p)
	}
	for _, kind := range ceilingKinds {
		script := eventScript
		if kind.eventsPerCall == 0 {
			script = trivialScript
		}
		c := r.ceiling(kind)
		jc := jsonCeiling{
			Name: kind.name, Script: strings.TrimSpace(script), EventsPerCall: kind.eventsPerCall,
			CallsPerSecond: c.callsPerSecond, EventsPerSecond: c.eventsPerSecond, Rounds: []jsonCeilingRound{},
		}
		for _, cr := range r.ceilings[kind.name] {
			jc.Rounds = append(jc.Rounds, jsonCeilingRound{
				Round: cr.round, CallsPerSecond: cr.callsPerSecond, EventsPerSecond: cr.eventsPerSecond,
				P50Seconds: cr.p50.Seconds(), P99Seconds: cr.p99.Seconds(),
			})
		}
		out.Ceilings = append(out.Ceilings, jc)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// loadAverage is the machine's 1, 5 and 15 minute load averages, "unknown"
// where /proc/loadavg does not exist.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
