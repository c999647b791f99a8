package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/log/relay"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	readtransfers "github.com/tributary-es/tributary/internal/readmodels/transfers"
	"github.com/tributary-es/tributary/internal/registry"
)

// pipelineProjections are the projections cmd/projector runs by default:
// all of them.
func pipelineProjections() []readmodels.Projection {
	return []readmodels.Projection{
		accounts.SummaryProjection{}, accounts.HistoryProjection{}, accounts.DirectoryProjection{},
		correlation.Projection{Types: []string{account.AggregateType, transfer.AggregateType}},
		readtransfers.Projection{},
	}
}

// pipelineStack is the whole platform in this process, each part wired as
// its command wires it, with default settings: the writer's API, the relay
// and the transfers process manager (cmd/writer serve), the projectors of
// every projection (cmd/projector run) and the reader's API (cmd/reader),
// over one Postgres database, an in-process Kafka (kfake) and Redis under a
// key prefix of its own. Each part has its own registry, as each process
// has, and the Redis clients are apart as the processes' are.
type pipelineStack struct {
	pool        *pgxpool.Pool
	auth        *benchAuth // what the writer and the reader verify
	cluster     *kfake.Cluster
	writer      *writerServer
	reader      *http.Server
	readerURL   string
	readerRedis redis.UniversalClient
	projRedis   redis.UniversalClient
	projections []readmodels.Projection
	projectors  []*projector.Projector
	consumer    *projector.Consumer // feeds the projectors, as cmd/projector run
	// registries of the relay and the projectors: the rates come from
	// their counters, as a dashboard's would.
	relayReg, projectorReg *prometheus.Registry
	stop                   context.CancelFunc
	group                  *errgroup.Group
	// failed is done when a background part (relay, process manager,
	// projector) stopped on its own.
	failed context.Context
	closes []func()
}

