package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/pprof/profile"
)

// The parts of this process that bench pipeline's CPU profile tells apart.
// Each is constructed and started inside labelled(component): the
// goroutines it starts, and those these start later (franz-go's, kfake's,
// net/http's, pgx's and puddle's), inherit the label.
const (
	partLoad       = "load generator"
	partWriter     = "writer API"
	partRelay      = "relay"
	partTransfers  = "transfers process manager"
	partKafka      = "Kafka (kfake)"
	partProjectors = "projectors"
	partReader     = "reader"
)

// componentLabel is the pprof label that names the part a goroutine
// belongs to.
const componentLabel = "component"

// labelled runs f with the goroutine labelled component=part; the
// goroutines that f starts keep the label.
func labelled(ctx context.Context, part string, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(componentLabel, part), f)
}

// processGroupCPU is the CPU time of the processes of one name.
type processGroupCPU struct {
	cpu       time.Duration
	processes int
}

// cpuSnapshot are the CPU times used since they started: by this process,
// by Postgres, by Redis, and by the whole machine.
type cpuSnapshot struct {
	process, machine time.Duration
	postgres, redis  processGroupCPU
}

const (
	postgresComm = "postgres"     // the postmaster, its background workers and every backend
	redisComm    = "redis-server" // with its threads
)

func readCPU() cpuSnapshot {
	procs := processesCPU(postgresComm, redisComm)
	return cpuSnapshot{process: processCPU(), machine: machineCPU(), postgres: procs[postgresComm], redis: procs[redisComm]}
}

// windowCPU is where the CPU time of one measured window went.
type windowCPU struct {
	// process, postgres, redis and machine are the CPU times used in the
	// window by this process (getrusage), the processes named postgres and
	// redis-server, and the whole machine (busy time of /proc/stat).
	process, postgres, redis, machine time.Duration
	postgresProcesses                 int // alive at the window's end
	// components split process by the CPU profile's samples: in the order
	// of processComponents, then the rest (other).
	components []time.Duration
	// sampled is the CPU time the profile sampled, samples its samples.
	sampled time.Duration
	samples int64
	// splitErr says why components is empty.
	splitErr error
}

// processComponents are the labelled parts, in the report's order; the
// samples that carry none of their labels (the garbage collector's
// background workers, the scheduler, the bench's own bookkeeping at the
// window's edges) are other.
var processComponents = []string{partLoad, partWriter, partRelay, partTransfers, partKafka, partProjectors, partReader}

// newWindowCPU is the window between before and after, this process's
// part split by the shares of prof's samples (nil with profErr when it
// could not be profiled).
func newWindowCPU(before, after cpuSnapshot, prof *profile.Profile, profErr error) windowCPU {
	w := windowCPU{
		process: after.process - before.process, machine: after.machine - before.machine,
		postgres: after.postgres.cpu - before.postgres.cpu, redis: after.redis.cpu - before.redis.cpu,
		postgresProcesses: after.postgres.processes,
	}
	if profErr != nil {
		w.splitErr = profErr
		return w
	}
	byPart, samples, err := profileByComponent(prof)
	if err != nil {
		w.splitErr = err
		return w
	}
	var sampled time.Duration
	for _, v := range byPart {
		sampled += v
	}
	w.sampled, w.samples = sampled, samples
	if sampled <= 0 {
		w.splitErr = errors.New("the CPU profile has no sample")
		return w
	}
	share := func(v time.Duration) time.Duration {
		return time.Duration(float64(w.process) * float64(v) / float64(sampled))
	}
	var known time.Duration
	for _, part := range processComponents {
		d := share(byPart[part])
		w.components = append(w.components, d)
		known += d
	}
	w.components = append(w.components, w.process-known) // other: the exact rest, so the parts sum to the process
	return w
}

// profileByComponent sums a CPU profile's sampled time by the component
// label of its samples ("" for none), with the number of samples.
func profileByComponent(p *profile.Profile) (map[string]time.Duration, int64, error) {
	value, count := -1, -1
	for i, st := range p.SampleType {
		switch {
		case st.Type == "cpu" && st.Unit == "nanoseconds":
			value = i
		case st.Type == "samples":
			count = i
		}
	}
	if value < 0 {
		return nil, 0, fmt.Errorf("not a CPU profile: sample types %v", p.SampleType)
	}
	byPart := make(map[string]time.Duration)
	var samples int64
	for _, s := range p.Sample {
		var part string
		if v := s.Label[componentLabel]; len(v) > 0 {
			part = v[0]
		}
		byPart[part] += time.Duration(s.Value[value])
		if count >= 0 {
			samples += s.Value[count]
		}
	}
	return byPart, samples, nil
}

