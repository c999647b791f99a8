package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	"github.com/tributary-es/tributary/internal/testenv"
)

// projectorSettings are the flags of bench projector, validated.
type projectorSettings struct {
	redisAddr       string
	events          int
	accounts        int
	partitions      int
	batchSize       int
	rounds          int
	timeout         time.Duration
	ceilingRequests int
	ceilingPipeline int
	ceilingClients  int
	sets            []projectionSet
	json            bool
	cpuProfile      string
}

func parseProjectorSettings(args []string, getenv func(string) string, out io.Writer) (projectorSettings, error) {
	var s projectorSettings
	fs := config.New("bench projector", out)
	fs.StringVar(&s.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis host:port; the benchmark writes under a key prefix of its own and deletes it after each measurement")
	fs.Env("redis-addr", "BENCH_REDIS_ADDR")
	fs.IntVar(&s.events, "events", 200_000, "account events pre-filled on the topic before measuring")
	fs.Env("events", "BENCH_EVENTS")
	fs.IntVar(&s.accounts, "accounts", 10_000, "accounts the events are spread over")
	fs.Env("accounts", "BENCH_ACCOUNTS")
	fs.IntVar(&s.partitions, "partitions", 16, "partitions of the topic")
	fs.Env("partitions", "BENCH_PARTITIONS")
	fs.IntVar(&s.batchSize, "batch-size", projector.DefaultConfig().BatchSize, "the projector's BatchSize: most events of one atomic step")
	fs.Env("batch-size", "BENCH_BATCH_SIZE")
	fs.IntVar(&s.rounds, "rounds", 3, "rounds of every measurement, projector and ceilings alternating which goes first; the report shows their median")
	fs.Env("rounds", "BENCH_ROUNDS")
	fs.DurationVar(&s.timeout, "timeout", 5*time.Minute, "longest a projection may take to reach the end of the topic")
	fs.Env("timeout", "BENCH_TIMEOUT")
	fs.IntVar(&s.ceilingRequests, "ceiling-requests", 200_000, "EVALSHA calls of each redis-benchmark ceiling (events, for the batched one)")
	fs.IntVar(&s.ceilingPipeline, "ceiling-pipeline", 32, "redis-benchmark -P: calls pipelined per connection")
	fs.IntVar(&s.ceilingClients, "ceiling-clients", 8, "redis-benchmark -c: connections")
	sets := fs.String("projections", "summary,all", "what to build, comma-separated: summary (the account summary alone), all (the four projections at once)")
	fs.Env("projections", "BENCH_PROJECTIONS")
	fs.BoolVar(&s.json, "json", false, "print the report as JSON on stdout, without progress lines")
	fs.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (pre-fill, projectors and kfake; not Redis or redis-benchmark) to this file")
	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return s, config.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	atLeast := func(name string, v, least int) error {
		if v < least {
			return config.UsageError{Err: fmt.Errorf("%s must be at least %d", fs.Setting(name), least)}
		}
		return nil
	}
	if err := errors.Join(
		atLeast("events", s.events, 1), atLeast("accounts", s.accounts, 1), atLeast("partitions", s.partitions, 1),
		atLeast("batch-size", s.batchSize, 1), atLeast("rounds", s.rounds, 1),
		atLeast("ceiling-requests", s.ceilingRequests, 1), atLeast("ceiling-pipeline", s.ceilingPipeline, 1),
		atLeast("ceiling-clients", s.ceilingClients, 1),
	); err != nil {
		return s, config.UsageError{Err: err}
	}
	switch {
	case s.accounts > s.events:
		return s, config.UsageError{Err: fmt.Errorf("%s (%d) must not exceed %s (%d): every account needs its opening event",
			fs.Setting("accounts"), s.accounts, fs.Setting("events"), s.events)}
	case s.partitions > 10_000:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at most 10000", fs.Setting("partitions"))}
	case s.timeout <= 0:
		return s, config.UsageError{Err: fmt.Errorf("%s must be positive", fs.Setting("timeout"))}
	}
	for name := range strings.SplitSeq(*sets, ",") {
		i := slices.IndexFunc(projectionSets, func(set projectionSet) bool { return set.name == strings.TrimSpace(name) })
		if i < 0 || slices.ContainsFunc(s.sets, func(set projectionSet) bool { return set.name == projectionSets[i].name }) {
			return s, config.UsageError{Err: fmt.Errorf("%s must list summary, all or both, once each", fs.Setting("projections"))}
		}
		s.sets = append(s.sets, projectionSets[i])
	}
	if _, port, err := net.SplitHostPort(s.redisAddr); err != nil || port == "" {
		return s, config.UsageError{Err: fmt.Errorf("%s must be host:port, like 127.0.0.1:6379", fs.Setting("redis-addr"))}
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		return s, config.UsageError{Err: errors.New("redis-benchmark is not installed: it measures the Redis ceiling (apt-get install redis-tools)")}
	}
	return s, nil
}

// projectionSet is what one measurement builds from the start of the topic.
type projectionSet struct {
	name        string
	projections []readmodels.Projection
}

// The measured sets: the summary alone, and the four projections of the
// account domain built at once by four projectors of one process, on one
// shared consumer (as cmd/projector run).
var (
	summaryOnly = projectionSet{name: "summary", projections: []readmodels.Projection{accounts.SummaryProjection{}}}
	allFour     = projectionSet{name: "all", projections: []readmodels.Projection{
		accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{},
		correlation.Projection{Types: []string{account.AggregateType}},
	}}
	projectionSets = []projectionSet{summaryOnly, allFour}
)

// projectorBench is what the measurements share.
type projectorBench struct {
	s         projectorSettings
	rdb       *redis.Client
	log       *eventLog
	schemas   *log.Schemas
	upcasters *log.Upcasters
	prefix    string // every Redis key and consumer group of the run starts with it
	logger    *slog.Logger
	progress  io.Writer
}

// benchProjector pre-fills a topic, then measures in every round each
// projection set built from its start, and the Redis ceilings.
func benchProjector(ctx context.Context, s projectorSettings, stdout io.Writer) (err error) {
	b := &projectorBench{s: s, progress: stdout, logger: slog.New(slog.DiscardHandler)}
	if s.json {
		b.progress = io.Discard
	} else {
		b.logger = slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd) // never fails since Go 1.24
	b.prefix = "bench-projector-" + hex.EncodeToString(rnd)

	b.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr})
	defer b.rdb.Close()
	version, err := redisVersion(ctx, b.rdb)
	if err != nil {
		return fmt.Errorf("Redis at %s (set --redis-addr / BENCH_REDIS_ADDR): %w", s.redisAddr, err)
	}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		// Whatever happened, leave none of the run's keys behind.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, delErr := deleteKeys(cctx, b.rdb, b.prefix); delErr != nil {
			err = errors.Join(err, delErr)
		}
	}()
	domains, err := domains.All()
	if err != nil {
		return err
	}
	b.schemas, b.upcasters = domains.Schemas(), domains.Upcasters()

	rep := newProjectorReport(s, version)
	rep.keyPrefix = b.prefix
	rep.writeHeader(b.progress)
	fmt.Fprintf(b.progress, "generating %d events over %d accounts and filling %d partitions of an in-process kfake...\n",
		s.events, s.accounts, s.partitions)
	began := time.Now()
	// A valid history: each account opened, activated, then deposits and
	// withdrawals within its balance, sometimes closed at zero; interleaved.
	events := testenv.GenerateAccounts(s.accounts, s.events, 1).Events
	if b.log, err = startEventLog(ctx, int32(s.partitions), events); err != nil {
		return err
	}
	defer b.log.close()
	fmt.Fprintf(b.progress, "filled in %s (not measured)\n", time.Since(began).Round(time.Millisecond))
	rep.loadBefore = loadAverage()

	for round := 1; round <= s.rounds; round++ {
		// Alternate which side goes first so that neither always runs on a
		// machine warmed (or tired) by the other.
		projectorFirst := round%2 == 1
		for _, side := range []bool{projectorFirst, !projectorFirst} {
			if side {
				for _, set := range s.sets {
					r, err := b.measureProjections(ctx, round, set)
					if err != nil {
						return err
					}
					rep.addProjections(set.name, r)
					fmt.Fprintf(b.progress, "round %d/%d  %-7s %8.0f events/s  %6.2fs (start %s)  µs/event: go %5.1f, redis %5.1f  busy cores: go %.2f, redis %.2f, machine %.2f%s\n",
						round, s.rounds, set.name, r.perSecond(), r.elapsed.Seconds(), r.startup.Round(time.Millisecond),
						r.goCPUPerEvent(), r.redisCPUPerEvent(), r.cores(r.goCPU), r.cores(r.redis.cpu), r.cores(r.machineCPU), r.problems())
				}
			} else {
				for i, kind := range ceilingKinds {
					c, err := measureCeiling(ctx, b.rdb, s, kind, b.prefix+"-r"+strconv.Itoa(round)+"-ceiling"+strconv.Itoa(i))
					if err != nil {
						return err
					}
					c.round = round
					rep.addCeiling(kind, c)
					fmt.Fprintf(b.progress, "round %d/%d  ceiling %-11s %8.0f EVALSHA/s  %8.0f events/s  p50 %s  p99 %s\n",
						round, s.rounds, kind.name, c.callsPerSecond, c.eventsPerSecond, ms(c.p50), ms(c.p99))
				}
			}
		}
	}
	rep.loadAfter = loadAverage()

	if s.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeTable(stdout)
	}
	if err != nil {
		return err
	}
	if bad := rep.invalid(); bad != "" {
		return fmt.Errorf("BENCHMARK INVALID: %s; the numbers above do not measure a working projector", bad)
	}
	return nil
}

