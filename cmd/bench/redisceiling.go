package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The ceilings are redis-benchmark runs of EVALSHA against the same Redis.
//
// trivialScript is EVALSHA's own cost: parsing, the Lua call, the reply.
const trivialScript = `return 1`

// eventScript does for each event what the summary projection's step does
// for a deposit: read the account's last version from a versions hash, add
// the amount to the balance, set version and updatedAt, record the version.
// That is four redis.call per event. The step also checks the owner's epoch
// and moves the position, once per batch; those are not here.
//
//	KEYS[1]  the versions hash
//	ARGV[1]  the key prefix of the summaries
//	then per event: stream, amount, time
const eventScript = `
local ver = KEYS[1]
local p = ARGV[1]
local n = 0
for i = 2, #ARGV, 3 do
  local stream = ARGV[i]
  local v = tonumber(redis.call('HGET', ver, stream) or '0') + 1
  local k = p .. 'summary:' .. stream
  redis.call('HINCRBY', k, 'balance', ARGV[i + 1])
  redis.call('HSET', k, 'version', v, 'updatedAt', ARGV[i + 2])
  redis.call('HSET', ver, stream, v)
  n = n + 1
end
return n
`

// ceilingKind is one redis-benchmark measurement.
type ceilingKind struct {
	name string
	// eventsPerCall is 0 for the trivial script, else the events each
	// EVALSHA applies.
	eventsPerCall int
}

// The ceilings measured in every round. The ratio is taken against the
// event-like script with one event per call.
var (
	ceilingTrivial = ceilingKind{name: "trivial"}
	ceilingEvent   = ceilingKind{name: "event", eventsPerCall: 1}
	ceilingBatch   = ceilingKind{name: "event-batch", eventsPerCall: 100}
	ceilingKinds   = []ceilingKind{ceilingTrivial, ceilingEvent, ceilingBatch}
)

// ceilingResult is one redis-benchmark run.
type ceilingResult struct {
	round int
	// callsPerSecond is redis-benchmark's requests per second.
	callsPerSecond float64
	// eventsPerSecond is callsPerSecond × events per call; 0 for trivial.
	eventsPerSecond float64
	p50, p99        time.Duration
}

