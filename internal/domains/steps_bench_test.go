//go:build unix

package domains_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/testenv"
)

// BenchmarkStepRedisCPU measures what Redis alone spends, per event, on the
// steps of the projections that consume the account topic — no Kafka, no
// projector, the arguments prepared before the clock runs — each projection
// alone and all of them together, as the projector sends them: a step per
// projection and partition, twelve partitions' steps to a pipeline.
//
// Each projection runs in three forms, to split Redis's time per event:
//   - full: as shipped;
//   - stubbed: its Lua with redis.call answering 0 without running a
//     command (what the Lua of the projection and of the step cost);
//   - empty: no Lua of its own (what the step costs around it: arguments,
//     the owner check, versions, the position).
//
// The figure is Redis's own CPU (INFO cpu, its main thread's user + system) per source event,
// and commandstats' split of it for the full form; go-µs/event is this
// process's CPU per event meanwhile (the client's side: preparing the
// calls, sending them, reading the replies). Run it alone on the
// machine:
//
//	go test -run '^$' -bench StepRedisCPU -benchtime 1x ./internal/domains/
func BenchmarkStepRedisCPU(b *testing.B) {
	const (
		partitions = 12
		events     = 48_000
	)
	ctx := context.Background()
	rdb, prefix := testenv.Redis(b)
	var projections []readmodels.Projection
	for _, p := range domains.Must().Projections() {
		if slices.Contains(p.AggregateTypes(), account.AggregateType) {
			projections = append(projections, p)
		}
	}
	history := testenv.GenerateAccounts(2000, events, 11).Events
	topic := "bench." + account.AggregateType + ".events"

	forms := []struct {
		name string
		wrap func(readmodels.Projection) readmodels.Projection
	}{
		{"full", func(p readmodels.Projection) readmodels.Projection { return p }},
		{"stubbed", func(p readmodels.Projection) readmodels.Projection {
			// A stored directory entry for HGET (the directory parses it), 0 for the rest.
			return withLua{p, "local redis = {call = function(cmd) if cmd == 'HGET' then return 'active|EUR|0' end return 0 end}\n" + p.Lua()}
		}},
		{"empty", func(p readmodels.Projection) readmodels.Projection { return withLua{p, ""} }},
	}
	sets := [][]readmodels.Projection{projections}
	for _, p := range projections {
		sets = append(sets, []readmodels.Projection{p})
	}
	run := 0
	// Events of one partition in one step: 4 is the pipeline's steady state
	// (1–4), 256 a projector catching up (its batches hold up to 500).
	for _, perStep := range []int{4, 256} {
		for _, form := range forms {
			for _, set := range sets {
				names := make([]string, len(set))
				for i, p := range set {
					names[i] = p.Name()
				}
				name := fmt.Sprintf("per-step=%d/%s/%s", perStep, form.name, strings.Join(names, "+"))
				fusions := []bool{false}
				if len(set) > 1 {
					name = fmt.Sprintf("per-step=%d/%s/all", perStep, form.name)
					fusions = []bool{false, true}
				}
				for _, fuse := range fusions {
					name := name
					if fuse {
						name += "-fused"
					}
					b.Run(name, func(b *testing.B) {
						for range b.N {
							run++
							root := fmt.Sprintf("%s:r%d", prefix, run)
							steps := make([]*readmodels.Steps, len(set))
							batches := make([][][]readmodels.Batch, len(set)) // projection → pipeline → its steps
							for i, p := range set {
								p = form.wrap(p)
								steps[i] = readmodels.NewSteps(rdb, readmodels.NewLayout(root, p.Name()), p)
								batches[i] = stepBatches(b, p, history, topic, partitions, perStep)
								for part := range int32(partitions) {
									if _, err := steps[i].Claim(ctx, 1, topic, part, "owner", false); err != nil {
										b.Fatal(err)
									}
								}
							}
							if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
								b.Fatal(err)
							}
							before, goBefore := redisCPU(b, rdb), goCPU(b)
							started := time.Now()
							fused := readmodels.NewFused()
							for k := range batches[0] {
								if fuse {
									// One call per partition for all projections.
									groups := make([][]readmodels.Lane, len(batches[0][k]))
									for g := range groups {
										for i := range set {
											groups[g] = append(groups[g], readmodels.Lane{Steps: steps[i], Batch: batches[i][k][g]})
										}
									}
									_, errs := fused.ApplyAll(ctx, groups)
									for _, errs := range errs {
										for _, err := range errs {
											if err != nil {
												b.Fatal(err)
											}
										}
									}
									continue
								}
								for i := range set {
									_, errs := steps[i].ApplyAll(ctx, batches[i][k])
									for _, err := range errs {
										if err != nil {
											b.Fatal(err)
										}
									}
								}
							}
							wall := time.Since(started)
							used, goUsed := redisCPU(b, rdb)-before, goCPU(b)-goBefore
							b.ReportMetric(used.Seconds()*1e6/events, "redis-µs/event")
							b.ReportMetric(goUsed.Seconds()*1e6/events, "go-µs/event")
							b.ReportMetric(events/wall.Seconds(), "events/s")
							if form.name == "full" {
								for cmd, usec := range commandUsec(b, rdb) {
									b.ReportMetric(usec/events, cmd+"-µs/event")
								}
							}
							testenv.DeleteRedisKeys(ctx, rdb, root)
						}
					})
				}
			}
		}
	}
}

