package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/writer"
)

// startEmbeddedKafka starts an in-process Kafka (kfake) on 127.0.0.1:port
// (any free port for 0) for development, keeping its data in dir if set.
func startEmbeddedKafka(dir string, port int, logger *slog.Logger) (*kfake.Cluster, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.ClusterID("tributary-dev")}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	if dir != "" {
		opts = append(opts, kfake.DataDir(dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("KAFKA_EMBEDDED: start the in-process Kafka on port %d (KAFKA_EMBEDDED_PORT): %w", port, err)
	}
	logger.Info("embedded Kafka (kfake) listening", "brokers", strings.Join(c.ListenAddrs(), ","), "data_dir", dir)
	return c, nil
}

// startedRelay is a relay ready to run, with what must be closed after it.
type startedRelay struct {
	relay  *relay.Relay
	close  func()
	broker string
}

// newRelay connects to Kafka (or starts the embedded one) and checks the
// topics, failing fast with a message naming the setting when Kafka cannot
// be reached or a topic's partition count differs.
// appended, when not nil, announces the appends of this process (relay.Config.Appended).
func newRelay(ctx context.Context, s settings, domains *registry.Registry, pool *pgxpool.Pool, appended <-chan struct{}, reg prometheus.Registerer, logger *slog.Logger) (*startedRelay, error) {
	k := s.kafka
	cfg := k.Client("tributary-relay")
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if k.embedded {
		c, err := startEmbeddedKafka(k.embeddedDir, k.embeddedPort, logger)
		if err != nil {
			return nil, err
		}
		closers = append(closers, c.Close)
		cfg.Brokers = c.ListenAddrs()
	}
	opts, err := cfg.Options()
	if err != nil {
		closeAll()
		return nil, config.UsageError{Err: err}
	}
	opts = append(opts, kafka.ClientMetrics(reg, nil))
	client, err := kgo.NewClient(append(opts, relay.ProducerOptions(relay.DefaultConfig().AckTimeout)...)...)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	closers = append(closers, client.Close)

	rcfg := relay.DefaultConfig()
	rcfg.Topics = k.Topics()
	rcfg.AggregateTypes = domains.AggregateTypes()
	rcfg.TracerProvider = s.tracerProvider
	rcfg.Appended = appended
	r := relay.New(rcfg, s.databaseURL, pool, domains.Upcasters(), client, relay.NewMetrics(reg), logger, relay.Hooks{})

	startCtx, cancel := context.WithTimeout(ctx, k.StartTimeout)
	defer cancel()
	// A refused connection fails at once: try again until the start timeout
	// (Kafka may come up after the relay, or be restarting).
	err = r.EnsureTopics(startCtx)
	for pause := 100 * time.Millisecond; err != nil && !errors.Is(err, kafka.ErrPartitionMismatch) && startCtx.Err() == nil; pause = min(2*pause, 2*time.Second) {
		logger.Warn("relay: Kafka does not answer yet; trying again", "err", err)
		select {
		case <-startCtx.Done():
		case <-time.After(pause):
			err = r.EnsureTopics(startCtx)
		}
	}
	if err != nil {
		closeAll()
		if errors.Is(err, kafka.ErrPartitionMismatch) {
			return nil, fmt.Errorf("KAFKA_PARTITIONS / KAFKA_TOPIC_PREFIX: %w", err)
		}
		return nil, fmt.Errorf("cannot reach Kafka at KAFKA_BROKERS=%s (waited up to KAFKA_START_TIMEOUT=%s): %w", strings.Join(cfg.Brokers, ","), k.StartTimeout, err)
	}
	return &startedRelay{relay: r, close: closeAll, broker: strings.Join(cfg.Brokers, ",")}, nil
}

// newProcesses returns the domains' process managers for this process.
// They reach Kafka like the relay (brokers is the embedded cluster's, when
// the relay started one) and run their commands with api's handlers when
// the API runs in this process too — one group commit, one cache of states
// and one lock per aggregate for all — else with their own on pool.
func newProcesses(s settings, domains *registry.Registry, pool *pgxpool.Pool, api *writer.Server, brokers string, logger *slog.Logger) ([]registry.ProcessRunner, error) {
	var handlers *aggregate.Handlers
	if api != nil {
		handlers = api.Handlers()
	} else {
		var storeOpts []postgres.StoreOption
		if s.tracerProvider != nil {
			storeOpts = append(storeOpts, postgres.WithTracerProvider(s.tracerProvider))
		}
		store := postgres.NewStore(pool, domains.Upcasters(), storeOpts...)
		var err error
		handlers, err = aggregate.Bind(domains.Aggregates(), store, domains.Schemas(), aggregate.Options{SnapshotEvery: s.snapshotEvery})
		if err != nil {
			return nil, err
		}
	}
	var runners []registry.ProcessRunner
	for _, p := range domains.Processes() {
		cfg := s.kafka.Client("tributary-" + p.Name)
		if brokers != "" {
			cfg.Brokers = strings.Split(brokers, ",")
		}
		opts, err := cfg.Options()
		if err != nil {
			return nil, config.UsageError{Err: err}
		}
		topics := s.kafka.Topics()
		runner, err := p.New(registry.ProcessDeps{
			Handlers: handlers, Client: opts, Topics: topics, Group: topics.Prefix + "." + p.Name,
			SessionTimeout: s.processSession, Upcasters: domains.Upcasters(), TracerProvider: s.tracerProvider,
			Logger: logger.With("process", p.Name),
		})
		if err != nil {
			return nil, fmt.Errorf("process manager %s: %w", p.Name, err)
		}
		runners = append(runners, runner)
	}
	return runners, nil
}
