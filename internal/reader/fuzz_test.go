package reader_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/reader/readertest"
)

// FuzzQueries throws arbitrary requests at the reader's handler, over read
// models that hold two counters of the owner (the fixture domain's; each domain
// fuzzes its own queries in its package), from the owner, a stranger,
// an operator, a forged token or nobody (caller, modulo 5): it must never
// panic, answer 5xx only as the documented "stale" 503 of a version it
// cannot see yet, answer every error as a problem document, answer as
// the assembled reader document says, and serve nobody but the owner and the
// operator anything but the public paths (readertest.FuzzQueries).
//
//	go test -run '^$' -fuzz FuzzQueries -fuzztime 60s ./internal/reader/
func FuzzQueries(f *testing.F) {
	seeds := []readertest.Query{
		{Method: "GET", Path: "/v1/counters/fz-1", Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/counters/fz-1?min_version=3", IfNoneMatch: `"3"`, Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/counters/fz-1?min_version=99", Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/counters/fz-1", MinVersion: `"2"`, Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/counters/fz-1?min_version", Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/correlations/c-1?min_position=1", Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/counters/..%2Fx", Caller: readertest.AsOwner},
		{Method: "HEAD", Path: "/v1/counters/%2e%2e", IfNoneMatch: "*", Caller: readertest.AsOwner},
		{Method: "DELETE", Path: "/v1/counters/fz-1", Caller: readertest.AsOwner},
		{Method: "GET", Path: "/v1/counters/fz-1?min_version=99", IfNoneMatch: "*", Caller: readertest.AsStranger},
		{Method: "GET", Path: "/v1/counters/fz-0", Caller: readertest.AsStranger},
		{Method: "GET", Path: "/v1/counters/fz-1", Caller: readertest.AsOperator},
		{Method: "GET", Path: "/v1/counters/fz-1", Caller: readertest.Anonymous},
		{Method: "GET", Path: "/v1/counters/fz-1", Caller: readertest.Forged},
		{Method: "GET", Path: "/healthz", Caller: readertest.Anonymous},
		{Method: "HEAD", Path: "/metrics", Caller: readertest.Anonymous},
	}
	cfg := reader.DefaultConfig()
	cfg.MaxWait = 20 * time.Millisecond // a version out of reach answers "stale" at once
	p := newPipeline(f, cfg)
	var last written
	for i := range 2 {
		last = openActive(p, fmt.Sprintf("fz-%d", i), 100)
	}
	p.Read(fmt.Sprintf("/v1/counters/fz-1?min_version=%d", last.version))
	readertest.FuzzQueries(f, p, seeds)
}
