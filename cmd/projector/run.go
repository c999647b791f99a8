package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/projector"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/registry"
	"github.com/tributary-es/tributary/internal/telemetry"
)

const usageFormat = `usage:
  projector [run] [flags]                     consume the event topics (one consumer for all the projections) and keep the read models
  projector rebuild <projection> [flags]      build a new generation from offset 0 beside the served one, then switch
  projector dlq list <projection> [flags]     show the events parked on the projection's dead-letter topic
  projector dlq replay <projection> [flags]   apply the parked events again, oldest first
projections: %s
'projector <command> -h' lists the flags.`

// run dispatches the subcommands over the projections of a registry
// (main's: the build's, domains.All).
func run(ctx context.Context, domains *registry.Registry, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := fmt.Sprintf(usageFormat, strings.Join(domains.ProjectionNames(), ", "))
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "rebuild" || args[0] == "dlq") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "dlq" {
		if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
			return config.UsageError{Err: errors.New("dlq needs a subcommand: list or replay\n" + usage)}
		}
		cmd, args = args[0], args[1:]
	}
	// The projection name comes first for rebuild and dlq: the rest are flags.
	var name string
	if cmd != "run" {
		if len(args) == 0 || domains.Projection(args[0]) == nil {
			return config.UsageError{Err: fmt.Errorf("%s needs a projection name\n%s", cmd, usage)}
		}
		name, args = args[0], args[1:]
	}
	s, err := parseSettings(cmd, args, domains.ProjectionNames(), getenv, stderr)
	if err != nil {
		return err
	}
	if len(s.args) > 0 {
		return config.UsageError{Err: fmt.Errorf("unexpected argument %q\n%s", s.args[0], usage)}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: s.logLevel}))
	tracing, err := telemetry.Setup(ctx, "tributary-projector", getenv)
	if err != nil {
		return config.UsageError{Err: err}
	}
	defer shutdownTracing(tracing, logger)
	opts, _ := s.redis.Options()
	rdb := redis.NewUniversalClient(opts)
	defer rdb.Close()
	if tracing.Exporting {
		if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(telemetry.ChildrenOnly(tracing.TracerProvider))); err != nil {
			return fmt.Errorf("trace Redis: %w", err)
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, s.kafka.StartTimeout)
	defer cancel()
	for err := rdb.Ping(pingCtx).Err(); err != nil; err = rdb.Ping(pingCtx).Err() {
		if pingCtx.Err() != nil {
			return fmt.Errorf("cannot reach Redis at REDIS_URL=%s (waited up to KAFKA_START_TIMEOUT=%s): %w", s.redis.Redacted(), s.kafka.StartTimeout, err)
		}
		logger.Warn("start: Redis does not answer yet; trying again", "err", err)
		select {
		case <-pingCtx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	warnIfEvicting(ctx, rdb, logger)
	kopts, _ := s.kafka.Client("tributary-projector").Options()
	s.projector.Client = kopts
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	deps := projector.Deps{Redis: rdb, Schemas: domains.Schemas(), Upcasters: domains.Upcasters(), Metrics: projector.NewMetrics(reg), Logger: logger,
		KafkaMetrics: reg}
	if tracing.Exporting {
		deps.TracerProvider = tracing.TracerProvider
	}
	newProjector := func(n string) *projector.Projector { return projector.New(domains.Projection(n), s.projector, deps) }

	switch cmd {
	case "rebuild":
		return rebuild(ctx, newProjector(name), s.force, stdout)
	case "list":
		return listDeadLetters(ctx, newProjector(name), s.jsonOutput, stdout)
	case "replay":
		return replayDeadLetters(ctx, newProjector(name), stdout)
	}
	var projectors []*projector.Projector
	for _, n := range s.projections {
		projectors = append(projectors, newProjector(n))
	}
	consumer, err := projector.NewConsumer(projectors...)
	if err != nil {
		return err
	}
	return serve(ctx, s, consumer, projectors, reg, logger)
}

// serve runs the projectors on their shared consumer and the ops endpoints
// until ctx ends.
func serve(ctx context.Context, s settings, consumer *projector.Consumer, projectors []*projector.Projector, reg *prometheus.Registry, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, p := range projectors {
			if !p.Ready() {
				http.Error(w, p.Name()+" is not consuming yet", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "consuming")
	})
	srv := &http.Server{Addr: s.httpAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("PROJECTOR_HTTP_ADDR %s: %w", s.httpAddr, err)
		}
		return nil
	})
	g.Go(func() error { return consumer.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	logger.Info("projector started", "projections", s.projections, "consumergroup", consumer.Group(), "http_addr", s.httpAddr, "kafka_brokers", s.kafka.Brokers)
	err := g.Wait()
	logger.Info("projector stopped")
	return err
}

// warnIfEvicting warns when Redis may evict keys: an evicted position or
// version would corrupt a read model silently.
func warnIfEvicting(ctx context.Context, rdb redis.UniversalClient, logger *slog.Logger) {
	policy, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil && policy["maxmemory-policy"] != "" && policy["maxmemory-policy"] != "noeviction" {
		logger.Warn("Redis maxmemory-policy is not noeviction: an evicted key would leave a read model partial; set maxmemory-policy noeviction",
			"maxmemory-policy", policy["maxmemory-policy"])
	}
}

func rebuild(ctx context.Context, p *projector.Projector, force bool, stdout io.Writer) error {
	last := time.Time{}
	gen, err := p.Rebuild(ctx, force, func(m readmodels.Meta) {
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			fmt.Fprintf(stdout, "%s: building generation %d; generation %d is served\n", p.Name(), m.Target, m.Active)
		}
	})
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	fmt.Fprintf(stdout, "%s: generation %d caught up and is served; the previous one is dropped after the grace period\n", p.Name(), gen)
	return nil
}

