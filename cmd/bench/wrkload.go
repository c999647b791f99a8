package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// wrkScript drives the same 70/30 deposit/withdrawal mix as the Go load
// generator, from wrk's C event loop, each command as its account's owner
// (account acc-i belongs to principal (i-1) mod the number of tokens, as
// benchAuth.owner says), and prints a JSON summary at the end.
const wrkScript = `
local accounts = %d
local tokens = {%s}
local counter = 0
setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
end
init = function(args)
  math.randomseed(os.time() + (id or 0) * 7919)
end
local headers = {}
for p, token in ipairs(tokens) do
  headers[p] = {["Content-Type"] = "application/json", ["Authorization"] = token}
end
request = function()
  local i = math.random(1, accounts)
  local h = headers[(i - 1) %% #tokens + 1]
  if math.random() < %g then
    return wrk.format("POST", "/v1/accounts/acc-" .. i .. "/deposits", h, '%s')
  end
  return wrk.format("POST", "/v1/accounts/acc-" .. i .. "/withdrawals", h, '%s')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"socket_errors":%%d,"bad_status":%%d,"p50_us":%%d,"p99_us":%%d,"p999_us":%%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`

type wrkSummary struct {
	Requests     int64 `json:"requests"`
	DurationUS   int64 `json:"duration_us"`
	SocketErrors int64 `json:"socket_errors"`
	BadStatus    int64 `json:"bad_status"`
	P50US        int64 `json:"p50_us"`
	P99US        int64 `json:"p99_us"`
	P999US       int64 `json:"p999_us"`
}

// measureWriterWrk measures the writer with wrk as the load generator: a
// separate process in C, so the writer does not share its Go scheduler (and
// little of its CPU) with the client, as the raw-insert ceiling does not.
// wrk counts whole seconds: durations are rounded to them (at least 1s).
func measureWriterWrk(ctx context.Context, databaseURL string, a *benchAuth, clients, accounts int, warmup, duration time.Duration) (m measurement, err error) {
	w, err := startWriter(ctx, databaseURL, a)
	if err != nil {
		return m, err
	}
	defer func() { err = errors.Join(err, w.close()) }()
	dir, err := os.MkdirTemp("", "tributary-bench-")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "mix.lua")
	tokens := make([]string, len(a.bearer))
	for p, bearer := range a.bearer {
		tokens[p] = "'" + bearer + "'" // base64url and dots: nothing to escape
	}
	lua := fmt.Sprintf(wrkScript, accounts, strings.Join(tokens, ", "), depositShare, depositBody, withdrawBody)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return m, err
	}
	threads := min(clients, 2)
	runWrk := func(d time.Duration) (wrkSummary, error) {
		cmd := exec.CommandContext(ctx, "wrk", "-t", fmt.Sprint(threads), "-c", fmt.Sprint(clients),
			"-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second).Seconds()))), "--timeout", "10s", "-s", script, w.baseURL)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return wrkSummary{}, fmt.Errorf("wrk: %w: %s%s", err, stderr.String(), out.String())
		}
		lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
		var s wrkSummary
		if err := json.Unmarshal(lines[len(lines)-1], &s); err != nil {
			return s, fmt.Errorf("wrk's summary: %w: %s", err, out.String())
		}
		return s, nil
	}
	if warmup > 0 {
		if _, err := runWrk(warmup); err != nil {
			return m, err
		}
	}
	s, err := runWrk(duration)
	if err != nil {
		return m, err
	}
	m = measurement{clients: clients, window: time.Duration(s.DurationUS) * time.Microsecond,
		errors: int(s.SocketErrors + s.BadStatus),
		summary: &latencySummary{
			rate: float64(s.Requests-s.BadStatus) / (float64(s.DurationUS) / 1e6),
			p50:  time.Duration(s.P50US) * time.Microsecond, p99: time.Duration(s.P99US) * time.Microsecond,
			p999: time.Duration(s.P999US) * time.Microsecond,
		}}
	if m.errors > 0 {
		m.firstErr = fmt.Errorf("wrk saw %d socket errors and %d answers other than 2xx/3xx", s.SocketErrors, s.BadStatus)
	}
	return m, nil
}