// startPipeline starts every part, the writer's and the reader's APIs
// verifying the tokens of a, and waits until the projectors consume.
//
// Each part is built and started labelled with its name (see labelled), so
// that the CPU profile of a measured window tells the parts apart. The
// relay and the process manager use the writer's Postgres pool, and the
// manager the API's store; a pool has no goroutine of its own at work (a
// query runs in its caller's goroutine, a connection is made in one its
// caller starts), but the store's group commit has: a committer carries
// the label of the append that started it, an API request's or a manager
// step's, and sends the batches of both while appends wait.
func startPipeline(ctx context.Context, databaseURL, redisAddr, prefix string, partitions int32, a *benchAuth, logger *slog.Logger) (_ *pipelineStack, err error) {
	p := &pipelineStack{projections: pipelineProjections(), auth: a}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	domains, err := domains.All()
	if err != nil {
		return nil, err
	}
	labelled(ctx, partKafka, func(context.Context) {
		if p.cluster, err = kfake.NewCluster(kfake.NumBrokers(1)); err != nil {
			err = fmt.Errorf("start kfake: %w", err)
			return
		}
		p.closes = append(p.closes, p.cluster.Close)
	})
	if err != nil {
		return nil, err
	}
	topics := kafka.Topics{Prefix: prefix, Partitions: partitions, ReplicationFactor: -1}
	kafkaOpts := func(clientID string) []kgo.Opt {
		opts, _ := kafka.ClientConfig{Brokers: p.cluster.ListenAddrs(), ClientID: clientID}.Options() // brokers are host:port
		return opts
	}

	// cmd/writer serve: the API, the relay, the transfers process manager.
	labelled(ctx, partWriter, func(ctx context.Context) {
		if p.pool, err = openWriterPool(ctx, databaseURL); err != nil {
			return
		}
		p.closes = append(p.closes, p.pool.Close)
		if p.writer, err = serveWriter(ctx, p.pool, a, domains, processRegistry(), logger); err != nil {
			return
		}
		p.closes = append(p.closes, func() { _ = p.writer.close() })
	})
	if err != nil {
		return nil, err
	}
	var rl *relay.Relay
	labelled(ctx, partRelay, func(ctx context.Context) {
		p.relayReg = processRegistry()
		client, cerr := kgo.NewClient(append(append(kafkaOpts("tributary-relay"), kafka.ClientMetrics(p.relayReg, nil)),
			relay.ProducerOptions(relay.DefaultConfig().AckTimeout)...)...)
		if cerr != nil {
			err = fmt.Errorf("relay: kafka client: %w", cerr)
			return
		}
		p.closes = append(p.closes, client.Close)
		rcfg := relay.DefaultConfig()
		rcfg.Topics = topics
		rcfg.AggregateTypes = domains.AggregateTypes()
		rcfg.Appended = p.writer.api.Handlers().Store().Appended() // as cmd/writer serve
		rl = relay.New(rcfg, databaseURL, p.pool, domains.Upcasters(), client, relay.NewMetrics(p.relayReg), logger, relay.Hooks{})
		if err = rl.EnsureTopics(ctx); err != nil {
			err = fmt.Errorf("relay: %w", err)
		}
	})
	if err != nil {
		return nil, err
	}
	var managers []registry.ProcessRunner
	labelled(ctx, partTransfers, func(context.Context) {
		// As cmd/writer serve: the managers run on the API's handlers.
		for _, proc := range domains.Processes() {
			m, perr := proc.New(registry.ProcessDeps{
				Handlers: p.writer.api.Handlers(), Client: kafkaOpts("tributary-" + proc.Name), Topics: topics,
				Group: topics.Prefix + "." + proc.Name, SessionTimeout: 10 * time.Second, Upcasters: domains.Upcasters(), Logger: logger,
			})
			if perr != nil {
				err = fmt.Errorf("process manager %s: %w", proc.Name, perr)
				return
			}
			managers = append(managers, m)
		}
	})
	if err != nil {
		return nil, err
	}

	// cmd/projector run: every projection.
	labelled(ctx, partProjectors, func(context.Context) {
		p.projRedis = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{redisAddr}})
		p.closes = append(p.closes, func() { _ = p.projRedis.Close() })
		p.projectorReg = processRegistry()
		pcfg := projector.DefaultConfig()
		pcfg.Client = kafkaOpts("tributary-projector")
		pcfg.Topics = topics
		pcfg.GroupPrefix = prefix
		pcfg.RedisPrefix = prefix
		deps := projector.Deps{Redis: p.projRedis, Schemas: domains.Schemas(), Upcasters: domains.Upcasters(),
			Metrics: projector.NewMetrics(p.projectorReg), Logger: logger, KafkaMetrics: p.projectorReg}
		for _, proj := range p.projections {
			p.projectors = append(p.projectors, projector.New(proj, pcfg, deps))
		}
		p.consumer, err = projector.NewConsumer(p.projectors...)
	})

	// cmd/reader.
	labelled(ctx, partReader, func(context.Context) {
		p.readerRedis = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{redisAddr}})
		p.closes = append(p.closes, func() { _ = p.readerRedis.Close() })
		rdcfg := reader.DefaultConfig()
		rdcfg.Authenticator = a.authenticator
		api, aerr := reader.NewServer(rdcfg, p.readerRedis, prefix, domains.Reader(), processRegistry(), domains.API("reader").Handler(), logger)
		if aerr != nil {
			err = aerr
			return
		}
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			err = fmt.Errorf("reader: listen: %w", lerr)
			return
		}
		p.reader = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
		p.readerURL = "http://" + ln.Addr().String()
		go func() { _ = p.reader.Serve(ln) }()
		p.closes = append(p.closes, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = p.reader.Shutdown(sctx)
		})
	})
	if err != nil {
		return nil, err
	}

	// The background parts run until close; one that stops on its own
	// cancels the others, and the benchmark notices. Each goroutine is
	// started labelled with its part's name, and keeps it.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	p.stop, p.group, p.failed = stop, g, gctx
	labelled(ctx, partRelay, func(context.Context) {
		g.Go(func() error { return named("relay", rl.Run(gctx)) })
	})
	labelled(ctx, partTransfers, func(context.Context) {
		for _, m := range managers {
			g.Go(func() error { return named("process manager", m.Run(gctx)) })
		}
	})
	labelled(ctx, partProjectors, func(context.Context) {
		g.Go(func() error { return named("projectors' consumer "+p.consumer.Group(), p.consumer.Run(gctx)) })
	})
	return p, p.waitReady(ctx, 60*time.Second)
}

// named wraps a part's error with its name; a part that returns nil when
// it was not asked to stop is a failure too.
func named(part string, err error) error {
	if err == nil {
		return fmt.Errorf("%s stopped", part)
	}
	return fmt.Errorf("%s: %w", part, err)
}

