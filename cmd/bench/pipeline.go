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
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/config"
)

// pipelineSettings are the flags of bench pipeline, validated.
type pipelineSettings struct {
	databaseURL   string
	redisAddr     string
	clients       int
	accounts      int
	duration      time.Duration
	warmup        time.Duration
	rounds        int
	readShare     float64
	transferShare float64
	partitions    int
	settleTimeout time.Duration
	// redisCeiling is redis-benchmark or go (a go-redis pipelined loop).
	redisCeiling string
	ceiling      projectorSettings // the Redis ceiling's own settings
	json         bool
	cpuProfile   string
}

func parsePipelineSettings(args []string, getenv func(string) string, out io.Writer) (pipelineSettings, error) {
	var s pipelineSettings
	fs := config.New("bench pipeline", out)
	fs.StringVar(&s.databaseURL, "database-url", defaultDatabaseURL, "Postgres server URL; the benchmark creates and drops its own database there")
	fs.Env("database-url", "BENCH_DATABASE_URL")
	fs.StringVar(&s.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis host:port; the benchmark writes under a key prefix of its own and deletes it at the end")
	fs.Env("redis-addr", "BENCH_REDIS_ADDR")
	fs.IntVar(&s.clients, "clients", 16, "concurrent HTTP clients, each on its own keep-alive connections; the ceilings run at the same concurrency")
	fs.Env("clients", "BENCH_CLIENTS")
	fs.IntVar(&s.accounts, "accounts", 1000, "accounts opened and activated before measuring; each command picks one at random")
	fs.Env("accounts", "BENCH_ACCOUNTS")
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "measured time of the pipeline and of each ceiling in each round")
	fs.Env("duration", "BENCH_DURATION")
	fs.DurationVar(&s.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	fs.Env("warmup", "BENCH_WARMUP")
	fs.IntVar(&s.rounds, "rounds", 3, "rounds, pipeline and ceilings alternating which goes first; the report shows their median")
	fs.Env("rounds", "BENCH_ROUNDS")
	fs.Float64Var(&s.readShare, "read-share", 0.25, "share of accepted commands that the client follows with a read of what it wrote (min_version = the writer's version): the end-to-end sample")
	fs.Env("read-share", "BENCH_READ_SHARE")
	fs.Float64Var(&s.transferShare, "transfer-share", 0.2, "share of commands that are transfers between two random accounts; the rest are deposits and withdrawals, 60/40")
	fs.Env("transfer-share", "BENCH_TRANSFER_SHARE")
	fs.IntVar(&s.partitions, "partitions", 12, "partitions of each event topic (KAFKA_PARTITIONS' default)")
	fs.Env("partitions", "BENCH_PARTITIONS")
	fs.DurationVar(&s.settleTimeout, "settle-timeout", 2*time.Minute, "longest the pipeline may take, after a round's load, to end every transfer and apply every event; past it the run fails")
	fs.Env("settle-timeout", "BENCH_SETTLE_TIMEOUT")
	fs.StringVar(&s.redisCeiling, "redis-ceiling", "auto", "how to measure the Redis ceiling: redis-benchmark, go (a go-redis pipelined loop in this process), or auto (redis-benchmark if installed)")
	fs.IntVar(&s.ceiling.ceilingRequests, "ceiling-requests", 200_000, "EVALSHA calls of the Redis ceiling")
	fs.BoolVar(&s.json, "json", false, "print the report as JSON on stdout, without progress lines")
	fs.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (load generator and every part of the pipeline, each labelled component=<part>: go tool pprof -tagfocus) to this file")
	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return s, config.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	bad := func(format string, a ...any) (pipelineSettings, error) {
		return s, config.UsageError{Err: fmt.Errorf(format, a...)}
	}
	switch {
	case s.clients < 1 || s.clients > 1000:
		return bad("%s must be from 1 to 1000", fs.Setting("clients"))
	case s.accounts < 2:
		return bad("%s must be at least 2 (a transfer needs two)", fs.Setting("accounts"))
	case s.duration < 100*time.Millisecond:
		return bad("%s must be at least 100ms", fs.Setting("duration"))
	case s.warmup < 0:
		return bad("%s must not be negative", fs.Setting("warmup"))
	case s.rounds < 1:
		return bad("%s must be at least 1", fs.Setting("rounds"))
	case !(s.readShare > 0 && s.readShare <= 1):
		return bad("%s must be above 0 and at most 1: the reads measure the end-to-end latency", fs.Setting("read-share"))
	case !(s.transferShare >= 0 && s.transferShare < 1):
		return bad("%s must be from 0 to below 1", fs.Setting("transfer-share"))
	case s.partitions < 1 || s.partitions > 10_000:
		return bad("%s must be from 1 to 10000", fs.Setting("partitions"))
	case s.settleTimeout <= 0:
		return bad("%s must be positive", fs.Setting("settle-timeout"))
	case s.ceiling.ceilingRequests < 1:
		return bad("%s must be at least 1", fs.Setting("ceiling-requests"))
	}
	_, hasRedisBenchmark := exec.LookPath("redis-benchmark")
	switch s.redisCeiling {
	case "auto":
		s.redisCeiling = "go"
		if hasRedisBenchmark == nil {
			s.redisCeiling = "redis-benchmark"
		}
	case "go":
	case "redis-benchmark":
		if hasRedisBenchmark != nil {
			return bad("%s=redis-benchmark but redis-benchmark is not installed (apt-get install redis-tools)", fs.Setting("redis-ceiling"))
		}
	default:
		return bad("%s must be redis-benchmark, go or auto", fs.Setting("redis-ceiling"))
	}
	if _, port, err := net.SplitHostPort(s.redisAddr); err != nil || port == "" {
		return bad("%s must be host:port, like 127.0.0.1:6379", fs.Setting("redis-addr"))
	}
	u, err := url.Parse(s.databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return bad("%s must be a URL like %s", fs.Setting("database-url"), defaultDatabaseURL)
	}
	if _, err := pgx.ParseConfig(s.databaseURL); err != nil {
		return bad("%s is not a valid Postgres URL: %v", fs.Setting("database-url"), err)
	}
	// The Redis ceiling as bench projector measures it: EVALSHA of the
	// summary step's work for one event, 32 calls pipelined on each of 8
	// connections.
	s.ceiling.redisAddr, s.ceiling.accounts = s.redisAddr, s.accounts
	s.ceiling.ceilingPipeline, s.ceiling.ceilingClients = 32, 8
	return s, nil
}

// benchPipeline runs the whole platform in this process, then in every
// round measures it under the mixed load and measures the machine's
// ceilings, and prints the report.
func benchPipeline(ctx context.Context, s pipelineSettings, prof *cpuProfiler, stdout io.Writer) (err error) {
	progress, logger := stdout, slog.New(slog.DiscardHandler)
	if s.json {
		progress = io.Discard
	} else {
		logger = slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd) // never fails since Go 1.24
	prefix := "bench-pipeline-" + hex.EncodeToString(rnd)

	db := newBenchDatabase(s.databaseURL)
	rdb := redis.NewClient(&redis.Options{Addr: s.redisAddr})
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		// Whatever happened, leave neither the database nor a key behind.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, delErr := deleteKeys(cctx, rdb, prefix); delErr != nil {
			err = errors.Join(err, delErr)
		}
		err = errors.Join(err, rdb.Close(), db.drop())
	}()
	redisVer, err := redisVersion(ctx, rdb)
	if err != nil {
		return fmt.Errorf("Redis at %s (set --redis-addr / BENCH_REDIS_ADDR): %w", s.redisAddr, err)
	}
	server, err := db.create(ctx)
	if err != nil {
		return err
	}
	rep := &pipelineReport{settings: s, postgresVersion: server.version, redisVersion: redisVer, keyPrefix: prefix}
	rep.writeHeader(progress)

	creds, err := newBenchAuth(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "opening and activating %d accounts...\n", s.accounts)
	if err := openAccounts(ctx, db.url, s.accounts, creds); err != nil {
		return err
	}
	if err := createRawTable(ctx, db.url); err != nil {
		return err
	}
	fmt.Fprintf(progress, "starting the pipeline (writer API, relay, transfers process manager, %d projectors, reader API)...\n", len(pipelineProjections()))
	stack, err := startPipeline(ctx, db.url, s.redisAddr, prefix, int32(s.partitions), creds, logger)
	if err != nil {
		return err
	}
	defer stack.close()
	if _, err := stack.settle(ctx, s.settleTimeout); err != nil {
		return fmt.Errorf("projecting the opened accounts: %w", err)
	}
	transport := newLoadTransport(s.clients)
	defer transport.CloseIdleConnections()
	load := &pipelineLoad{
		http:      &http.Client{Transport: transport, Timeout: 30 * time.Second},
		writerURL: stack.writer.baseURL, readerURL: stack.readerURL, auth: creds,
		accounts: s.accounts, readShare: s.readShare, transferShare: s.transferShare,
	}

	// One transfer through the whole pipeline before measuring: a
	// projection whose topic was empty serves its first event only after
	// its generation is promoted, checked every projector Poll (1 s): up to
	// ~2 s of start-up that would otherwise land in the first round.
	var firstTransfer time.Duration
	labelled(ctx, partLoad, func(ctx context.Context) { firstTransfer, err = load.prime(ctx) })
	if err != nil {
		return fmt.Errorf("priming the pipeline: %w", err)
	}
	fmt.Fprintf(progress, "priming: the first transfer was visible in the reader %s after the writer's answer (start-up, not measured)\n",
		firstTransfer.Round(time.Millisecond))
	if _, err := stack.settle(ctx, s.settleTimeout); err != nil {
		return fmt.Errorf("priming the pipeline: %w", err)
	}

	rep.loadBefore = loadAverage()
	for round := 1; round <= s.rounds; round++ {
		// Alternate which side goes first so that neither always runs on a
		// machine warmed (or tired) by the other.
		pipelineFirst := round%2 == 1
		for _, side := range []bool{pipelineFirst, !pipelineFirst} {
			if side {
				load.transferPrefix = "bench-t" + strconv.Itoa(round)
				m, err := measurePipeline(ctx, stack, load, prof, s)
				if err != nil {
					return fmt.Errorf("round %d: %w", round, err)
				}
				rep.pipeline = append(rep.pipeline, m)
				goCores, machineCores := m.cores()
				fmt.Fprintf(progress, "round %d/%d  pipeline  %7.0f cmd/s  p50 %s  p99 %s  visible p50 %s  p99 %s (transfers %s, %s)  relay %6.0f ev/s  projector %6.0f ev/s  reader %5.0f q/s  busy cores: bench %.2f, machine %.2f  CPU µs/cmd: bench %.0f, postgres %.0f, redis %.0f, machine %.0f  (settled in %s)%s\n",
					round, s.rounds, m.commandsPerSecond, ms(quantile(m.commands, 0.5)), ms(quantile(m.commands, 0.99)),
					ms(quantile(m.visible, 0.5)), ms(quantile(m.visible, 0.99)), ms(quantile(m.visibleTransfers, 0.5)), ms(quantile(m.visibleTransfers, 0.99)),
					m.relayPerSecond(), m.projectorPerSecond(), m.queriesPerSecond, goCores, machineCores,
					m.cpuPerCommand(m.cpu.process), m.cpuPerCommand(m.cpu.postgres), m.cpuPerCommand(m.cpu.redis), m.cpuPerCommand(m.cpu.machine),
					m.settleTime.Round(time.Millisecond), m.problems())
				continue
			}
			c, err := measurePipelineCeilings(ctx, stack, rdb, db.url, s, prefix+"-r"+strconv.Itoa(round))
			if err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
			rep.ceilings = append(rep.ceilings, c)
			fmt.Fprintf(progress, "round %d/%d  ceilings  raw INSERT %7.0f/s  p50 %s  p99 %s%s | Redis %8.0f events/s | bare HTTP %7.0f req/s  p50 %s  p99 %s%s\n",
				round, s.rounds, c.raw.perSecond(), ms(c.raw.quantile(0.5)), ms(c.raw.quantile(0.99)), c.raw.problems(),
				c.redis.eventsPerSecond, c.bare.perSecond(), ms(c.bare.quantile(0.5)), ms(c.bare.quantile(0.99)), c.bare.problems())
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
		return fmt.Errorf("BENCHMARK INVALID: %s; the numbers above do not measure a working pipeline", bad)
	}
	return nil
}

