package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
)

// harness is the platform under test and the parts it runs on, each of
// which a fault can hit.
type harness struct {
	s   settings
	dir string
	out io.Writer // progress lines

	dbName     string
	dbURL      string // straight to Postgres: setup and checks
	proxiedURL string // through the proxy: the platform's processes
	dbCreated  bool
	proxy      *pausableProxy

	redisAddr string
	redis     *process
	rdb       *redis.Client

	kafka *kafkaCluster

	writer, relay, transfers, projector *process
	writerURL                           string
	// creds are the tokens the writer trusts, and those it must not.
	creds *credentials
}

// processes are the platform's processes, the targets of kill -9.
func (h *harness) processes() []*process {
	return []*process{h.writer, h.relay, h.transfers, h.projector}
}

// startHarness builds the binaries and starts everything, the writer
// trusting the key that signs the tokens of p's principals; on error it
// undoes what it started.
func startHarness(ctx context.Context, s settings, p plan, out io.Writer) (_ *harness, err error) {
	h := &harness{s: s, out: out, dir: s.workDir}
	defer func() {
		if err != nil {
			h.close(false)
		}
	}()
	if h.dir == "" {
		if h.dir, err = os.MkdirTemp("", "chaos-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return nil, err
	}
	if h.creds, err = newCredentials(h.dir, p); err != nil {
		return nil, err
	}
	bin := filepath.Join(h.dir, "bin")
	if err := build(ctx, bin, s.broken); err != nil {
		return nil, err
	}
	if err := h.createDatabase(ctx); err != nil {
		return nil, err
	}
	migrate := exec.CommandContext(ctx, filepath.Join(bin, "writer"), "migrate", "--database-url", h.dbURL)
	if b, err := migrate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("writer migrate: %v: %s", err, b)
	}
	admin, _ := url.Parse(s.adminURL) // validated with the flags
	pgAddr := admin.Host
	if admin.Port() == "" {
		pgAddr = net.JoinHostPort(admin.Hostname(), "5432")
	}
	if h.proxy, err = startProxy(pgAddr); err != nil {
		return nil, err
	}
	proxied, _ := url.Parse(h.dbURL)
	proxied.Host = h.proxy.addr()
	h.proxiedURL = proxied.String()

	if err := h.startRedis(ctx); err != nil {
		return nil, err
	}
	kafkaPort, err := freePort()
	if err != nil {
		return nil, err
	}
	h.kafka = &kafkaCluster{port: kafkaPort, dir: filepath.Join(h.dir, "kafka")}
	if err := h.kafka.start(); err != nil {
		return nil, err
	}
	return h, h.startPlatform(ctx, bin)
}

// build compiles the writer and the projector into bin (with the broken
// relay if asked), from the module chaos runs in.
func build(ctx context.Context, bin string, broken bool) error {
	root, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(root)) == "" || strings.TrimSpace(string(root)) == os.DevNull {
		return fmt.Errorf("run chaos inside the Tributary module (go env GOMOD: %v)", err)
	}
	// -trimpath keeps the build cache's entries independent of where the
	// checkout lives, so another clone or worktree reuses them.
	args := []string{"build", "-trimpath", "-o", bin + string(filepath.Separator)}
	if broken {
		args = append(args, "-tags", "tributary_broken_relay")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/writer", "./cmd/projector")...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, b)
	}
	return nil
}

