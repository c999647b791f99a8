package accountdomain_test

import (
	"testing"

	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/writer/writertest"
)

// FuzzCommands throws arbitrary requests at the writer's handler, from the
// owner of the account a1, a stranger or nobody: it must never panic, never
// answer 5xx to bad input, answer every error as a problem document, never
// store an event for a request it refused or change a1 for anyone but its
// owner, and answer as schemas/openapi/writer.yaml says
// (writertest.FuzzCommands).
//
//	go test -run '^$' -fuzz FuzzCommands -fuzztime 60s ./internal/domains/accountdomain/
func FuzzCommands(f *testing.F) {
	seeds := []writertest.Request{
		{Method: "POST", Path: "/v1/accounts", Body: `{"id":"f1","owner":"Ada","currency":"EUR","initialDeposit":100}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/accounts/a1/activate"},
		{Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":100,"currency":"EUR","source":"x"}`, ContentType: "application/json", IfMatch: `"3"`, IdempotencyKey: "k1"},
		{Method: "POST", Path: "/v1/accounts/a1/withdrawals", Body: `{"amount":100,"currency":"EUR","reason":"x"}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/accounts/a1/close", Body: `{"reason":"bye"}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/accounts/a1/deposits", Body: `{"amount":1e3,"currency":"EUR","source":"x"}`, ContentType: "application/json"},
		{Method: "POST", Path: "/v1/accounts/%2e%2e/deposits", Body: `{}`, ContentType: "application/json"},
		{Method: "GET", Path: "/v1/streams/account/a1?after=-1&limit=99999"},
		{Method: "GET", Path: "/v1/streams/account/a1/state?at=yesterday"},
		{Method: "POST", Path: "/v1/accounts", Body: `{"owner":"\u0000","currency":"EUR"}`, ContentType: "application/merge-patch+json", IfMatch: "*", IdempotencyKey: "\x00"},
	}
	st := banktest.NewStack(f, 1)
	banktest.OpenActive(st, "a1", 1000)
	writertest.FuzzCommands(f, st, "account", "a1", seeds)
}