// rest is the machine's CPU time used by neither this process, Postgres
// nor Redis: other processes, the kernel's threads and its interrupt
// handling.
func (w windowCPU) rest() time.Duration { return w.machine - w.process - w.postgres - w.redis }

// cpuRow is one row of the CPU table.
type cpuRow struct {
	name  string // in the JSON
	label string
	// component is the index in windowCPU.components, -1 for a row that
	// is not a part of this process.
	component int
	cpu       func(windowCPU) time.Duration
}

// cpuRows are the CPU table's rows, in order: this process's parts, this
// process, the other processes, the machine.
func cpuRows() []cpuRow {
	names := []string{"loadGenerator", "writerAPI", "relay", "transfersProcessManager", "kafka", "projectors", "reader"}
	var rows []cpuRow
	for i, part := range processComponents {
		rows = append(rows, cpuRow{names[i], "  " + part, i, nil})
	}
	rows = append(rows,
		cpuRow{"other", "  other (GC workers, runtime, bench bookkeeping)", len(processComponents), nil},
		cpuRow{"benchProcess", "bench process (all of the above)", -1, func(w windowCPU) time.Duration { return w.process }},
		cpuRow{"postgres", "Postgres (every process named postgres)", -1, func(w windowCPU) time.Duration { return w.postgres }},
		cpuRow{"redis", "redis-server", -1, func(w windowCPU) time.Duration { return w.redis }},
		cpuRow{"restOfMachine", "rest of the machine", -1, windowCPU.rest},
		cpuRow{"machine", "machine total", -1, func(w windowCPU) time.Duration { return w.machine }},
	)
	return rows
}

// value is the row's CPU time in w; ok is false for a part of the process
// in a window whose profile failed.
func (r cpuRow) value(w windowCPU) (time.Duration, bool) {
	if r.component >= 0 {
		if r.component >= len(w.components) {
			return 0, false
		}
		return w.components[r.component], true
	}
	return r.cpu(w), true
}

// cpuPerCommand is the CPU time per accepted command of the window, in µs.
func (m pipelineMeasurement) cpuPerCommand(d time.Duration) float64 {
	if len(m.commands) == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(len(m.commands))
}

// cpuMedian is a row's median over the rounds that measured it, in µs per
// command and in busy cores; ok is false when none did.
func (r *pipelineReport) cpuMedian(row cpuRow) (perCommand, cores float64, ok bool) {
	var measured []pipelineMeasurement
	for _, m := range r.pipeline {
		if _, has := row.value(m.cpu); has {
			measured = append(measured, m)
		}
	}
	if len(measured) == 0 {
		return 0, 0, false
	}
	perCommand = median(measured, func(m pipelineMeasurement) float64 { d, _ := row.value(m.cpu); return m.cpuPerCommand(d) })
	cores = median(measured, func(m pipelineMeasurement) float64 { d, _ := row.value(m.cpu); return m.perSecond(d.Seconds()) })
	return perCommand, cores, true
}