func (h *harness) createDatabase(ctx context.Context) error {
	b := make([]byte, 4)
	_, _ = crand.Read(b) // never fails since Go 1.24
	h.dbName = fmt.Sprintf("chaos_%d_%s", h.s.seed, hex.EncodeToString(b))
	u, _ := url.Parse(h.s.adminURL)
	u.Path = "/" + h.dbName
	h.dbURL = u.String()
	conn, err := pgx.Connect(ctx, h.s.adminURL)
	if err != nil {
		return fmt.Errorf("connect to Postgres (set --database-url): %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	h.dbCreated = true
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{h.dbName}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", h.dbName, err)
	}
	return nil
}

func (h *harness) startRedis(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	h.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
	h.redis = &process{
		name: "redis", path: h.s.redisServer, logPath: filepath.Join(h.dir, "redis.log"),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", h.dir},
	}
	h.rdb = redis.NewClient(&redis.Options{Addr: h.redisAddr, MaxRetries: -1})
	return h.restartRedis(ctx, 0)
}

// restartRedis kills the Redis server (if it runs), waits, and starts an
// empty one on the same port.
func (h *harness) restartRedis(ctx context.Context, down time.Duration) error {
	if err := h.redis.kill(); err != nil && !errors.Is(err, errNotRunning) {
		return err
	}
	sleep(ctx, down)
	if err := h.redis.start(); err != nil {
		return err
	}
	return waitFor(ctx, 10*time.Second, "Redis to answer", func() bool { return h.rdb.Ping(ctx).Err() == nil })
}

// startPlatform starts the writer's API, the relay, the process manager and
// the projector, and waits for the API to be ready.
func (h *harness) startPlatform(ctx context.Context, bin string) error {
	ports := make([]int, 4)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	kafkaArgs := []string{"--kafka-brokers", h.kafka.addr(), "--kafka-partitions", strconv.Itoa(h.s.partitions)}
	writer := filepath.Join(bin, "writer")
	session := h.s.sessionLimit.String()
	h.writerURL = "http://" + addr(0)
	// Small pools (24 connections in all): make test runs two chaos runs
	// at once beside other packages, within Postgres's max_connections.
	h.writer = h.newProcess("writer", writer, append([]string{"serve", "--relay=false", "--processes=false", "--http-addr", addr(0),
		"--database-url", h.proxiedURL, "--db-max-conns", "12", "--log-level", "warn"}, h.creds.writerArgs()...)...)
	h.relay = h.newProcess("relay", writer, append([]string{"relay", "--http-addr", addr(1),
		"--database-url", h.proxiedURL, "--db-max-conns", "4", "--log-level", "warn"}, kafkaArgs...)...)
	h.transfers = h.newProcess("transfers", writer, append([]string{"processes", "--http-addr", addr(2),
		"--database-url", h.proxiedURL, "--db-max-conns", "8", "--process-session-timeout", session, "--log-level", "warn"}, kafkaArgs...)...)
	h.projector = h.newProcess("projector", filepath.Join(bin, "projector"), append([]string{"run", "--http-addr", addr(3),
		"--redis-url", "redis://" + h.redisAddr + "/0", "--session-timeout", session, "--log-level", "warn"}, kafkaArgs...)...)
	for _, p := range h.processes() {
		if err := p.start(); err != nil {
			return err
		}
	}
	return waitFor(ctx, 30*time.Second, "the writer to be ready", func() bool {
		resp, err := http.Get(h.writerURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (h *harness) newProcess(name, path string, args ...string) *process {
	return &process{name: name, path: path, args: args, logPath: filepath.Join(h.dir, name+".log"),
		env: []string{"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none"}}
}

// close stops everything; it keeps the work directory (logs) and the
// database when keep is set.
func (h *harness) close(keep bool) {
	var wg sync.WaitGroup
	for _, p := range h.processes() {
		if p != nil {
			wg.Go(func() { p.stop(10 * time.Second) })
		}
	}
	wg.Wait()
	if h.kafka != nil {
		h.kafka.stop()
	}
	if h.redis != nil {
		h.redis.stop(5 * time.Second)
	}
	if h.rdb != nil {
		h.rdb.Close()
	}
	if h.proxy != nil {
		h.proxy.close()
	}
	if keep {
		fmt.Fprintf(h.out, "chaos: kept the logs in %s and the database %s\n", h.dir, h.dbName)
		return
	}
	if h.dbCreated {
		if err := dropDatabase(h.s.adminURL, h.dbName); err != nil {
			fmt.Fprintln(h.out, "chaos:", err)
		}
	}
	if h.s.workDir == "" && h.dir != "" {
		_ = os.RemoveAll(h.dir)
	}
}

func dropDatabase(adminURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w (drop it by hand)", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w (drop it by hand)", name, err)
	}
	return nil
}

// kafkaCluster is an in-process Kafka (kfake) that keeps its data in a
// directory, so it can be stopped and started again on the same port.
type kafkaCluster struct {
	port int
	dir  string

	mu sync.Mutex
	c  *kfake.Cluster
}

func (k *kafkaCluster) addr() string { return "127.0.0.1:" + strconv.Itoa(k.port) }

func (k *kafkaCluster) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var err error
	for range 50 { // the port may take a moment to be free again
		if k.c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(k.port), kfake.DataDir(k.dir)); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("start Kafka on %s: %w", k.addr(), err)
}

// stop shuts the cluster down cleanly: it writes its state to its directory.
func (k *kafkaCluster) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

// freePort returns a port of 127.0.0.1 that is free now, below Linux's
// ephemeral range (32768 on): a part that restarts on its port must find it
// free again, and no other program's connect or listen on port 0 takes it
// in between.
func freePort() (int, error) {
	for range 1000 {
		port := 20_000 + rand.N(12_000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, errors.New("no free port found in 20000-31999")
}

// waitFor polls cond until it holds, ctx ends or within passes.
func waitFor(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var errViolations = errors.New("the checks found violations")