// waitReady waits until every projector consumes.
func (p *pipelineStack) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ready := true
		for _, pr := range p.projectors {
			ready = ready && pr.Ready()
		}
		switch {
		case ready:
			return nil
		case p.failed.Err() != nil:
			return p.partError()
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("the projectors did not consume within %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// partError is why a background part stopped.
func (p *pipelineStack) partError() error {
	p.stop()
	if err := p.group.Wait(); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return errors.New("pipeline: a part stopped")
}

// close stops every part, newest first.
func (p *pipelineStack) close() {
	if p.stop != nil {
		p.stop()
		_ = p.group.Wait()
	}
	for i := len(p.closes) - 1; i >= 0; i-- {
		p.closes[i]()
	}
	p.closes = nil
}

// processRegistry is a registry with the Go and process collectors, as
// every command starts with.
func processRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// pipelineCounters are the totals since the start that the rates and the
// checks are made of.
type pipelineCounters struct {
	at  time.Time
	cpu cpuSnapshot // the CPU times used so far
	// appended are the events in the event store, by aggregate type.
	appended map[string]int64
	// requested and ended count the transfers requested, and those
	// completed or failed; failed, the failed ones.
	requested, ended, failed int64
	// published is the relay's tributary_relay_events_published_total.
	published float64
	// applied, duplicates and deadLettered are the projectors'
	// tributary_projection_events_total by projection and outcome.
	applied, duplicates, deadLettered map[string]float64
}

func (c pipelineCounters) appendedTotal() int64 {
	var n int64
	for _, v := range c.appended {
		n += v
	}
	return n
}

func (c pipelineCounters) appliedTotal() float64 {
	var n float64
	for _, v := range c.applied {
		n += v
	}
	return n
}

// counters reads the event store and the relay's and projectors' metrics.
func (p *pipelineStack) counters(ctx context.Context) (pipelineCounters, error) {
	c := pipelineCounters{at: time.Now(), cpu: readCPU(), appended: make(map[string]int64),
		applied: make(map[string]float64), duplicates: make(map[string]float64), deadLettered: make(map[string]float64)}
	rows, err := p.pool.Query(ctx, `SELECT aggregate_type, event_type, count(*) FROM events GROUP BY 1, 2`)
	if err != nil {
		return c, fmt.Errorf("count the events: %w", err)
	}
	for rows.Next() {
		var aggType, eventType string
		var n int64
		if err := rows.Scan(&aggType, &eventType, &n); err != nil {
			rows.Close()
			return c, fmt.Errorf("count the events: %w", err)
		}
		c.appended[aggType] += n
		switch eventType {
		case "TransferRequested":
			c.requested += n
		case "TransferCompleted":
			c.ended += n
		case "TransferFailed":
			c.ended += n
			c.failed += n
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("count the events: %w", err)
	}
	relayFamilies, err := p.relayReg.Gather()
	if err != nil {
		return c, fmt.Errorf("read the relay's metrics: %w", err)
	}
	for _, f := range relayFamilies {
		if f.GetName() == "tributary_relay_events_published_total" {
			for _, m := range f.GetMetric() {
				c.published += m.GetCounter().GetValue()
			}
		}
	}
	projFamilies, err := p.projectorReg.Gather()
	if err != nil {
		return c, fmt.Errorf("read the projectors' metrics: %w", err)
	}
	for _, f := range projFamilies {
		if f.GetName() != "tributary_projection_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var name, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "projection":
					name = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			switch outcome {
			case "applied":
				c.applied[name] += m.GetCounter().GetValue()
			case "duplicate":
				c.duplicates[name] += m.GetCounter().GetValue()
			default:
				c.deadLettered[name] += m.GetCounter().GetValue()
			}
		}
	}
	return c, nil
}

// behind says what is not done yet: transfers not ended, events not
// relayed, events not applied by a projection; "" when all is done.
func (p *pipelineStack) behind(c pipelineCounters) string {
	if c.ended < c.requested {
		return fmt.Sprintf("%d of %d transfers not completed or failed", c.requested-c.ended, c.requested)
	}
	if total := c.appendedTotal(); c.published < float64(total) {
		return fmt.Sprintf("%d of %d events not relayed", total-int64(c.published), total)
	}
	for _, proj := range p.projections {
		var want int64
		for _, t := range proj.AggregateTypes() {
			want += c.appended[t]
		}
		if got := c.applied[proj.Name()] + c.deadLettered[proj.Name()]; got < float64(want) {
			return fmt.Sprintf("%s applied %d of %d events", proj.Name(), int64(got), want)
		}
	}
	return ""
}

// settle waits until every requested transfer ended and every event was
// relayed and applied by every projection, and returns the counters then.
// It fails when a part stopped, when that takes longer than limit, and
// when an event was applied twice or dead-lettered.
func (p *pipelineStack) settle(ctx context.Context, limit time.Duration) (pipelineCounters, error) {
	deadline := time.Now().Add(limit)
	for {
		c, err := p.counters(ctx)
		if err != nil {
			return c, err
		}
		lag := p.behind(c)
		if lag == "" {
			for _, proj := range p.projections {
				var want int64
				for _, t := range proj.AggregateTypes() {
					want += c.appended[t]
				}
				name := proj.Name()
				if c.deadLettered[name] > 0 || c.applied[name] != float64(want) {
					return c, fmt.Errorf("%s applied %.0f of %d events and dead-lettered %.0f", name, c.applied[name], want, c.deadLettered[name])
				}
			}
			return c, nil
		}
		switch {
		case p.failed.Err() != nil:
			return c, p.partError()
		case ctx.Err() != nil:
			return c, ctx.Err()
		case time.Now().After(deadline):
			return c, fmt.Errorf("UNAPPLIED EVENTS: after %s, %s", limit, lag)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
