package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// The commands of the pipeline's mix besides transfers: deposits and
// withdrawals share the rest 60/40.
const pipelineDepositShare = 0.6

var (
	pipelineDeposit  = []byte(`{"amount":100,"currency":"EUR","source":"bench"}`)
	pipelineWithdraw = []byte(`{"amount":120,"currency":"EUR","reason":"bench"}`)
)

// maxVisibleWait bounds how long a client waits, over repeated reads, for
// a command of its own to become visible; past it, the read is an error.
const maxVisibleWait = 30 * time.Second

// newLoadTransport is a keep-alive HTTP/1.1 transport for clients
// concurrent clients of one host each.
func newLoadTransport(clients int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * clients,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// pipelineLoad is the mix one round drives: commands to the writer, each
// followed with probability readShare by a read-your-writes query to the
// reader.
type pipelineLoad struct {
	http                 *http.Client
	writerURL, readerURL string
	// auth holds the accounts' owners' tokens: a client sends each command,
	// and reads what it changed, as the owner of the account it acts on
	// (of a transfer's source account, who then owns the transfer).
	auth                     *benchAuth
	accounts                 int
	readShare, transferShare float64
	// transferPrefix makes the round's transfer ids unique.
	transferPrefix string
}

// clientTally is what one client did; only what ended inside the measured
// window counts, except errors, which count from the start.
type clientTally struct {
	commands []time.Duration // latencies of accepted commands
	// visible are the end-to-end latencies: the writer's answer to the
	// reader's answer at that version.
	visible []time.Duration
	// visibleTransfers are those of transfer requests alone.
	visibleTransfers []time.Duration
	// accepted counts the accepted commands by kind.
	accepted                        [kinds]int
	refused, queries, stale, errors int
	firstErr                        error
}

// pipelineMeasurement is one round of the pipeline under load.
type pipelineMeasurement struct {
	clients, errors, refused, stale     int
	accepted                            [kinds]int
	queries                             int
	window                              time.Duration
	commands, visible                   []time.Duration // sorted
	visibleTransfers                    []time.Duration // sorted; transfer requests alone
	firstErr                            error
	before, after                       pipelineCounters // at the window's edges
	settled                             pipelineCounters // after the load, once everything was applied
	settleTime                          time.Duration
	commandsPerSecond, queriesPerSecond float64
	cpu                                 windowCPU // where the CPU time of the window went
}

func (m pipelineMeasurement) perSecond(n float64) float64 { return n / m.window.Seconds() }

func (m pipelineMeasurement) relayPerSecond() float64 {
	return m.perSecond(m.after.published - m.before.published)
}

func (m pipelineMeasurement) appendedPerSecond() float64 {
	return m.perSecond(float64(m.after.appendedTotal() - m.before.appendedTotal()))
}

// cores are the CPUs kept busy on average in the window: by this process
// (load generator and pipeline) and by the whole machine (with Postgres,
// Redis and whatever else runs).
func (m pipelineMeasurement) cores() (process, machine float64) {
	return m.perSecond(m.cpu.process.Seconds()), m.perSecond(m.cpu.machine.Seconds())
}

func (m pipelineMeasurement) projectorPerSecond() float64 {
	return m.perSecond(m.after.appliedTotal() - m.before.appliedTotal())
}

// drivePipeline runs clients concurrent loops of the mix for
// warmup+duration, reads the counters at the edges of the measured window
// and profiles this process's CPU in between with prof.
func drivePipeline(ctx context.Context, stack *pipelineStack, l *pipelineLoad, prof *cpuProfiler, clients int, warmup, duration time.Duration) (pipelineMeasurement, error) {
	m := pipelineMeasurement{clients: clients, window: duration}
	tallies := make([]clientTally, clients)
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+duration)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			labelled(ctx, partLoad, func(ctx context.Context) { l.loop(ctx, c, from, until, &tallies[c]) })
		})
	}
	// The counters at the window's edges, read beside the load, and the
	// CPU profile between them. This goroutine has no component label: its
	// work is the bench's bookkeeping, in "other".
	var edgeErr, profErr error
	var window *profile.Profile
	wg.Go(func() {
		for i, at := range []time.Time{from, until} {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			if i == 0 {
				profErr = prof.startWindow()
			}
			c, err := stack.counters(ctx)
			if i == 1 && profErr == nil {
				window, profErr = prof.endWindow()
			}
			if err != nil {
				edgeErr = err
				return
			}
			if i == 0 {
				m.before = c
			} else {
				m.after = c
			}
		}
	})
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return m, err
	}
	if edgeErr != nil {
		return m, edgeErr
	}
	if d := m.after.at.Sub(m.before.at); d > 0 {
		m.window = d // the counters' own window, for the rates made of them
	}
	m.cpu = newWindowCPU(m.before.cpu, m.after.cpu, window, profErr)
	for _, t := range tallies {
		m.commands = append(m.commands, t.commands...)
		m.visible = append(m.visible, t.visible...)
		m.visibleTransfers = append(m.visibleTransfers, t.visibleTransfers...)
		for k := range kinds {
			m.accepted[k] += t.accepted[k]
		}
		m.refused += t.refused
		m.queries += t.queries
		m.stale += t.stale
		m.errors += t.errors
		if m.firstErr == nil {
			m.firstErr = t.firstErr
		}
	}
	slices.Sort(m.commands)
	slices.Sort(m.visible)
	slices.Sort(m.visibleTransfers)
	m.commandsPerSecond = float64(len(m.commands)) / duration.Seconds()
	m.queriesPerSecond = float64(m.queries) / duration.Seconds()
	return m, nil
}

