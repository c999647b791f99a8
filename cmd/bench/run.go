package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-es/tributary/internal/config"
)

// defaultDatabaseURL is the machine's Postgres (trust auth). The benchmark
// only uses it to create, and finally drop, a database of its own.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// settings are the benchmark's flags, validated.
type settings struct {
	databaseURL string
	clients     clientLevels
	accounts    int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	json        bool
	cpuProfile  string
	load        string
}

// clientLevels is a comma-separated list of concurrency levels, e.g. 1,16,64.
type clientLevels []int

// String returns the levels as Set accepts them.
func (c *clientLevels) String() string {
	if c == nil {
		return ""
	}
	parts := make([]string, len(*c))
	for i, n := range *c {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// Set replaces the list with the levels in v.
func (c *clientLevels) Set(v string) error {
	var levels clientLevels
	for part := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive number of clients", part)
		}
		if slices.Contains(levels, n) {
			return fmt.Errorf("%d clients is listed twice", n)
		}
		levels = append(levels, n)
	}
	*c = levels
	return nil
}

func parseSettings(args []string, getenv func(string) string, out io.Writer) (settings, error) {
	s := settings{clients: clientLevels{1, 16, 64}}
	fs := config.New("bench writer", out)
	fs.StringVar(&s.databaseURL, "database-url", defaultDatabaseURL, "Postgres server URL; the benchmark creates and drops its own database there")
	fs.Env("database-url", "BENCH_DATABASE_URL")
	fs.Var(&s.clients, "clients", "comma-separated numbers of concurrent clients, one measurement each")
	fs.Env("clients", "BENCH_CLIENTS")
	fs.IntVar(&s.accounts, "accounts", 1000, "accounts opened before measuring; each command picks one at random")
	fs.Env("accounts", "BENCH_ACCOUNTS")
	fs.DurationVar(&s.duration, "duration", 5*time.Second, "measured time of each level in each round")
	fs.Env("duration", "BENCH_DURATION")
	fs.DurationVar(&s.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.Env("warmup", "BENCH_WARMUP")
	fs.IntVar(&s.rounds, "rounds", 3, "rounds of every level, alternating writer and raw inserts; the report shows their median")
	fs.Env("rounds", "BENCH_ROUNDS")
	fs.BoolVar(&s.json, "json", false, "print the report as JSON on stdout, without progress lines")
	fs.StringVar(&s.load, "load", "auto", "load generator for the writer: wrk (a separate C process, Debian package wrk), go (in this process), or auto (wrk if installed)")
	fs.Env("load", "BENCH_LOAD")
	fs.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (load generator, writer) to this file")
	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return s, config.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case len(s.clients) == 0:
		return s, config.UsageError{Err: fmt.Errorf("%s needs at least one level", fs.Setting("clients"))}
	case s.accounts < 1:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 1", fs.Setting("accounts"))}
	case s.duration < 100*time.Millisecond:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 100ms", fs.Setting("duration"))}
	case s.warmup < 0:
		return s, config.UsageError{Err: fmt.Errorf("%s must not be negative", fs.Setting("warmup"))}
	case s.rounds < 1:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 1", fs.Setting("rounds"))}
	}
	switch s.load {
	case "auto":
		s.load = "go"
		if _, err := exec.LookPath("wrk"); err == nil {
			s.load = "wrk"
		}
	case "go":
	case "wrk":
		if _, err := exec.LookPath("wrk"); err != nil {
			return s, config.UsageError{Err: fmt.Errorf("%s=wrk but wrk is not installed (apt-get install wrk)", fs.Setting("load"))}
		}
	default:
		return s, config.UsageError{Err: fmt.Errorf("%s must be wrk, go or auto", fs.Setting("load"))}
	}
	u, err := url.Parse(s.databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return s, config.UsageError{Err: fmt.Errorf("%s must be a URL like %s", fs.Setting("database-url"), defaultDatabaseURL)}
	}
	if _, err := pgx.ParseConfig(s.databaseURL); err != nil {
		return s, config.UsageError{Err: fmt.Errorf("%s is not a valid Postgres URL: %v", fs.Setting("database-url"), err)}
	}
	return s, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	const usage = "usage: bench writer|projector|pipeline [flags] (run 'bench <subcommand> -h' for the flags)"
	if len(args) == 0 {
		return config.UsageError{Err: errors.New(usage)}
	}
	var bench func(context.Context, *cpuProfiler) error
	var cpuProfile string
	switch args[0] {
	case "writer":
		s, err := parseSettings(args[1:], getenv, stdout)
		if err != nil {
			return err
		}
		cpuProfile = s.cpuProfile
		bench = func(ctx context.Context, _ *cpuProfiler) error { return benchWriter(ctx, s, stdout) }
	case "projector":
		s, err := parseProjectorSettings(args[1:], getenv, stdout)
		if err != nil {
			return err
		}
		cpuProfile = s.cpuProfile
		bench = func(ctx context.Context, _ *cpuProfiler) error { return benchProjector(ctx, s, stdout) }
	case "pipeline":
		s, err := parsePipelineSettings(args[1:], getenv, stdout)
		if err != nil {
			return err
		}
		cpuProfile = s.cpuProfile
		bench = func(ctx context.Context, prof *cpuProfiler) error { return benchPipeline(ctx, s, prof, stdout) }
	default:
		return config.UsageError{Err: errors.New(usage)}
	}
	var profileFile *os.File
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return config.UsageError{Err: fmt.Errorf("--cpuprofile: %w", err)}
		}
		profileFile = f
	}
	prof, err := startCPUProfiler(profileFile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	err = bench(ctx, prof)
	if closeErr := prof.close(); closeErr != nil {
		err = errors.Join(err, closeErr)
	}
	return err
}