// parkedView is a parked event as dlq list prints it.
type parkedView struct {
	DLQOffset int64     `json:"dlqOffset"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Type      string    `json:"type"`
	Aggregate string    `json:"aggregate"`
	Version   int64     `json:"version"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	ParkedAt  time.Time `json:"parkedAt"`
	Reason    string    `json:"reason"`
}

func viewParked(ctx context.Context, p *projector.Projector) ([]parkedView, []projector.Parked, error) {
	parked, err := p.DeadLetters(ctx)
	if err != nil {
		return nil, nil, err
	}
	views := make([]parkedView, len(parked))
	for i, pk := range parked {
		aggType, id, version := projector.StreamOf(pk)
		status := "parked"
		if applied, err := p.AppliedVersion(ctx, aggType, id); err == nil && version > 0 && applied >= version {
			status = "applied"
		}
		views[i] = parkedView{
			DLQOffset: pk.DLQOffset, Topic: pk.Original.Topic, Partition: pk.Original.Partition, Offset: pk.Original.Offset,
			Type: pk.Type(), Aggregate: id, Version: version, Status: status, Attempts: pk.Attempts, ParkedAt: pk.ParkedAt, Reason: pk.Reason,
		}
	}
	return views, parked, nil
}

func listDeadLetters(ctx context.Context, p *projector.Projector, asJSON bool, stdout io.Writer) error {
	views, _, err := viewParked(ctx, p)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, v := range views {
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ OFFSET\tTOPIC/PARTITION@OFFSET\tTYPE\tAGGREGATE\tVERSION\tSTATUS\tREASON")
	for _, v := range views {
		fmt.Fprintf(tw, "%d\t%s/%d@%d\t%s\t%s\t%d\t%s\t%s\n", v.DLQOffset, v.Topic, v.Partition, v.Offset, v.Type, v.Aggregate, v.Version, v.Status, v.Reason)
	}
	fmt.Fprintf(tw, "%d parked event(s) on %s\n", len(views), p.DeadLetterTopic())
	return tw.Flush()
}

func replayDeadLetters(ctx context.Context, p *projector.Projector, stdout io.Writer) error {
	views, parked, err := viewParked(ctx, p)
	if err != nil {
		return err
	}
	var todo []projector.Parked
	for i, v := range views {
		if v.Status == "parked" {
			todo = append(todo, parked[i])
		}
	}
	results, err := p.Replay(ctx, todo)
	failed := 0
	for _, r := range results {
		aggType, id, version := projector.StreamOf(r.Parked)
		fmt.Fprintf(stdout, "DLQ offset %d: %s/%s v%d: %s", r.Parked.DLQOffset, aggType, id, version, r.Outcome)
		if r.Detail != "" {
			fmt.Fprintf(stdout, ": %s", r.Detail)
		}
		fmt.Fprintln(stdout)
		if r.Outcome == projector.ReplayFailed || r.Outcome == projector.ReplayWaiting {
			failed++
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d replayed, %d still parked\n", len(results)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d event(s) could not be applied; fix the cause and replay again", failed)
	}
	return nil
}

// shutdownTracing flushes the spans not exported yet, waiting at most 5s.
func shutdownTracing(t *telemetry.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.Warn("flush spans", "err", err)
	}
}