// measurePipeline drives one round of the mix, then waits until the
// pipeline settled: every transfer ended, every event applied.
func measurePipeline(ctx context.Context, stack *pipelineStack, load *pipelineLoad, prof *cpuProfiler, s pipelineSettings) (pipelineMeasurement, error) {
	m, err := drivePipeline(ctx, stack, load, prof, s.clients, s.warmup, s.duration)
	if err != nil {
		return m, err
	}
	began := time.Now()
	m.settled, err = stack.settle(ctx, s.settleTimeout)
	m.settleTime = time.Since(began)
	return m, err
}

// pipelineCeilings are one round's ceilings of the machine.
type pipelineCeilings struct {
	raw, bare measurement
	redis     ceilingResult
}

// measurePipelineCeilings measures, with the pipeline idle, the raw
// single-row INSERT rate, the Redis pipelined rate and the bare HTTP
// handler rate.
func measurePipelineCeilings(ctx context.Context, stack *pipelineStack, rdb *redis.Client, databaseURL string, s pipelineSettings, prefix string) (c pipelineCeilings, err error) {
	// Free the writer's idle connections: the raw inserts need clients
	// more, on a server that others may use too.
	stack.pool.Reset()
	if c.raw, err = measureRaw(ctx, databaseURL, s.clients, s.accounts, s.warmup, s.duration); err != nil {
		return c, err
	}
	if s.redisCeiling == "go" {
		c.redis, err = measureCeilingGoRedis(ctx, s.redisAddr, s.ceiling, prefix+"-redis")
	} else {
		c.redis, err = measureCeiling(ctx, rdb, s.ceiling, ceilingEvent, prefix+"-redis")
	}
	if err != nil {
		return c, err
	}
	c.bare, err = measureBareHTTP(ctx, s.clients, stack.auth.owner(0), s.warmup, s.duration)
	return c, err
}
