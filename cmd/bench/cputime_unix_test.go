//go:build unix

package main

import (
	"testing"
	"time"
)

// TestParseProcStat reads the name and the CPU ticks of /proc/<pid>/stat
// lines, names with spaces and parentheses included.
func TestParseProcStat(t *testing.T) {
	for _, tt := range []struct {
		line  string
		comm  string
		ticks time.Duration
		ok    bool
	}{
		{"2234 (postgres) S 1 2234 2234 0 -1 4194560 9431 1079045 0 37 120 88 3500 1200 20 0 1 0 1234 228 2 18446744073709551615",
			"postgres", 120 + 88 + 3500 + 1200, true},
		{"77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 5 6 7 8 20 0 1 0", "a (b) c", 26, true},
		{"77 (short) R 1 2 3", "", 0, false},
		{"garbage", "", 0, false},
	} {
		comm, ticks, ok := parseProcStat(tt.line)
		if comm != tt.comm || ticks != tt.ticks || ok != tt.ok {
			t.Errorf("parseProcStat(%q) = %q, %d, %v; want %q, %d, %v", tt.line, comm, ticks, ok, tt.comm, tt.ticks, tt.ok)
		}
	}
}
