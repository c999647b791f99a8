package reader_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/reader"
)

// Bad input gets a problem document and the status that says why.
func TestBadQueriesGetProblems(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	p.openActive("bad-0", 100)
	v := p.openActive("bad-1", 100)
	p.read(fmt.Sprintf("/v1/accounts/bad-1/transactions?min_version=%d", v.version)) // built
	p.read(fmt.Sprintf("/v1/accounts/bad-1?min_version=%d", v.version))
	waitFor(t, 30*time.Second, "directory served", func() bool {
		return strings.Contains(string(p.readAs(asOperator, "/v1/accounts?status=active").body), "bad-1")
	})
	other := p.readAs(asOperator, "/v1/accounts?status=active&limit=1")
	tests := []struct {
		path   string
		header []string
		status int
		typ    string
	}{
		{"/v1/accounts/" + strings.Repeat("x", 65), nil, 400, "invalid-id"},
		{"/v1/accounts/%C3%A9t%C3%A9", nil, 400, "invalid-id"},
		{"/v1/accounts/a%2F..%2Fb", nil, 400, "invalid-path"}, // decoded, a ".." segment
		{"/v1/accounts/./bad-1", nil, 400, "invalid-path"},
		{"/v1/accounts//transactions", nil, 400, "invalid-path"},
		{"/.", nil, 400, "invalid-path"}, // found by FuzzQueries: the router redirected it
		{"/v1/accounts/a%00b", nil, 400, "invalid-id"},
		{"/v1/accounts/-leading-dash", nil, 400, "invalid-id"},
		{"/v1/accounts/nobody", nil, 404, "unknown-account"},
		{"/v1/accounts/nobody/transactions", nil, 404, "unknown-account"},
		{"/v1/accounts/bad-1?min_version=0", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1?min_version=x", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1?min_version=-3", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1", []string{reader.MinVersionHeader, "soon"}, 400, "invalid-min-version"},
		{"/v1/accounts/bad-1", []string{reader.MinVersionHeader, `"0"`}, 400, "invalid-min-version"},
		{"/v1/accounts/bad-1/transactions?limit=0", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1/transactions?limit=501", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1/transactions?limit=ten", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1/transactions?cursor=%%%", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1/transactions?cursor=bm90LWEtY3Vyc29y", nil, 400, "invalid-cursor"},
		{"/v1/accounts/bad-1/transactions?cursor=" + url.QueryEscape(strings.Repeat("A", 600)), nil, 400, "invalid-cursor"},
		{"/v1/accounts/bad-1/transactions?cursor=" + cursor("h1:bad-1:1"), nil, 400, "invalid-cursor"}, // nothing is below version 1
		{"/v1/accounts/bad-1/transactions?cursor=" + cursor("h1:bad-0:2"), nil, 400, "invalid-cursor"}, // another account's history
		{"/v1/accounts/bad-1", []string{reader.MinVersionHeader, `"7`}, 400, "invalid-min-version"},
		{"/v1/accounts/bad-1", []string{reader.MinVersionHeader, `+7`}, 400, "invalid-min-version"},
		{"/v1/accounts", nil, 400, "invalid-query"},
		{"/v1/accounts?status=frozen", nil, 400, "invalid-query"},
		{"/v1/accounts?sort=name&status=active", nil, 400, "invalid-query"},
		{"/v1/accounts?sort=balance", nil, 400, "invalid-query"},
		{"/v1/accounts?sort=balance&currency=eur", nil, 400, "invalid-query"},
		{"/v1/accounts?sort=balance&currency=EUR&status=active", nil, 400, "invalid-query"},
		{"/v1/accounts?status=active&currency=EUR", nil, 400, "invalid-query"},
		{"/v1/accounts?status=active&min_version=3", nil, 400, "invalid-query"},
		{"/v1/accounts?status=pending&cursor=" + url.QueryEscape(nextOf(t, other)), nil, 400, "invalid-cursor"},
		{"/v1/accounts?sort=balance&currency=USD&cursor=" + url.QueryEscape(nextOf(t, other)), nil, 400, "invalid-cursor"},
		{"/v1/correlations/" + strings.Repeat("c", 129), nil, 400, "invalid-id"},
		{"/v1/correlations/x?min_position=0", nil, 400, "invalid-query"},
		// A parameter without a value is refused, not read as absent (an
		// empty cursor is the first page, as its documentation says).
		{"/v1/accounts?status=active&sort=", nil, 400, "invalid-query"},
		{"/v1/accounts?status=active&currency", nil, 400, "invalid-query"},
		{"/v1/accounts?status=active&limit=", nil, 400, "invalid-query"},
		{"/v1/accounts/bad-1?min_version=", nil, 400, "invalid-query"},
		{"/v1/correlations/x?min_position", nil, 400, "invalid-query"},
		{"/v1/nothing", nil, 404, "not-found"},
	}
	if r := p.do(p.reader, http.MethodDelete, "/v1/accounts/bad-1", ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET" {
		t.Errorf("DELETE an account: %d Allow %q %s", r.status, r.header.Get("Allow"), r.body)
	}
	// The next page of bad-1's history is a cursor for bad-1 only.
	var page accountdomain.Transactions
	p.read("/v1/accounts/bad-1/transactions?limit=1").json(t, &page)
	if r := p.read("/v1/accounts/bad-0/transactions?cursor=" + url.QueryEscape(page.Next)); r.status != http.StatusBadRequest || page.Next == "" {
		t.Errorf("bad-1's cursor on bad-0's history: %d %s", r.status, r.body)
	}
	for _, tc := range tests {
		as := asOwner
		if tc.path == "/v1/accounts" || strings.HasPrefix(tc.path, "/v1/accounts?") {
			as = asOperator // the directory is for operators
		}
		r := p.readAs(as, tc.path, tc.header...)
		var prob struct{ Type, Title string }
		r.json(t, &prob)
		if r.status != tc.status || prob.Type != "https://tributary.dev/problems/"+tc.typ ||
			r.header.Get("Content-Type") != "application/problem+json" || prob.Title == "" {
			t.Errorf("GET %s %v: %d %s %s; want %d %s", tc.path, tc.header, r.status, r.header.Get("Content-Type"), r.body, tc.status, tc.typ)
		}
	}
}

func nextOf(t *testing.T, r response) string {
	t.Helper()
	var d accountdomain.Directory
	r.json(t, &d)
	if d.Next == "" {
		t.Fatalf("a listing without a next page: %s", r.body)
	}
	return d.Next
}

// The summary carries its version as ETag; If-None-Match with it answers
// 304 until the account changes.
func TestETagAndNotModified(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	v := p.openActive("etag-1", 100)
	r := p.read(fmt.Sprintf("/v1/accounts/etag-1?min_version=%d", v.version))
	tag := r.header.Get("ETag")
	if r.status != http.StatusOK || tag != fmt.Sprintf(`"%d"`, v.version) {
		t.Fatalf("read: %d ETag %q %s", r.status, tag, r.body)
	}
	for _, inm := range []string{tag, "W/" + tag, `"999", ` + tag, "*"} {
		if r := p.read("/v1/accounts/etag-1", "If-None-Match", inm); r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != tag {
			t.Fatalf("If-None-Match %s: %d %q", inm, r.status, r.body)
		}
	}
	c := p.command(http.StatusOK, "/v1/accounts/etag-1/deposits", `{"amount":5,"currency":"EUR","source":"gift"}`)
	r = p.read("/v1/accounts/etag-1", "If-None-Match", tag, reader.MinVersionHeader, fmt.Sprint(c.StreamVersion))
	if r.status != http.StatusOK || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, c.StreamVersion) {
		t.Fatalf("after a deposit with the old ETag: %d %s", r.status, r.body)
	}
}

