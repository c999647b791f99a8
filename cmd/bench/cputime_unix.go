//go:build unix

package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// userHz is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// architecture Go supports.
const userHz = 100

// machineCPU is the CPU time every process of the machine has used (busy,
// not idle or waiting for I/O), from /proc/stat; 0 where there is none.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 7 { // not idle, iowait, steal; not guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHz
}

// processesCPU is the CPU time of the processes whose name (comm) is one
// of names, by name: the user and system time of each one alive, with all
// its threads, plus that of the children it reaped (cutime and cstime), so
// that a Postgres backend that exits stays counted, in the postmaster's.
// From /proc; empty where there is none.
func processesCPU(names ...string) map[string]processGroupCPU {
	usage := make(map[string]processGroupCPU, len(names))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return usage
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it ended
		}
		name, ticks, ok := parseProcStat(string(b))
		if !ok || !slices.Contains(names, name) {
			continue
		}
		u := usage[name]
		u.cpu += ticks * time.Second / userHz
		u.processes++
		usage[name] = u
	}
	return usage
}

// parseProcStat reads a /proc/<pid>/stat line: the process's name and its
// utime+stime+cutime+cstime in clock ticks.
func parseProcStat(line string) (comm string, ticks time.Duration, ok bool) {
	// pid (comm) state ppid ...: comm may hold spaces and parentheses, the
	// last ')' ends it.
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(line[end+1:]) // from field 3, state
	if len(f) < 15 {
		return "", 0, false
	}
	for _, v := range f[11:15] { // fields 14-17: utime stime cutime cstime
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", 0, false
		}
		ticks += time.Duration(n)
	}
	return line[open+1 : end], ticks, true
}
