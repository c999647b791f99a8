package writer_test

import (
	"testing"

	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// FuzzCommands throws arbitrary requests at the writer's handler, from the
// owner of the counter a1, a stranger or nobody: it must never panic, never
// answer 5xx to bad input, answer every error as a problem document, never
// store an event for a request it refused or change a1 for anyone but its
// owner, and answer as the assembled writer document says
// (writertest.FuzzCommands). It runs on the platform's fixture domain; each
// domain fuzzes its own commands the same way in its package.
//
//	go test -run '^$' -fuzz FuzzCommands -fuzztime 60s ./internal/writer/
func FuzzCommands(f *testing.F) {
	seeds := []writertest.Request{
		{Method: "POST", Path: "/v1/counters", Body: `{"id":"f1","owner":"Ada","unit":"items","initial":100}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/counters/a1/start"},
		{Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":100,"unit":"items","note":"x"}`, ContentType: "application/json", IfMatch: `"3"`, IdempotencyKey: "k1"},
		{Method: "POST", Path: "/v1/counters/a1/decrements", Body: `{"amount":100,"unit":"items","note":"x"}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/counters/a1/retire", Body: `{"reason":"bye"}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/counters/a1/increments", Body: `{"amount":1e3,"unit":"items","note":"x"}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/counters/%2e%2e/increments", Body: `{}`, ContentType: "application/json"},
		{Method: "GET", Path: "/v1/streams/counter/a1?after=-1&limit=99999"},
		{Method: "GET", Path: "/v1/streams/counter/a1/state?at=yesterday"},
		{Method: "POST", Path: "/v1/counters", Body: `{"owner":"\u0000","unit":"items"}`, ContentType: "application/merge-patch+json", IfMatch: "*", IdempotencyKey: "\x00"},
	}
	st := newStack(f, 1)
	openActive(st, "a1", 1000)
	writertest.FuzzCommands(f, st, "counter", "a1", seeds)
}
