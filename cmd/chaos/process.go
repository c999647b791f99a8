package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one of the platform's processes (or the Redis server): it can
// be started, killed with SIGKILL and started again, and it is watched: one
// that exits on its own is started again after a second, as an orchestrator
// would, and counted.
type process struct {
	name    string
	path    string
	args    []string
	env     []string
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the running incarnation exits
	starts   int
	crashes  []string // exits nobody asked for: status and the log's tail
	stopping bool     // killed or stopped on purpose
	closed   bool     // stop was called: never start again
}

// start runs a new incarnation; its output goes to the process's log.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if p.cmd != nil {
		return fmt.Errorf("%s is running already", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n===== chaos: start #%d of %s at %s\n", p.starts+1, p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive chaos
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.exited, p.stopping = cmd, make(chan struct{}), false
	p.starts++
	go p.watch(cmd, p.exited, logf)
	return nil
}

// watch waits for an incarnation to exit and restarts it if nobody asked.
func (p *process) watch(cmd *exec.Cmd, exited chan struct{}, logf *os.File) {
	err := cmd.Wait()
	logf.Close()
	p.mu.Lock()
	unasked := !p.stopping && !p.closed
	if unasked {
		p.crashes = append(p.crashes, fmt.Sprintf("%s exited on its own (%v); its log ends: %s", p.name, err, tail(p.logPath, 3)))
	}
	p.cmd = nil
	close(exited)
	p.mu.Unlock()
	if unasked {
		time.Sleep(time.Second)
		_ = p.start()
	}
}

// kill sends SIGKILL and waits for the process to be gone; it does not
// start it again.
func (p *process) kill() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: %w", p.name, errNotRunning)
	}
	p.stopping = true
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-exited
	return nil
}

// errNotRunning is kill's answer when there is nothing to kill.
var errNotRunning = errors.New("not running")

// stop ends the process for good: SIGTERM, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	p.mu.Lock()
	p.closed = true
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// unaskedExits returns what exited without being asked to.
func (p *process) unaskedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

// tail returns the last n lines of the file at path, joined by " | ".
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	lines = lines[max(0, len(lines)-n):]
	return string(bytes.Join(lines, []byte(" | ")))
}