// writeCPUTable prints the CPU per accepted command of every part.
func (r *pipelineReport) writeCPUTable(w io.Writer) {
	fmt.Fprintf(w, "\nCPU per command (µs): CPU time used in the measured window / commands accepted in it, median of %d rounds\n", len(r.pipeline))
	rows := cpuRows()
	width := 0
	for _, row := range rows {
		width = max(width, utf8.RuneCountInString(row.label))
	}
	fmt.Fprintf(w, "%-*s  %10s  %10s\n", width, "part", "µs/command", "busy cores")
	for _, row := range rows {
		perCommand, cores, ok := r.cpuMedian(row)
		if !ok {
			fmt.Fprintf(w, "%-*s  %10s  %10s\n", width, row.label, "-", "-")
			continue
		}
		fmt.Fprintf(w, "%-*s  %10.0f  %10.2f\n", width, row.label, perCommand, cores)
	}
	fmt.Fprintf(w, "(each row its own median: the rows need not add up. This process by getrusage, split by its CPU profile's samples\n")
	fmt.Fprintf(w, " (pprof label component) over the window; Postgres and redis-server by /proc/<pid>/stat, reaped children included;\n")
	fmt.Fprintf(w, " machine by /proc/stat; the rest is the machine less the three, of %d cores)\n", runtime.NumCPU())
	var failed []string
	for i, m := range r.pipeline {
		if m.cpu.splitErr != nil {
			failed = append(failed, fmt.Sprintf("round %d: %v", i+1, m.cpu.splitErr))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "no split of this process in %v\n", failed)
	} else if len(r.pipeline) > 0 {
		fmt.Fprintf(w, "CPU profile: %d samples a round (median), sampling %.0f%% of the process's getrusage time\n",
			median(r.pipeline, func(m pipelineMeasurement) int64 { return m.cpu.samples }),
			100*median(r.pipeline, func(m pipelineMeasurement) float64 { return m.cpu.coverage() }))
	}
}

// coverage is the share of this process's CPU time that the profile
// sampled.
func (w windowCPU) coverage() float64 {
	if w.process <= 0 {
		return 0
	}
	return float64(w.sampled) / float64(w.process)
}

// jsonCPUPart is one row of the CPU table in one round.
type jsonCPUPart struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	// CPUSeconds is the CPU time used in the window.
	CPUSeconds float64 `json:"cpuSeconds"`
	// MicrosecondsPerCommand is that per command accepted in the window.
	MicrosecondsPerCommand float64 `json:"microsecondsPerCommand"`
	BusyCores              float64 `json:"busyCores"`
}

// jsonCPUMedian is one row of the CPU table: its medians over the rounds.
type jsonCPUMedian struct {
	Name                   string  `json:"name"`
	Label                  string  `json:"label"`
	MicrosecondsPerCommand float64 `json:"microsecondsPerCommand"`
	BusyCores              float64 `json:"busyCores"`
}

// jsonCPU is the CPU table of one round.
type jsonCPU struct {
	AcceptedCommands  int           `json:"acceptedCommands"`
	WindowSeconds     float64       `json:"windowSeconds"`
	Parts             []jsonCPUPart `json:"parts"`
	PostgresProcesses int           `json:"postgresProcesses"`
	// ProfileSamples and ProfileSampledSeconds are what the CPU profile of
	// the window caught in this process; SplitError says why this
	// process is not split (its parts are then missing).
	ProfileSamples        int64   `json:"profileSamples"`
	ProfileSampledSeconds float64 `json:"profileSampledSeconds"`
	SplitError            string  `json:"splitError,omitempty"`
}

func (m pipelineMeasurement) jsonCPU() jsonCPU {
	out := jsonCPU{AcceptedCommands: len(m.commands), WindowSeconds: m.window.Seconds(), Parts: []jsonCPUPart{},
		PostgresProcesses: m.cpu.postgresProcesses, ProfileSamples: m.cpu.samples, ProfileSampledSeconds: m.cpu.sampled.Seconds()}
	if m.cpu.splitErr != nil {
		out.SplitError = m.cpu.splitErr.Error()
	}
	for _, row := range cpuRows() {
		d, ok := row.value(m.cpu)
		if !ok {
			continue
		}
		out.Parts = append(out.Parts, jsonCPUPart{Name: row.name, Label: strings.TrimSpace(row.label), CPUSeconds: d.Seconds(),
			MicrosecondsPerCommand: m.cpuPerCommand(d), BusyCores: m.perSecond(d.Seconds())})
	}
	return out
}

// jsonCPUMedians is the CPU table's medians.
func (r *pipelineReport) jsonCPUMedians() []jsonCPUMedian {
	parts := []jsonCPUMedian{}
	for _, row := range cpuRows() {
		perCommand, cores, ok := r.cpuMedian(row)
		if !ok {
			continue
		}
		parts = append(parts, jsonCPUMedian{Name: row.name, Label: strings.TrimSpace(row.label), MicrosecondsPerCommand: perCommand, BusyCores: cores})
	}
	return parts
}
