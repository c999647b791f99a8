package accountdomain_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
	"github.com/tributary-es/tributary/internal/readmodels/modeltest"
	"github.com/tributary-es/tributary/internal/testenv"
)

// BenchmarkGetAccountVsBareHandler measures GET /v1/accounts/{id} over real
// HTTP at 64 keep-alive connections against the summary of 2,000 accounts
// in the machine's Redis, beside a bare net/http handler answering a
// summary-sized JSON body with the same load generator, alternating which
// goes first over rounds. It reports the medians and their ratio (goal:
// reader ≥ 0.5 × bare). Run it alone:
//
//	go test -run '^$' -bench GetAccountVsBareHandler -benchtime 1x ./internal/domains/accountdomain/
func BenchmarkGetAccountVsBareHandler(b *testing.B) {
	const connections, rounds = 64, 5
	const phase = 3 * time.Second
	rdb, prefix := testenv.Redis(b)
	h := testenv.GenerateAccounts(2000, 20_000, 7)
	modeltest.Project(b, rdb, prefix, accounts.SummaryProjection{}, readertest.Partitions, h.Events)
	ids := make([]string, 0, len(h.ByID))
	for id := range h.ByID {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	// Every request carries the bearer token of the accounts' owner (the
	// generated events' principal), as a client would: verified once, then
	// found in the authenticator's cache.
	is := readertest.NewIssuer(b)
	token, err := is.Signer.Token(h.Events[0].Principal, nil, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	authorization := "Bearer " + token
	cfg := reader.DefaultConfig()
	cfg.Authenticator = is.Authn
	api := readertest.NewReader(b, banktest.Registry(), cfg, rdb, prefix, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	readerURL := serve(b, api.Handler())
	sample := fetch(b, readerURL+"/v1/accounts/"+ids[0], authorization)
	bareURL := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"7"`)
		_, _ = w.Write(sample)
	}))

	var bare, got []loadResult
	for round := range rounds {
		b.StopTimer()
		measure := func(base string) loadResult {
			return drive(b, connections, phase, authorization, func(i int) string { return base + "/v1/accounts/" + ids[i%len(ids)] })
		}
		if round%2 == 0 {
			bare, got = append(bare, measure(bareURL)), append(got, measure(readerURL))
		} else {
			got, bare = append(got, measure(readerURL)), append(bare, measure(bareURL))
		}
		b.Logf("round %d: bare %.0f req/s, reader %.0f req/s (p50 %v, p99 %v)", round+1,
			bare[round].perSecond, got[round].perSecond, got[round].p50, got[round].p99)
	}
	mb, mr := medianResult(bare), medianResult(got)
	b.ReportMetric(mb.perSecond, "bare-req/s")
	b.ReportMetric(mr.perSecond, "reader-req/s")
	b.ReportMetric(mr.perSecond/mb.perSecond, "ratio")
	b.ReportMetric(float64(mr.p50.Microseconds()), "reader-p50-µs")
	b.ReportMetric(float64(mr.p99.Microseconds()), "reader-p99-µs")
	b.ReportMetric(float64(mb.p50.Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(mb.p99.Microseconds()), "bare-p99-µs")
}

type loadResult struct {
	perSecond float64
	p50, p99  time.Duration
}

// medianResult takes each figure's median over rounds.
func medianResult(rs []loadResult) loadResult {
	pick := func(f func(loadResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return loadResult{
		perSecond: pick(func(r loadResult) float64 { return r.perSecond }),
		p50:       time.Duration(pick(func(r loadResult) float64 { return float64(r.p50) })),
		p99:       time.Duration(pick(func(r loadResult) float64 { return float64(r.p99) })),
	}
}

// serve runs h on a loopback port until the benchmark ends.
func serve(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func fetch(b *testing.B, url, authorization string) []byte {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, body, err)
	}
	return body
}

// drive sends GETs with the Authorization header authorization from
// connections goroutines, each on its own keep-alive connection, for d
// after a short warm-up; every answer must be 200.
func drive(b *testing.B, connections int, d time.Duration, authorization string, url func(i int) string) loadResult {
	transport := &http.Transport{MaxIdleConnsPerHost: connections, MaxConnsPerHost: connections}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d+500*time.Millisecond)
	defer cancel()
	measureFrom := time.Now().Add(500 * time.Millisecond)
	var mu sync.Mutex
	var all []time.Duration
	var failed error
	var wg sync.WaitGroup
	for c := range connections {
		wg.Go(func() {
			var mine []time.Duration
			for i := c; ctx.Err() == nil; i += connections {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url(i), nil)
				req.Header.Set("Authorization", authorization)
				started := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						failed = err
						mu.Unlock()
					}
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					mu.Lock()
					failed = fmt.Errorf("status %d", resp.StatusCode)
					mu.Unlock()
					break
				}
				if started.After(measureFrom) {
					mine = append(mine, time.Since(started))
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if failed != nil && !errors.Is(failed, context.DeadlineExceeded) {
		b.Fatalf("load: %v", failed)
	}
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no request completed")
	}
	return loadResult{perSecond: float64(len(all)) / d.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100]}
}