// projectionRun is one build of a projection set from the start of the
// topic to its end.
type projectionRun struct {
	round  int
	events int // on the topic
	// elapsed runs from the projectors' start until every partition's
	// stored position of every projection reached the topic's end.
	elapsed time.Duration
	// startup is the part of elapsed before the first position moved:
	// topic checks, group join, first fetch.
	startup time.Duration
	// applied, duplicates and deadLettered sum the projections' outcome
	// counters; a valid run applies events × projections.
	applied, duplicates, deadLettered int
	projections                       int
	goCPU                             time.Duration // this process, pre-fill excluded
	redis                             redisUsage    // the Redis server, all its clients
	machineCPU                        time.Duration // every process of the machine
}

// cores are the CPUs a CPU time kept busy on average over the run.
func (r projectionRun) cores(cpu time.Duration) float64 { return cpu.Seconds() / r.elapsed.Seconds() }

func (r projectionRun) perSecond() float64 { return float64(r.events) / r.elapsed.Seconds() }

// goCPUPerEvent and redisCPUPerEvent are in µs per event of the topic.
func (r projectionRun) goCPUPerEvent() float64 {
	return float64(r.goCPU.Microseconds()) / float64(r.events)
}

func (r projectionRun) redisCPUPerEvent() float64 {
	return float64(r.redis.cpu.Microseconds()) / float64(r.events)
}

