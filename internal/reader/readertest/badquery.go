package readertest

import (
	"testing"
)

// BadQuery is a read the reader must refuse with a problem document.
type BadQuery struct {
	Path string
	// Headers are name, value pairs.
	Headers []string
	// As is who asks: the owner unless said otherwise.
	As     Caller
	Status int
	// Problem is the last segment of the problem type.
	Problem string
}

// CheckBadQueries reads each query from p's reader and fails t unless the
// answer is a problem document with a title, of the query's status and
// problem type: bad input gets the status that says why.
func CheckBadQueries(t testing.TB, p *Pipeline, queries []BadQuery) {
	t.Helper()
	for _, q := range queries {
		r := p.ReadAs(q.As, q.Path, q.Headers...)
		var prob struct{ Type, Title string }
		r.JSON(t, &prob)
		if r.Status != q.Status || prob.Type != "https://tributary.dev/problems/"+q.Problem ||
			r.Header.Get("Content-Type") != "application/problem+json" || prob.Title == "" {
			t.Errorf("GET %s %v: %d %s %s; want %d %s", q.Path, q.Headers, r.Status, r.Header.Get("Content-Type"), r.Body, q.Status, q.Problem)
		}
	}
}
