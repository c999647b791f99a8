package writertest

import "strings"

// Command is a command an aggregate takes, for PlatformRefusals: Body
// posted to Collection/ID/Verb ("/v1/things/t1/grow", say).
type Command struct {
	// AggregateType is the aggregate's type, as the stream routes name it.
	AggregateType string
	// Collection is the path of the aggregates' collection: "/v1/things".
	Collection string
	// ID is an aggregate the command is taken on, whose stream is past
	// version 1.
	ID string
	// Verb is the command's last path segment.
	Verb string
	// Body is a body the command takes, with members.
	Body string
}

// PlatformRefusals are the requests the writer refuses whatever the domain
// (the command c spoiled in its framing, headers, path or id, and the
// stream routes named wrong), with the problems they get: to check with
// CheckBadInput, after the domain's own.
func PlatformRefusals(c Command) []BadInput {
	at := func(id string) string { return c.Collection + "/" + id + "/" + c.Verb }
	path := at(c.ID)
	header := func(name, problem, header, value string, status int) BadInput {
		return BadInput{Name: name, Method: "POST", Path: path, Body: c.Body, Headers: []string{header, value}, Status: status, Problem: problem}
	}
	return []BadInput{
		{Name: "not an object", Method: "POST", Path: path, Body: `[1,2]`, Status: 400, Problem: "wrong-type"},
		{Name: "two objects", Method: "POST", Path: path, Body: c.Body + c.Body, Status: 400, Problem: "malformed-json"},
		{Name: "trailing garbage", Method: "POST", Path: path, Body: c.Body + `x`, Status: 400, Problem: "malformed-json"},
		{Name: "empty body", Method: "POST", Path: path, Status: 400, Problem: "empty-body"},
		{Name: "null body with members required", Method: "POST", Path: path, Body: ` null `, Status: 400, Problem: "wrong-type"},
		header("wrong content type", "unsupported-media-type", "Content-Type", "text/plain", 415),
		{Name: "unknown command", Method: "POST", Path: c.Collection + "/" + c.ID + "/explode", Body: `{}`, Status: 404, Problem: "not-found"},
		{Name: "wrong method", Method: "DELETE", Path: c.Collection + "/" + c.ID, Status: 404, Problem: "not-found"},
		header("stale If-Match", "version-mismatch", "If-Match", `"1"`, 412),
		header("weak If-Match", "invalid-if-match", "If-Match", `W/"3"`, 400),
		header("If-Match with a sign", "invalid-if-match", "If-Match", `"+3"`, 400),
		header("If-Match with a leading zero", "invalid-if-match", "If-Match", `"03"`, 400),
		header("garbage If-Match", "invalid-if-match", "If-Match", `three`, 400),
		header("correlation id with spaces", "invalid-header", "X-Correlation-ID", "a b", 400),
		header("huge idempotency key", "invalid-header", "Idempotency-Key", strings.Repeat("k", 200), 400),
		// Hostile ids.
		{Name: "very long id", Method: "POST", Path: at(strings.Repeat("a", 65)), Body: c.Body, Status: 400, Problem: "invalid-id"},
		{Name: "encoded slash", Method: "POST", Path: at("a1%2Fa2"), Body: c.Body, Status: 400, Problem: "invalid-id"},
		{Name: "encoded traversal", Method: "POST", Path: at("a1%2F..%2Fa2"), Body: c.Body, Status: 400, Problem: "invalid-path"},
		{Name: "encoded dot-dot", Method: "POST", Path: at("%2e%2e"), Body: c.Body, Status: 400, Problem: "invalid-path"},
		{Name: "NUL in id", Method: "POST", Path: at("a%001"), Body: c.Body, Status: 400, Problem: "invalid-id"},
		{Name: "hostile stream id", Method: "GET", Path: "/v1/streams/" + c.AggregateType + "/%2e%2e%2fetc", Status: 400, Problem: "invalid-path"},
		{Name: "hostile state id", Method: "GET", Path: "/v1/streams/" + c.AggregateType + "/a%20b/state", Status: 400, Problem: "invalid-id"},
		{Name: "unknown stream type", Method: "GET", Path: "/v1/streams/nothing/" + c.ID, Status: 404, Problem: "unknown-aggregate-type"},
	}
}