func (r projectionRun) problems() string {
	if want := r.events * r.projections; r.applied != want || r.duplicates+r.deadLettered > 0 {
		return fmt.Sprintf("  APPLIED %d OF %d (%d duplicates, %d dead-lettered)", r.applied, want, r.duplicates, r.deadLettered)
	}
	return ""
}

// measureProjections builds set from the start of the topic under a fresh
// Redis prefix and consumer groups, and deletes its keys afterwards.
func (b *projectorBench) measureProjections(ctx context.Context, round int, set projectionSet) (run projectionRun, err error) {
	prefix := b.prefix + "-r" + strconv.Itoa(round) + "-" + strconv.Itoa(len(set.projections))
	defer func() {
		if _, delErr := deleteKeys(context.WithoutCancel(ctx), b.rdb, prefix); delErr != nil {
			err = errors.Join(err, delErr)
		}
	}()
	cfg := projector.DefaultConfig()
	cfg.Client = b.log.seeds()
	cfg.Topics = b.log.topics
	cfg.GroupPrefix = prefix
	cfg.RedisPrefix = prefix
	cfg.BatchSize = b.s.batchSize
	reg := prometheus.NewRegistry()
	deps := projector.Deps{
		Redis: b.rdb, Schemas: b.schemas, Upcasters: b.upcasters,
		Metrics: projector.NewMetrics(reg), Logger: b.logger,
	}
	run = projectionRun{round: round, events: b.s.events, projections: len(set.projections)}
	layouts := make([]readmodels.Layout, len(set.projections))
	for i, p := range set.projections {
		layouts[i] = readmodels.NewLayout(prefix, p.Name())
	}

	redisBefore, err := readRedisUsage(ctx, b.rdb)
	if err != nil {
		return run, err
	}
	cpuBefore, machineBefore := processCPU(), machineCPU()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	began := time.Now()
	// As cmd/projector run: the projections on one shared consumer.
	projectors := make([]*projector.Projector, len(set.projections))
	for i, p := range set.projections {
		projectors[i] = projector.New(p, cfg, deps)
	}
	consumer, err := projector.NewConsumer(projectors...)
	if err != nil {
		return run, err
	}
	g.Go(func() error {
		if err := consumer.Run(gctx); err != nil {
			return fmt.Errorf("consumer %s: %w", consumer.Group(), err)
		}
		return nil
	})
	waitErr := b.waitForEnd(gctx, layouts, began, &run)
	run.elapsed = time.Since(began)
	run.goCPU, run.machineCPU = processCPU()-cpuBefore, machineCPU()-machineBefore
	redisAfter, usageErr := readRedisUsage(ctx, b.rdb)
	run.redis = redisAfter.sub(redisBefore)
	stop()
	if runErr := g.Wait(); runErr != nil {
		waitErr = runErr // what stopped the wait, if anything
	}
	if err := errors.Join(waitErr, usageErr); err != nil {
		return run, fmt.Errorf("%s, round %d: %w", set.name, round, err)
	}
	run.applied, run.duplicates, run.deadLettered, err = outcomes(reg)
	return run, err
}

