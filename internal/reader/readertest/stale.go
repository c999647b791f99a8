package readertest

import (
	"fmt"
	"net/http"
	"testing"
)

// StaleRead is a read of a version the reader does not have: the path and
// headers that ask for it, and the version the reader has (0 for an
// aggregate it knows nothing of).
type StaleRead struct {
	Path    string
	Headers []string
	Current int64
}

// CheckStaleReads reads each as the owner and fails t unless the answer is
// a 503 "stale" problem naming the version the reader has (read.Current)
// and a greater one requested, with a Retry-After: a version out of reach
// is said to be stale, never served silently old.
func CheckStaleReads(t testing.TB, p *Pipeline, reads []StaleRead) {
	t.Helper()
	for _, read := range reads {
		r := p.Read(read.Path, read.Headers...)
		var prob struct {
			Type                             string
			RequestedVersion, CurrentVersion int64
		}
		r.JSON(t, &prob)
		if r.Status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" ||
			prob.CurrentVersion != read.Current || prob.RequestedVersion <= read.Current || r.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s %v: %d %s; want 503 stale with currentVersion %d", read.Path, read.Headers, r.Status, r.Body, read.Current)
		}
	}
}

// CheckStaleCorrelation reads the correlation corr at least at position,
// which it does not hold, waiting 50 ms at most, and fails t unless the
// answer is a 503 "stale" problem naming the position: an event of the
// correlation that is not there is said to be missing.
func CheckStaleCorrelation(t testing.TB, p *Pipeline, corr string, position int64) {
	t.Helper()
	r := p.Read(fmt.Sprintf("/v1/correlations/%s?min_position=%d", corr, position), "Prefer", "wait=0.05")
	var prob struct {
		Type              string
		RequestedPosition int64
	}
	r.JSON(t, &prob)
	if r.Status != http.StatusServiceUnavailable || prob.Type != "https://tributary.dev/problems/stale" || prob.RequestedPosition != position {
		t.Errorf("a correlation missing the named event: %d %s", r.Status, r.Body)
	}
}