// withLua is a projection with other Lua.
type withLua struct {
	readmodels.Projection
	lua string
}

func (w withLua) Lua() string { return w.lua }

// stepBatches cuts the history into steps of at most perStep events of one
// partition, in offset order, and groups them into pipelines of one step
// per partition, as the projector's applier does.
func stepBatches(b *testing.B, p readmodels.Projection, history []log.Event, topic string, partitions, perStep int) [][]readmodels.Batch {
	byPartition := make([][]readmodels.Item, partitions)
	for _, e := range history {
		args, err := p.Args(e)
		if err != nil {
			b.Fatalf("%s: %v", p.Name(), err)
		}
		part := readmodels.PartitionOf(e.AggregateID, int32(partitions))
		byPartition[part] = append(byPartition[part], readmodels.Item{
			Offset: int64(len(byPartition[part])), Stream: readmodels.StreamKey(e.AggregateType, e.AggregateID),
			ID: e.AggregateID, Version: e.Version, Args: args,
		})
	}
	var pipelines [][]readmodels.Batch
	for start := 0; ; start += perStep {
		var pipe []readmodels.Batch
		for part, items := range byPartition {
			if start < len(items) {
				pipe = append(pipe, readmodels.Batch{Generation: 1, Topic: topic, Partition: int32(part), Epoch: "owner",
					Items: items[start:min(start+perStep, len(items))]})
			}
		}
		if len(pipe) == 0 {
			return pipelines
		}
		pipelines = append(pipelines, pipe)
	}
}

// redisCPU is the CPU time Redis's main thread has used (user + system).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		// The main thread's alone: not the background thread freeing the
		// keys an earlier run unlinked.
		if k == "used_cpu_user_main_thread" || k == "used_cpu_sys_main_thread" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// goCPU is the CPU time this process has used (user + system): the
// client's side of the steps.
func goCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// commandUsec is commandstats' time per command since the last reset, in µs.
func commandUsec(b *testing.B, rdb *redis.Client) map[string]float64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := make(map[string]float64)
	for line := range strings.SplitSeq(info, "\r\n") {
		cmd, stats, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		for field := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(field, "usec="); ok {
				usec, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(err)
				}
				if cmd != "config" && cmd != "info" && usec > 0 {
					out[strings.ToLower(cmd)] = usec
				}
			}
		}
	}
	return out
}
