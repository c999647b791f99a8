package main

import (
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"time"

	"github.com/tributary-es/tributary/internal/config"
)

// defaultAdminURL is the machine's Postgres (trust auth). chaos only uses it
// to create, and finally drop, a database of its own.
const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// settings are the flags of a chaos run, validated.
type settings struct {
	seed         uint64
	commands     int
	faults       int
	clients      int
	principals   int
	accounts     int
	partitions   int
	adminURL     string
	redisServer  string
	workDir      string
	keep         bool
	broken       bool
	json         bool
	settle       time.Duration
	giveUp       time.Duration
	sessionLimit time.Duration
}

func parseSettings(args []string, getenv func(string) string, out io.Writer) (settings, error) {
	var s settings
	fs := config.New("chaos", out)
	fs.Uint64Var(&s.seed, "seed", 1, "seed of the plan: the commands and the faults (kinds, moments, targets, pauses)")
	fs.Env("seed", "CHAOS_SEED")
	fs.IntVar(&s.commands, "commands", 50_000, "commands sent through the writer's HTTP API, including the accounts' opening")
	fs.Env("commands", "CHAOS_COMMANDS")
	fs.IntVar(&s.faults, "faults", 20, "faults injected while the commands run (every kind at least once when there are 8 or more)")
	fs.Env("faults", "CHAOS_FAULTS")
	fs.IntVar(&s.clients, "clients", 16, "concurrent HTTP clients")
	fs.IntVar(&s.principals, "principals", 16, "principals that own the accounts (account n belongs to principal n mod --principals) and send their commands with their own tokens")
	fs.IntVar(&s.accounts, "accounts", 200, "accounts the commands work on")
	fs.IntVar(&s.partitions, "partitions", 8, "partitions of each event topic")
	fs.StringVar(&s.adminURL, "database-url", defaultAdminURL, "Postgres server URL; chaos creates (and drops) its own database there")
	fs.Env("database-url", "CHAOS_DATABASE_URL")
	fs.StringVar(&s.redisServer, "redis-server", "redis-server", "the redis-server binary; chaos starts its own server on a free port")
	fs.StringVar(&s.workDir, "work-dir", "", "directory for binaries, logs and Kafka's data (default: a new temporary one)")
	fs.BoolVar(&s.keep, "keep", false, "keep the database and the work directory (logs) at the end")
	fs.BoolVar(&s.broken, "broken", false, "build the relay deliberately broken (checkpoint before Kafka's ack) to show the checker catches it")
	fs.BoolVar(&s.json, "json", false, "print the report as JSON")
	fs.DurationVar(&s.settle, "settle", 3*time.Minute, "how long the pipeline may take to catch up after the load before the checks run anyway")
	fs.DurationVar(&s.giveUp, "give-up", 3*time.Minute, "how long a client retries one command without a definite answer")
	fs.DurationVar(&s.sessionLimit, "session-timeout", 6*time.Second, "consumer-group session timeout of the projector and the process manager")
	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return s, config.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case s.accounts < 2 || s.accounts > 100_000:
		return s, config.UsageError{Err: fmt.Errorf("--accounts must be from 2 to 100000")}
	case s.commands < 2*s.accounts+100:
		return s, config.UsageError{Err: fmt.Errorf("--commands must be at least 2 × --accounts + 100 (%d): every account is opened and activated first", 2*s.accounts+100)}
	case s.faults < 0 || s.faults > 10_000:
		return s, config.UsageError{Err: fmt.Errorf("--faults must be from 0 to 10000")}
	case s.clients < 1 || s.clients > 1024:
		return s, config.UsageError{Err: fmt.Errorf("--clients must be from 1 to 1024")}
	case s.principals < 2 || s.principals > s.accounts:
		return s, config.UsageError{Err: fmt.Errorf("--principals must be from 2 (a stranger needs someone else's account) to --accounts (%d)", s.accounts)}
	case s.partitions < 1 || s.partitions > 1000:
		return s, config.UsageError{Err: fmt.Errorf("--partitions must be from 1 to 1000")}
	case s.settle <= 0 || s.giveUp <= 0:
		return s, config.UsageError{Err: fmt.Errorf("--settle and --give-up must be positive")}
	case s.sessionLimit < 6*time.Second:
		return s, config.UsageError{Err: fmt.Errorf("--session-timeout must be at least 6s (Kafka's group.min.session.timeout.ms)")}
	}
	if u, err := url.Parse(s.adminURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return s, config.UsageError{Err: fmt.Errorf("%s is not a postgres:// URL", fs.Setting("database-url"))}
	}
	if _, err := exec.LookPath(s.redisServer); err != nil {
		return s, config.UsageError{Err: fmt.Errorf("--redis-server: %v (install Debian's redis-server)", err)}
	}
	return s, nil
}