// benchWriter runs every round of every level in a database of its own and
// prints the report.
func benchWriter(ctx context.Context, s settings, stdout io.Writer) (err error) {
	db := newBenchDatabase(s.databaseURL)
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		if dropErr := db.drop(); dropErr != nil {
			err = errors.Join(err, dropErr)
		}
	}()
	server, err := db.create(ctx)
	if err != nil {
		return err
	}
	if need := slices.Max(s.clients) + 2; need > server.maxConnections {
		return config.UsageError{Err: fmt.Errorf("--clients %d needs %d Postgres connections for the raw insert ceiling, but max_connections is %d",
			slices.Max(s.clients), need, server.maxConnections)}
	}
	rep := newReport(s, server.version)
	progress := stdout
	if s.json {
		progress = io.Discard
	}
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
	for round := 1; round <= s.rounds; round++ {
		for _, clients := range s.clients {
			// Alternate which side goes first so that neither always runs on
			// a machine warmed (or tired) by the other.
			writerFirst := round%2 == 1
			for _, side := range []bool{writerFirst, !writerFirst} {
				if side {
					measure := measureWriter
					if s.load == "wrk" {
						measure = measureWriterWrk
					}
					m, err := measure(ctx, db.url, creds, clients, s.accounts, s.warmup, s.duration)
					if err != nil {
						return err
					}
					rep.addWriter(round, clients, m)
					fmt.Fprintf(progress, "round %d/%d  clients %3d  writer  %8.0f cmd/s     p50 %s  p99 %s  p999 %s%s\n",
						round, s.rounds, clients, m.perSecond(), ms(m.quantile(0.50)), ms(m.quantile(0.99)), ms(m.quantile(0.999)), m.problems())
				} else {
					m, err := measureRaw(ctx, db.url, clients, s.accounts, s.warmup, s.duration)
					if err != nil {
						return err
					}
					rep.addRaw(round, clients, m)
					fmt.Fprintf(progress, "round %d/%d  clients %3d  raw     %8.0f insert/s  p50 %s  p99 %s  p999 %s%s\n",
						round, s.rounds, clients, m.perSecond(), ms(m.quantile(0.50)), ms(m.quantile(0.99)), ms(m.quantile(0.999)), m.problems())
				}
			}
		}
	}

	if s.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeTable(stdout)
	}
	if err != nil {
		return err
	}
	if failed := rep.errors(); failed > 0 {
		return fmt.Errorf("BENCHMARK INVALID: %d operations failed (see the report); the numbers above do not measure a working system", failed)
	}
	return nil
}