// waitForEnd polls the stored positions until every partition of every
// layout reached the topic's end offset. It sets run.startup when the first
// position moves.
func (b *projectorBench) waitForEnd(ctx context.Context, layouts []readmodels.Layout, began time.Time, run *projectionRun) error {
	const poll = 5 * time.Millisecond
	deadline := time.NewTimer(b.s.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	// The first build of a projection is generation 1.
	const gen = 1
	topic := b.log.topic
	type position struct {
		cmd *redis.StringCmd
		end int64
	}
	positions := make([]position, 0, len(layouts)*b.s.partitions)
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return fmt.Errorf("the projections did not reach the end of the topic within %s (--timeout)", b.s.timeout)
		case <-tick.C:
		}
		pipe := b.rdb.Pipeline()
		positions = positions[:0]
		for _, l := range layouts {
			for p, end := range b.log.ends {
				positions = append(positions, position{pipe.HGet(ctx, l.Position(gen, p), "next:"+topic), end})
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("read positions: %w", err)
		}
		done, moved := true, false
		for _, pos := range positions {
			next, _ := pos.cmd.Int64() // missing: not claimed yet
			done = done && next >= pos.end
			moved = moved || next > 0
		}
		if moved && run.startup == 0 {
			run.startup = time.Since(began)
		}
		if done {
			return nil
		}
	}
}

// outcomes sums tributary_projection_events_total by outcome.
func outcomes(reg *prometheus.Registry) (applied, duplicates, deadLettered int, err error) {
	families, err := reg.Gather()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read the projector's metrics: %w", err)
	}
	for _, f := range families {
		if f.GetName() != "tributary_projection_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			n := int(m.GetCounter().GetValue())
			for _, l := range m.GetLabel() {
				if l.GetName() != "outcome" {
					continue
				}
				switch l.GetValue() {
				case "applied":
					applied += n
				case "duplicate":
					duplicates += n
				default:
					deadLettered += n
				}
			}
		}
	}
	return applied, duplicates, deadLettered, nil
}
