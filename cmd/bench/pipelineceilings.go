package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// bareBody is an account summary as the reader answers it: the bare
// handler sends the same size.
var bareBody = []byte(`{"id":"acc-1","owner":"bench","currency":"EUR","status":"active","balance":100000,"version":42,"updatedAt":"2026-11-25T09:00:00.123456789Z"}`)

// measureBareHTTP measures the HTTP ceiling: a trivial net/http handler
// answering a summary-sized JSON body with an ETag, served on loopback and
// driven by clients Go clients (keep-alive, one connection each), as the
// pipeline's load is, with the same Authorization header (which the bare
// handler does not verify: the cost of verifying is the pipeline's).
func measureBareHTTP(ctx context.Context, clients int, authorization string, warmup, duration time.Duration) (m measurement, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return m, fmt.Errorf("bare handler: listen: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ETag", `"42"`)
			_, _ = w.Write(bareBody)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("bare handler: %w", serveErr))
		}
	}()
	transport := newLoadTransport(clients)
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	url := "http://" + ln.Addr().String() + "/v1/accounts/acc-1"
	return drive(ctx, clients, warmup, duration, func(ctx context.Context, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", authorization)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("bare handler: %s", resp.Status)
		}
		return nil
	})
}

// measureCeilingGoRedis is the Redis ceiling without redis-benchmark: the
// same event script by EVALSHA, pipelined s.ceilingPipeline deep on
// s.ceilingClients connections of a go-redis client in this process (which
// costs the machine more CPU per call than redis-benchmark's C). It checks
// the work done and deletes the keys.
func measureCeilingGoRedis(ctx context.Context, addr string, s projectorSettings, prefix string) (res ceilingResult, err error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: s.ceilingClients})
	defer rdb.Close()
	sha, err := rdb.ScriptLoad(ctx, eventScript).Result()
	if err != nil {
		return res, fmt.Errorf("ceiling: SCRIPT LOAD: %w", err)
	}
	defer func() {
		if _, delErr := deleteKeys(context.WithoutCancel(ctx), rdb, prefix); delErr != nil {
			err = errors.Join(err, delErr)
		}
	}()
	versions := prefix + ":{ceiling}:ver"
	perClient := (s.ceilingRequests/s.ceilingClients + s.ceilingPipeline - 1) / s.ceilingPipeline * s.ceilingPipeline
	g, gctx := errgroup.WithContext(ctx)
	began := time.Now()
	for range s.ceilingClients {
		g.Go(func() error {
			for sent := 0; sent < perClient; sent += s.ceilingPipeline {
				pipe := rdb.Pipeline()
				for range s.ceilingPipeline {
					pipe.EvalSha(gctx, sha, []string{versions}, prefix+":{ceiling}:",
						"acc-"+strconv.Itoa(rand.IntN(s.accounts)), "100", "2026-11-25T09:00:00.123456789Z")
				}
				if _, err := pipe.Exec(gctx); err != nil {
					return fmt.Errorf("ceiling: pipelined EVALSHA: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	elapsed := time.Since(began)
	calls := perClient * s.ceilingClients
	vals, err := rdb.HVals(ctx, versions).Result()
	if err != nil {
		return res, fmt.Errorf("ceiling: check the work done: %w", err)
	}
	done := 0
	for _, v := range vals {
		n, _ := strconv.Atoi(v)
		done += n
	}
	if done != calls {
		return res, fmt.Errorf("ceiling: the script applied %d events, want %d", done, calls)
	}
	res.callsPerSecond = float64(calls) / elapsed.Seconds()
	res.eventsPerSecond = res.callsPerSecond
	return res, nil
}