// The directory over HTTP: by status oldest first, by balance largest first,
// every account once across pages.
func TestDirectoryOverHTTP(t *testing.T) {
	p := newPipeline(t, reader.DefaultConfig())
	var last written
	for i := range 23 {
		last = p.openActive(fmt.Sprintf("dir-%02d", i), int64(100*(i%5)))
	}
	p.command(http.StatusCreated, "/v1/accounts", `{"id":"dir-pending","owner":"Cy","currency":"USD"}`)
	p.read(fmt.Sprintf("/v1/accounts/dir-22?min_version=%d", last.version))
	list := func(query string) []accountdomain.DirectoryEntry {
		var all []accountdomain.DirectoryEntry
		cursor := ""
		for pages := 0; pages < 50; pages++ {
			r := p.readAs(asOperator, "/v1/accounts?"+query+"&limit=4&cursor="+url.QueryEscape(cursor))
			if r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", query, r.status, r.body)
			}
			var d accountdomain.Directory
			r.json(t, &d)
			all = append(all, d.Items...)
			if cursor = d.Next; cursor == "" {
				return all
			}
		}
		t.Fatalf("%s: no end", query)
		return nil
	}
	var active []accountdomain.DirectoryEntry
	waitFor(t, 30*time.Second, "23 active accounts in the directory", func() bool {
		active = list("status=active")
		return len(active) == 23
	})
	for i, e := range active { // every id once, in opening order
		if e.ID != fmt.Sprintf("dir-%02d", i) || e.OpenedAt == nil || e.Balance != nil {
			t.Fatalf("active[%d] = %+v", i, e)
		}
	}
	ranked := list("sort=balance&currency=EUR")
	if len(ranked) != 23 {
		t.Fatalf("%d ranked accounts, want 23", len(ranked))
	}
	for i, e := range ranked {
		// Strictly after the previous one in (balance desc, id desc): a
		// repeated account, or one out of order, fails here.
		if e.Balance == nil || e.Currency != "EUR" || (i > 0 && (*e.Balance > *ranked[i-1].Balance ||
			(*e.Balance == *ranked[i-1].Balance && e.ID >= ranked[i-1].ID))) {
			t.Fatalf("ranked[%d] = %+v after %+v", i, e, ranked[max(i-1, 0)])
		}
	}
	if *ranked[0].Balance != 400 {
		t.Fatalf("top balance %d, want 400", *ranked[0].Balance)
	}
	var pending []accountdomain.DirectoryEntry
	waitFor(t, 30*time.Second, "the pending account in the directory", func() bool {
		pending = list("status=pending&sort=opened")
		return len(pending) > 0
	})
	if len(pending) != 1 || pending[0].ID != "dir-pending" {
		t.Fatalf("pending: %+v", pending)
	}
}

// cursor encodes a raw cursor position as the reader does.
func cursor(pos string) string { return base64.RawURLEncoding.EncodeToString([]byte(pos)) }