// loop is one client: a command, and sometimes the read of what it wrote,
// until the window ends.
func (l *pipelineLoad) loop(ctx context.Context, client int, from, until time.Time, t *clientTally) {
	inWindow := func(at time.Time) bool { return !at.Before(from) && at.Before(until) }
	fail := func(err error) {
		t.errors++
		if t.firstErr == nil {
			t.firstErr = err
		}
	}
	for n := 0; ; n++ {
		began := time.Now()
		if !began.Before(until) || ctx.Err() != nil {
			return
		}
		cmd := l.nextCommand(client, n)
		version, err := l.post(ctx, cmd.path, cmd.authorization, cmd.body)
		accepted := time.Now()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errRejected):
			if inWindow(accepted) {
				t.refused++
			}
			continue
		case err != nil:
			fail(err)
			continue
		}
		if inWindow(accepted) {
			t.commands = append(t.commands, accepted.Sub(began))
			t.accepted[cmd.kind]++
		}
		if rand.Float64() >= l.readShare {
			continue
		}
		// Read your write: the read model of what the command changed, at
		// least at the version the writer answered.
		query := l.readerURL + cmd.read + "?min_version=" + strconv.FormatInt(version, 10)
		for {
			stale, err := l.get(ctx, query, cmd.authorization)
			answered := time.Now()
			if ctx.Err() != nil {
				return
			}
			if inWindow(answered) {
				t.queries++
			}
			if err != nil {
				fail(err)
				break
			}
			if !stale {
				if inWindow(answered) {
					t.visible = append(t.visible, answered.Sub(accepted))
					if cmd.kind == kindTransfer {
						t.visibleTransfers = append(t.visibleTransfers, answered.Sub(accepted))
					}
				}
				break
			}
			if inWindow(answered) {
				t.stale++
			}
			if answered.Sub(accepted) > maxVisibleWait {
				fail(fmt.Errorf("GET %s: still stale %s after the command", query, maxVisibleWait))
				break
			}
		}
	}
}

// The kinds of command in the mix.
const (
	kindDeposit = iota
	kindWithdrawal
	kindTransfer
	kinds
)

