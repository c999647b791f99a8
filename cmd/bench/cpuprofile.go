package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/google/pprof/profile"
)

// cpuProfiler owns the process's CPU profiler, which runs one profile at a
// time: the whole-run profile of --cpuprofile and the profiles of bench
// pipeline's measured windows share it. With --cpuprofile the run is
// profiled in segments, cut at the windows' edges, and the file is their
// merge: the same profile as one taken from start to end.
type cpuProfiler struct {
	file     *os.File           // --cpuprofile; nil for none
	running  *bytes.Buffer      // the segment being recorded; nil when none is
	segments []*profile.Profile // the recorded segments, for file
}

// startCPUProfiler profiles the whole run into f, which it closes, or
// does nothing until a window starts when f is nil.
func startCPUProfiler(f *os.File) (*cpuProfiler, error) {
	p := &cpuProfiler{file: f}
	if f == nil {
		return p, nil
	}
	if err := p.start(); err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

func (p *cpuProfiler) start() error {
	buf := new(bytes.Buffer)
	if err := pprof.StartCPUProfile(buf); err != nil {
		return err
	}
	p.running = buf
	return nil
}

// stop ends the running segment and returns it, kept for the whole-run
// profile if there is one.
func (p *cpuProfiler) stop() (*profile.Profile, error) {
	pprof.StopCPUProfile()
	buf := p.running
	p.running = nil
	prof, err := profile.Parse(buf)
	if err != nil {
		return nil, fmt.Errorf("parse the CPU profile: %w", err)
	}
	if p.file != nil {
		p.segments = append(p.segments, prof)
	}
	return prof, nil
}

// startWindow starts a profile of a measured window. It fails when another
// profile runs in this process (go test -cpuprofile).
func (p *cpuProfiler) startWindow() error {
	if p.running != nil {
		if _, err := p.stop(); err != nil {
			return err
		}
	}
	return p.start()
}

// endWindow stops the window's profile and returns it; the whole-run
// profile, if any, goes on.
func (p *cpuProfiler) endWindow() (*profile.Profile, error) {
	if p.running == nil {
		return nil, errors.New("no CPU profile runs")
	}
	prof, err := p.stop()
	if p.file != nil {
		err = errors.Join(err, p.start())
	}
	return prof, err
}

// close stops the profiler and writes the whole-run profile.
func (p *cpuProfiler) close() error {
	var err error
	if p.running != nil {
		_, err = p.stop()
	}
	if p.file == nil {
		return err
	}
	if len(p.segments) > 0 {
		merged, mergeErr := profile.Merge(p.segments)
		if mergeErr == nil {
			mergeErr = merged.Write(p.file)
		}
		err = errors.Join(err, mergeErr)
	}
	err = errors.Join(err, p.file.Close())
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	return nil
}
