package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tributary-es/tributary/internal/config"
)

// usageError is a bad command line or setting: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// settings is every setting of the writer, from flags or the environment.
type settings struct {
	databaseURL     string
	dbMaxConns      int
	httpAddr        string
	migrate         bool
	snapshotEvery   int
	maxBodyBytes    int64
	principalHeader string
	shutdownTimeout time.Duration
	logLevel        slog.Level
	pprofAddr       string
	idempotencyTTL  time.Duration

	relay bool // run the relay in this process
	kafka kafkaSettings
}

// kafkaSettings say how the relay reaches Kafka and names its topics.
type kafkaSettings struct {
	brokers           string
	embedded          bool
	embeddedDir       string
	embeddedPort      int
	partitions        int
	replicationFactor int
	topicPrefix       string
	startTimeout      time.Duration
	tls               bool
	tlsCAFile         string
	tlsCertFile       string
	tlsKeyFile        string
	saslMechanism     string
	saslUsername      string
	saslPassword      string
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
	fs.StringVar(&s.principalHeader, "principal-header", "X-Principal", "header an authenticating proxy sets to the acting principal")
	fs.Env("principal-header", "WRITER_PRINCIPAL_HEADER")
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
	k := &s.kafka
	fs.StringVar(&k.brokers, "kafka-brokers", "", "comma-separated Kafka brokers, host:port (required for the relay unless --kafka-embedded)")
	fs.Env("kafka-brokers", "KAFKA_BROKERS")
	fs.BoolVar(&k.embedded, "kafka-embedded", false, "start an in-process Kafka (kfake) for development and relay to it")
	fs.Env("kafka-embedded", "KAFKA_EMBEDDED")
	fs.StringVar(&k.embeddedDir, "kafka-embedded-dir", "", "directory the embedded Kafka keeps its data in (empty: memory only)")
	fs.Env("kafka-embedded-dir", "KAFKA_EMBEDDED_DIR")
	fs.IntVar(&k.embeddedPort, "kafka-embedded-port", 9092, "port of the embedded Kafka on 127.0.0.1 (0: any free port)")
	fs.Env("kafka-embedded-port", "KAFKA_EMBEDDED_PORT")
	fs.IntVar(&k.partitions, "kafka-partitions", 12, "partitions of each event topic; fixed for the topic's life")
	fs.Env("kafka-partitions", "KAFKA_PARTITIONS")
	fs.IntVar(&k.replicationFactor, "kafka-replication-factor", -1, "replication factor of new topics (-1: the broker's default)")
	fs.Env("kafka-replication-factor", "KAFKA_REPLICATION_FACTOR")
	fs.StringVar(&k.topicPrefix, "kafka-topic-prefix", "tributary", "prefix of the event topics: <prefix>.<aggregate type>.events")
	fs.Env("kafka-topic-prefix", "KAFKA_TOPIC_PREFIX")
	fs.DurationVar(&k.startTimeout, "kafka-start-timeout", 15*time.Second, "how long the start may wait for Kafka before it gives up")
	fs.Env("kafka-start-timeout", "KAFKA_START_TIMEOUT")
	fs.BoolVar(&k.tls, "kafka-tls", false, "connect to Kafka with TLS")
	fs.Env("kafka-tls", "KAFKA_TLS")
	fs.StringVar(&k.tlsCAFile, "kafka-tls-ca-file", "", "PEM file of the CAs that sign the brokers' certificates (empty: system roots)")
	fs.Env("kafka-tls-ca-file", "KAFKA_TLS_CA_FILE")
	fs.StringVar(&k.tlsCertFile, "kafka-tls-cert-file", "", "PEM client certificate for mutual TLS")
	fs.Env("kafka-tls-cert-file", "KAFKA_TLS_CERT_FILE")
	fs.StringVar(&k.tlsKeyFile, "kafka-tls-key-file", "", "PEM key of the client certificate")
	fs.Env("kafka-tls-key-file", "KAFKA_TLS_KEY_FILE")
	fs.StringVar(&k.saslMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.Env("kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM")
	fs.StringVar(&k.saslUsername, "kafka-sasl-username", "", "SASL user name")
	fs.Env("kafka-sasl-username", "KAFKA_SASL_USERNAME")
	fs.StringVar(&k.saslPassword, "kafka-sasl-password", "", "SASL password (prefer the environment variable)")
	fs.Env("kafka-sasl-password", "KAFKA_SASL_PASSWORD")

	if err := fs.Parse(args, getenv); err != nil {
		return s, usageError{err}
	}
	if fs.NArg() > 0 {
		return s, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	relayRuns := cmd == "relay" || (cmd == "serve" && s.relay)
	switch {
	case s.databaseURL == "":
		return s, usageError{fmt.Errorf("%s is required, e.g. postgres://postgres@127.0.0.1:5432/tributary", fs.Setting("database-url"))}
	case s.dbMaxConns < 1:
		return s, usageError{fmt.Errorf("%s must be at least 1", fs.Setting("db-max-conns"))}
	case s.snapshotEvery < 1:
		return s, usageError{fmt.Errorf("%s must be at least 1", fs.Setting("snapshot-every"))}
	case s.idempotencyTTL < time.Minute:
		return s, usageError{fmt.Errorf("%s must be at least 1m", fs.Setting("idempotency-key-ttl"))}
	case s.maxBodyBytes < 1024:
		return s, usageError{fmt.Errorf("%s must be at least 1024", fs.Setting("max-body-bytes"))}
	case relayRuns && k.brokers == "" && !k.embedded:
		return s, usageError{fmt.Errorf("%s is required for the relay (or set %s for development, or %s=false to run the relay elsewhere)",
			fs.Setting("kafka-brokers"), fs.Setting("kafka-embedded"), fs.Setting("relay"))}
	case k.brokers != "" && k.embedded:
		return s, usageError{fmt.Errorf("%s and %s exclude each other", fs.Setting("kafka-brokers"), fs.Setting("kafka-embedded"))}
	case k.partitions < 1 || k.partitions > 10_000:
		return s, usageError{fmt.Errorf("%s must be from 1 to 10000", fs.Setting("kafka-partitions"))}
	case k.replicationFactor == 0 || k.replicationFactor < -1 || k.replicationFactor > 32:
		return s, usageError{fmt.Errorf("%s must be -1 or from 1 to 32", fs.Setting("kafka-replication-factor"))}
	case k.topicPrefix == "" || strings.ContainsAny(k.topicPrefix, " /\\"):
		return s, usageError{fmt.Errorf("%s must be a non-empty topic name prefix", fs.Setting("kafka-topic-prefix"))}
	}
	if _, _, err := net.SplitHostPort(s.httpAddr); err != nil {
		return s, usageError{fmt.Errorf("%s: %v", fs.Setting("http-addr"), err)}
	}
	if _, err := pgxpool.ParseConfig(s.databaseURL); err != nil {
		return s, usageError{fmt.Errorf("%s is not a valid Postgres URL: %v", fs.Setting("database-url"), err)}
	}
	if relayRuns && !k.embedded {
		if _, err := k.clientConfig().Options(); err != nil {
			return s, usageError{err}
		}
	}
	return s, nil
}
