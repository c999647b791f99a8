package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/writer"
)

// settings is every setting of the writer, from flags or the environment.
type settings struct {
	// tracerProvider makes the spans (set from OTEL_* by run, not a flag).
	tracerProvider trace.TracerProvider
	// propagator reads trace context from requests (OTEL_PROPAGATORS, set by run).
	propagator      propagation.TextMapPropagator
	databaseURL     string
	dbMaxConns      int
	httpAddr        string
	migrate         bool
	snapshotEvery   int
	maxBodyBytes    int64
	maxInFlight     int
	admissionWait   time.Duration
	shutdownTimeout time.Duration
	logLevel        slog.Level
	pprofAddr       string
	idempotencyTTL  time.Duration

	relay     bool // run the relay in this process
	processes bool // run the domains' process managers in this process
	// processSession is the process managers' consumer-group session
	// timeout: how long the work on a dead manager's partitions waits.
	processSession time.Duration
	kafka          kafkaSettings
	// auth says how the API authenticates callers (serve only).
	auth config.Auth
}

// kafkaSettings say how the relay reaches Kafka and names its topics.
type kafkaSettings struct {
	config.Kafka
	embedded     bool
	embeddedDir  string
	embeddedPort int
}

func parseSettings(cmd string, args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	fs := config.New("writer "+cmd, stderr)
	fs.StringVar(&s.databaseURL, "database-url", "", "Postgres URL of the event store (required)")
	fs.Env("database-url", "DATABASE_URL")
	fs.IntVar(&s.dbMaxConns, "db-max-conns", 32, "largest number of Postgres connections")
	fs.Env("db-max-conns", "DATABASE_MAX_CONNS")
	fs.StringVar(&s.httpAddr, "http-addr", ":8080", "address the HTTP API (or, for 'writer relay', /metrics and health) listens on")
	fs.Env("http-addr", "WRITER_HTTP_ADDR")
	fs.BoolVar(&s.migrate, "migrate", false, "apply database migrations at start")
	fs.Env("migrate", "WRITER_MIGRATE")
	fs.IntVar(&s.snapshotEvery, "snapshot-every", 100, "store a snapshot every N events of an aggregate")
	fs.Env("snapshot-every", "SNAPSHOT_EVERY")
	fs.Int64Var(&s.maxBodyBytes, "max-body-bytes", 64<<10, "largest command body accepted; larger ones get 413")
	fs.Env("max-body-bytes", "WRITER_MAX_BODY_BYTES")
	fs.IntVar(&s.maxInFlight, "max-in-flight", writer.DefaultConfig().MaxInFlight, "most commands worked on at once; more wait --admission-wait for room, then get 503 overloaded (0: no bound)")
	fs.Env("max-in-flight", "WRITER_MAX_IN_FLIGHT")
	fs.DurationVar(&s.admissionWait, "admission-wait", writer.DefaultConfig().AdmissionWait, "how long a command beyond --max-in-flight waits for room")
	fs.Env("admission-wait", "WRITER_ADMISSION_WAIT")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	fs.Env("shutdown-timeout", "SHUTDOWN_TIMEOUT")
	fs.DurationVar(&s.idempotencyTTL, "idempotency-key-ttl", 24*time.Hour, "how long an Idempotency-Key is remembered; older ones are deleted hourly")
	fs.Env("idempotency-key-ttl", "IDEMPOTENCY_KEY_TTL")
	fs.StringVar(&s.pprofAddr, "pprof-addr", "", "if set, serve Go's /debug/pprof profiles on this address (keep it private)")
	fs.Env("pprof-addr", "PPROF_ADDR")
	fs.TextVar(&s.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.Env("log-level", "LOG_LEVEL")

	fs.BoolVar(&s.relay, "relay", true, "run the relay to Kafka in this process (one leads per database; the others stand by)")
	fs.Env("relay", "WRITER_RELAY")
	fs.BoolVar(&s.processes, "processes", true, "run the domains' process managers in this process (the managers of a cluster share a consumer group each)")
	fs.Env("processes", "WRITER_PROCESSES")
	fs.DurationVar(&s.processSession, "process-session-timeout", 10*time.Second, "how soon a dead process manager's partitions move to the others (Kafka allows 6s to 30m by default)")
	fs.Env("process-session-timeout", "WRITER_PROCESS_SESSION_TIMEOUT")
	if cmd == "serve" {
		s.auth.Register(fs)
	}
	k := &s.kafka
	k.Register(fs)
	fs.Lookup("kafka-brokers").Usage = "comma-separated Kafka brokers, host:port (required for the relay unless --kafka-embedded) ($KAFKA_BROKERS)"
	fs.BoolVar(&k.embedded, "kafka-embedded", false, "start an in-process Kafka (kfake) for development and relay to it")
	fs.Env("kafka-embedded", "KAFKA_EMBEDDED")
	fs.StringVar(&k.embeddedDir, "kafka-embedded-dir", "", "directory the embedded Kafka keeps its data in (empty: memory only)")
	fs.Env("kafka-embedded-dir", "KAFKA_EMBEDDED_DIR")
	fs.IntVar(&k.embeddedPort, "kafka-embedded-port", 9092, "port of the embedded Kafka on 127.0.0.1 (0: any free port)")
	fs.Env("kafka-embedded-port", "KAFKA_EMBEDDED_PORT")

	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return s, config.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	relayRuns := cmd == "relay" || (cmd == "serve" && s.relay)
	processesRun := cmd == "processes" || (cmd == "serve" && s.processes)
	switch {
	case s.databaseURL == "":
		return s, config.UsageError{Err: fmt.Errorf("%s is required, e.g. postgres://postgres@127.0.0.1:5432/tributary", fs.Setting("database-url"))}
	case s.dbMaxConns < 1:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 1", fs.Setting("db-max-conns"))}
	case s.snapshotEvery < 1:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 1", fs.Setting("snapshot-every"))}
	case s.idempotencyTTL < time.Minute:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 1m", fs.Setting("idempotency-key-ttl"))}
	case s.maxBodyBytes < 1024:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 1024", fs.Setting("max-body-bytes"))}
	case s.maxInFlight < 0:
		return s, config.UsageError{Err: fmt.Errorf("%s must be 0 (no bound) or more", fs.Setting("max-in-flight"))}
	case s.admissionWait < 0 || s.admissionWait > time.Minute:
		return s, config.UsageError{Err: fmt.Errorf("%s must be between 0 and 1m", fs.Setting("admission-wait"))}
	case relayRuns && k.Brokers == "" && !k.embedded:
		return s, config.UsageError{Err: fmt.Errorf("%s is required for the relay (or set %s for development, or %s=false to run the relay elsewhere)",
			fs.Setting("kafka-brokers"), fs.Setting("kafka-embedded"), fs.Setting("relay"))}
	case processesRun && k.Brokers == "" && !k.embedded:
		return s, config.UsageError{Err: fmt.Errorf("%s is required for the process managers (or %s=false to run them elsewhere)",
			fs.Setting("kafka-brokers"), fs.Setting("processes"))}
	case cmd == "processes" && k.embedded:
		return s, config.UsageError{Err: fmt.Errorf("%s belongs to the process that runs the relay; 'writer processes' needs %s", fs.Setting("kafka-embedded"), fs.Setting("kafka-brokers"))}
	case s.processSession < 6*time.Second:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 6s (Kafka's group.min.session.timeout.ms)", fs.Setting("process-session-timeout"))}
	case k.Brokers != "" && k.embedded:
		return s, config.UsageError{Err: fmt.Errorf("%s and %s exclude each other", fs.Setting("kafka-brokers"), fs.Setting("kafka-embedded"))}
	}
	if err := k.Check(fs); err != nil {
		return s, config.UsageError{Err: err}
	}
	if _, _, err := net.SplitHostPort(s.httpAddr); err != nil {
		return s, config.UsageError{Err: fmt.Errorf("%s: %v", fs.Setting("http-addr"), err)}
	}
	if _, err := pgxpool.ParseConfig(s.databaseURL); err != nil {
		return s, config.UsageError{Err: fmt.Errorf("%s is not a valid Postgres URL: %v", fs.Setting("database-url"), err)}
	}
	if (relayRuns || processesRun) && !k.embedded {
		if _, err := k.Client("tributary-relay").Options(); err != nil {
			return s, config.UsageError{Err: err}
		}
	}
	if cmd == "serve" {
		if err := s.auth.Check(fs); err != nil {
			return s, config.UsageError{Err: err}
		}
	}
	return s, nil
}
