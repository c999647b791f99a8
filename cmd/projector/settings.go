package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/projector"
)

// settings is every setting of the projector, from flags or the environment.
type settings struct {
	redis           config.Redis
	httpAddr        string
	projections     []string
	shutdownTimeout time.Duration
	logLevel        slog.Level
	jsonOutput      bool
	force           bool
	kafka           config.Kafka
	projector       projector.Config
	args            []string // positional arguments after the flags
}

func parseSettings(cmd string, args []string, known []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	s := settings{projector: projector.DefaultConfig()}
	fs := config.New("projector "+cmd, stderr)
	s.redis.Register(fs)
	fs.StringVar(&s.httpAddr, "http-addr", ":8081", "address of /metrics, /healthz and /readyz")
	fs.Env("http-addr", "PROJECTOR_HTTP_ADDR")
	names := strings.Join(known, ",")
	fs.StringVar(&names, "projections", names, "comma-separated projections this process runs")
	fs.Env("projections", "PROJECTIONS")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long the batches in flight may take to finish on SIGTERM")
	fs.Env("shutdown-timeout", "SHUTDOWN_TIMEOUT")
	fs.TextVar(&s.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.Env("log-level", "LOG_LEVEL")
	p := &s.projector
	fs.StringVar(&p.GroupPrefix, "group-prefix", p.GroupPrefix, "prefix of the consumer groups: <prefix>.projector.<projections joined by +> (the shared consumer), <prefix>.<projection>.g<generation> (a rebuild)")
	fs.Env("group-prefix", "PROJECTOR_GROUP_PREFIX")
	fs.IntVar(&p.BatchSize, "batch-size", p.BatchSize, "most events applied in one atomic Redis step")
	fs.Env("batch-size", "PROJECTOR_BATCH_SIZE")
	fs.IntVar(&p.Retries, "retries", p.Retries, "retries of an event that cannot be applied before it is dead-lettered")
	fs.Env("retries", "PROJECTOR_RETRIES")
	fs.DurationVar(&p.RetryBackoff, "retry-backoff", p.RetryBackoff, "first pause between retries, doubled after each")
	fs.Env("retry-backoff", "PROJECTOR_RETRY_BACKOFF")
	fs.DurationVar(&p.SessionTimeout, "session-timeout", p.SessionTimeout, "consumer-group session timeout: how soon a dead member's partitions move")
	fs.Env("session-timeout", "PROJECTOR_SESSION_TIMEOUT")
	fs.DurationVar(&p.DropGrace, "drop-grace", p.DropGrace, "how long a replaced generation's keys stay for readers that resolved it (at least 15s: readers keep the served generation up to READER_VIEW_CACHE, at most 10s)")
	fs.Env("drop-grace", "PROJECTOR_DROP_GRACE")
	fs.DurationVar(&p.FetchMaxWait, "fetch-max-wait", p.FetchMaxWait, "longest Kafka may hold a fetch for partitions with nothing new (also how soon paused partitions are fetched again)")
	fs.Env("fetch-max-wait", "PROJECTOR_FETCH_MAX_WAIT")
	fetchBytes, partitionBytes := int(p.FetchMaxBytes), int(p.FetchMaxPartitionBytes)
	fs.IntVar(&fetchBytes, "fetch-max-bytes", fetchBytes, "most bytes one fetch response may carry (small fetches start work sooner)")
	fs.Env("fetch-max-bytes", "PROJECTOR_FETCH_MAX_BYTES")
	fs.IntVar(&partitionBytes, "fetch-max-partition-bytes", partitionBytes, "most bytes of one partition in a fetch response")
	fs.Env("fetch-max-partition-bytes", "PROJECTOR_FETCH_MAX_PARTITION_BYTES")
	fs.DurationVar(&p.Poll, "poll", p.Poll, "how often generations are checked and the lag measured")
	fs.Env("poll", "PROJECTOR_POLL")
	s.kafka.Register(fs)
	fs.Lookup("kafka-brokers").DefValue = "127.0.0.1:9092"
	s.kafka.Brokers = "127.0.0.1:9092"
	switch cmd {
	case "list":
		fs.BoolVar(&s.jsonOutput, "json", false, "print JSON lines instead of a table")
	case "rebuild":
		fs.BoolVar(&s.force, "force", false, "start over even if a rebuild is running")
	}

	if err := fs.Parse(args, getenv); err != nil {
		return s, config.UsageError{Err: err}
	}
	s.args = fs.Args()
	s.projections = nil
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(known, n) {
			return s, config.UsageError{Err: fmt.Errorf("%s: unknown projection %q; known: %s", fs.Setting("projections"), n, strings.Join(known, ", "))}
		}
		s.projections = append(s.projections, n)
	}
	switch {
	case len(s.projections) == 0:
		return s, config.UsageError{Err: fmt.Errorf("%s names no projection", fs.Setting("projections"))}
	case p.BatchSize < 1 || p.BatchSize > 10_000:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 1 to 10000", fs.Setting("batch-size"))}
	case p.Retries < 0 || p.Retries > 20:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 0 to 20", fs.Setting("retries"))}
	case fetchBytes < 64<<10 || fetchBytes > 256<<20 || partitionBytes < 16<<10 || partitionBytes > fetchBytes:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 64 KiB to 256 MiB, and %s from 16 KiB to that", fs.Setting("fetch-max-bytes"), fs.Setting("fetch-max-partition-bytes"))}
	case p.FetchMaxWait < 10*time.Millisecond || p.FetchMaxWait > 30*time.Second:
		return s, config.UsageError{Err: fmt.Errorf("%s must be from 10ms to 30s", fs.Setting("fetch-max-wait"))}
	case p.RetryBackoff <= 0 || p.Poll <= 0:
		return s, config.UsageError{Err: fmt.Errorf("%s and %s must be positive", fs.Setting("retry-backoff"), fs.Setting("poll"))}
	case p.DropGrace < 15*time.Second:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 15s: readers may read a replaced generation for up to their view cache (READER_VIEW_CACHE, at most 10s)", fs.Setting("drop-grace"))}
	case p.SessionTimeout < 6*time.Second:
		return s, config.UsageError{Err: fmt.Errorf("%s must be at least 6s (Kafka's group.min.session.timeout.ms)", fs.Setting("session-timeout"))}
	case s.kafka.Brokers == "":
		return s, config.UsageError{Err: fmt.Errorf("%s is required", fs.Setting("kafka-brokers"))}
	}
	if err := s.kafka.Check(fs); err != nil {
		return s, config.UsageError{Err: err}
	}
	if _, err := s.kafka.Client("tributary-projector").Options(); err != nil {
		return s, config.UsageError{Err: err}
	}
	if err := s.redis.Check(fs); err != nil {
		return s, config.UsageError{Err: err}
	}
	if _, _, err := net.SplitHostPort(s.httpAddr); err != nil {
		return s, config.UsageError{Err: fmt.Errorf("%s: %v", fs.Setting("http-addr"), err)}
	}
	p.FetchMaxBytes, p.FetchMaxPartitionBytes = int32(fetchBytes), int32(partitionBytes)
	p.Topics = s.kafka.Topics()
	p.StartTimeout = s.kafka.StartTimeout
	p.RedisPrefix = s.redis.Prefix
	return s, nil
}