// measureCeiling runs redis-benchmark with EVALSHA of kind's script on keys
// under prefix, checks that every call did its work, and deletes the keys.
func measureCeiling(ctx context.Context, rdb *redis.Client, s projectorSettings, kind ceilingKind, prefix string) (res ceilingResult, err error) {
	script := trivialScript
	if kind.eventsPerCall > 0 {
		script = eventScript
	}
	sha, err := rdb.ScriptLoad(ctx, script).Result()
	if err != nil {
		return res, fmt.Errorf("ceiling: SCRIPT LOAD: %w", err)
	}
	defer func() {
		if _, delErr := deleteKeys(context.WithoutCancel(ctx), rdb, prefix); delErr != nil {
			err = errors.Join(err, delErr)
		}
	}()
	// redis-benchmark sends whole pipelines: make the calls a multiple of
	// them, so the count of work done is known.
	perRound := s.ceilingPipeline * s.ceilingClients
	calls := max(s.ceilingRequests/max(kind.eventsPerCall, 1), 1)
	calls = (calls + perRound - 1) / perRound * perRound
	args := []string{"evalsha", sha, "0"}
	versions := prefix + ":{ceiling}:ver"
	if kind.eventsPerCall > 0 {
		args = []string{"evalsha", sha, "1", versions, prefix + ":{ceiling}:"}
		for range kind.eventsPerCall {
			// redis-benchmark replaces each __rand_int__ with its own
			// random number below -r: random accounts of the bench's count.
			args = append(args, "acc-__rand_int__", "100", "2026-11-25T09:00:00.123456789Z")
		}
	}
	host, port, _ := net.SplitHostPort(s.redisAddr) // validated with the flags
	cmdline := append([]string{
		"-h", host, "-p", port, "--csv",
		"-n", strconv.Itoa(calls), "-P", strconv.Itoa(s.ceilingPipeline), "-c", strconv.Itoa(s.ceilingClients),
		"-r", strconv.Itoa(s.accounts),
	}, args...)
	cmd := exec.CommandContext(ctx, "redis-benchmark", cmdline...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("redis-benchmark: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if strings.Contains(stderr.String(), "Error") {
		return res, fmt.Errorf("redis-benchmark %s: the script failed: %s", kind.name, firstLine(stderr.String()))
	}
	if res, err = parseRedisBenchmarkCSV(stdout.Bytes()); err != nil {
		return res, err
	}
	if kind.eventsPerCall > 0 {
		// redis-benchmark counts error replies as requests: check that
		// every event did its work.
		vals, err := rdb.HVals(ctx, versions).Result()
		if err != nil {
			return res, fmt.Errorf("ceiling: check the work done: %w", err)
		}
		var done int
		for _, v := range vals {
			n, _ := strconv.Atoi(v)
			done += n
		}
		if want := calls * kind.eventsPerCall; done != want {
			return res, fmt.Errorf("ceiling %s: the script applied %d events, want %d: %s", kind.name, done, want, firstLine(stderr.String()))
		}
		res.eventsPerSecond = res.callsPerSecond * float64(kind.eventsPerCall)
	}
	return res, nil
}

// parseRedisBenchmarkCSV reads the one test of redis-benchmark --csv:
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms".
func parseRedisBenchmarkCSV(out []byte) (ceilingResult, error) {
	var res ceilingResult
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[1]) < 7 || rows[0][1] != "rps" || rows[0][4] != "p50_latency_ms" || rows[0][6] != "p99_latency_ms" {
		return res, fmt.Errorf("redis-benchmark printed no result this benchmark reads: %q", out)
	}
	res.callsPerSecond, err = strconv.ParseFloat(rows[1][1], 64)
	if err != nil {
		return res, fmt.Errorf("redis-benchmark rps %q: %w", rows[1][1], err)
	}
	p50, err1 := strconv.ParseFloat(rows[1][4], 64)
	p99, err2 := strconv.ParseFloat(rows[1][6], 64)
	if err := errors.Join(err1, err2); err != nil {
		return res, fmt.Errorf("redis-benchmark latencies: %w", err)
	}
	res.p50 = time.Duration(p50 * float64(time.Millisecond))
	res.p99 = time.Duration(p99 * float64(time.Millisecond))
	return res, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// deleteKeys unlinks every key that starts with prefix (SCAN, never
// FLUSHALL: the server is shared), then waits until Redis has freed them in
// the background, so the next measurement does not pay for it.
func deleteKeys(ctx context.Context, rdb *redis.Client, prefix string) (int, error) {
	deleted := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	keys := make([]string, 0, 1000)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		n, err := rdb.Unlink(ctx, keys...).Result()
		deleted += int(n)
		keys = keys[:0]
		return err
	}
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == cap(keys) {
			if err := flush(); err != nil {
				return deleted, fmt.Errorf("delete the keys %s*: %w", prefix, err)
			}
		}
	}
	if err := errors.Join(iter.Err(), flush()); err != nil {
		return deleted, fmt.Errorf("delete the keys %s*: %w", prefix, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil || infoField(info, "lazyfree_pending_objects") == "0" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return deleted, nil
}

// redisUsage is what the Redis server reports having spent, server-wide.
type redisUsage struct {
	cpu          time.Duration // used_cpu_user + used_cpu_sys
	evalCalls    int64         // EVALSHA and EVAL calls
	evalDuration time.Duration // their time inside the server
}

func readRedisUsage(ctx context.Context, rdb *redis.Client) (redisUsage, error) {
	info, err := rdb.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		return redisUsage{}, fmt.Errorf("redis INFO: %w", err)
	}
	return parseRedisUsage(info), nil
}

// parseRedisUsage reads the INFO sections cpu and commandstats.
func parseRedisUsage(info string) redisUsage {
	var u redisUsage
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		sec, _ := strconv.ParseFloat(infoField(info, f), 64)
		u.cpu += time.Duration(sec * float64(time.Second))
	}
	for _, cmd := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		for part := range strings.SplitSeq(infoField(info, cmd), ",") {
			k, v, _ := strings.Cut(part, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				u.evalCalls += n
			case "usec":
				u.evalDuration += time.Duration(n) * time.Microsecond
			}
		}
	}
	return u
}

func (u redisUsage) sub(before redisUsage) redisUsage {
	return redisUsage{cpu: u.cpu - before.cpu, evalCalls: u.evalCalls - before.evalCalls, evalDuration: u.evalDuration - before.evalDuration}
}

// infoField is the value of field in an INFO reply, "" if absent.
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// redisVersion is the server's version, for the report.
func redisVersion(ctx context.Context, rdb *redis.Client) (string, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	return infoField(info, "redis_version"), nil
}