// command is one request of the mix.
type command struct {
	kind int
	path string // the writer's
	body []byte
	read string // the reader's path of what it changes
	// authorization is the Authorization header of the owner of the
	// account it acts on: for the command and for the read.
	authorization string
}

// nextCommand picks the client's next command.
func (l *pipelineLoad) nextCommand(client, n int) command {
	i := rand.IntN(l.accounts)
	r := rand.Float64()
	switch {
	case r < l.transferShare:
		to := (i + 1 + rand.IntN(l.accounts-1)) % l.accounts // another account
		id := fmt.Sprintf("%s-%d-%d", l.transferPrefix, client, n)
		body := fmt.Appendf(nil, `{"id":%q,"from":%q,"to":%q,"amount":50,"currency":"EUR","reference":"bench"}`, id, accountID(i), accountID(to))
		return command{kindTransfer, "/v1/transfers", body, "/v1/transfers/" + id, l.auth.owner(i)}
	case r < l.transferShare+(1-l.transferShare)*pipelineDepositShare:
		return command{kindDeposit, "/v1/accounts/" + accountID(i) + "/deposits", pipelineDeposit, "/v1/accounts/" + accountID(i), l.auth.owner(i)}
	default:
		return command{kindWithdrawal, "/v1/accounts/" + accountID(i) + "/withdrawals", pipelineWithdraw, "/v1/accounts/" + accountID(i), l.auth.owner(i)}
	}
}

// post sends one command with the Authorization header authorization and
// returns the stream version of its ETag.
func (l *pipelineLoad) post(ctx context.Context, path, authorization string, body []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.writerURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", authorization)
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, err
		}
		v, err := strconv.ParseInt(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
		if err != nil || v < 1 {
			return 0, fmt.Errorf("POST %s: %s without a version in ETag (%q)", path, resp.Status, resp.Header.Get("ETag"))
		}
		return v, nil
	}
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusUnprocessableEntity && bytes.Contains(detail, []byte("/problems/insufficient-funds")) {
		return 0, errRejected
	}
	return 0, fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(detail))
}

// get sends one query with the Authorization header authorization; stale
// is set for the reader's 503 "stale" and "read-model-not-ready" answers
// (the read model did not reach the version, or finish its first build,
// within the reader's wait).
func (l *pipelineLoad) get(ctx context.Context, url, authorization string) (stale bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", authorization)
	resp, err := l.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, err := io.Copy(io.Discard, resp.Body)
		return false, err
	}
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	// Behind the version asked for, or still building its first
	// generation (the reader waited its bound either way): not visible yet.
	if resp.StatusCode == http.StatusServiceUnavailable &&
		(bytes.Contains(detail, []byte("/problems/stale")) || bytes.Contains(detail, []byte("/problems/read-model-not-ready"))) {
		return true, nil
	}
	return false, fmt.Errorf("GET %s: %s: %s", req.URL.RequestURI(), resp.Status, bytes.TrimSpace(detail))
}

// prime requests one transfer and reads it back at its version, and
// returns how long that took.
func (l *pipelineLoad) prime(ctx context.Context) (time.Duration, error) {
	body := fmt.Appendf(nil, `{"id":"bench-prime","from":%q,"to":%q,"amount":1,"currency":"EUR","reference":"bench"}`, accountID(0), accountID(1))
	version, err := l.post(ctx, "/v1/transfers", l.auth.owner(0), body)
	if err != nil {
		return 0, err
	}
	query := l.readerURL + "/v1/transfers/bench-prime?min_version=" + strconv.FormatInt(version, 10)
	for began := time.Now(); ; {
		stale, err := l.get(ctx, query, l.auth.owner(0))
		switch {
		case err != nil:
			return 0, err
		case !stale:
			return time.Since(began), nil
		case time.Since(began) > maxVisibleWait:
			return 0, fmt.Errorf("GET %s: still stale %s after the command", query, maxVisibleWait)
		}
	}
}
