package reader

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// Transactions is a page of an account's history, newest first.
type Transactions struct {
	AccountID string           `json:"accountId"`
	Items     []accounts.Entry `json:"items"`
	// Next is the cursor of the following, older page; absent on the last.
	Next string `json:"next,omitempty"`
}

// DirectoryEntry is an account in a directory listing: with its opening
// time when listed by status, its balance when listed by balance.
type DirectoryEntry struct {
	ID       string     `json:"id"`
	OpenedAt *time.Time `json:"openedAt,omitempty"`
	Balance  *int64     `json:"balance,omitempty"`
	Currency string     `json:"currency,omitempty"`
}

// Directory is a page of the account directory.
type Directory struct {
	Items []DirectoryEntry `json:"items"`
	// Next is the cursor of the following page; absent on the last.
	Next string `json:"next,omitempty"`
}

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	serveVersioned(s, w, r, s.accounts.Summary, func(sum accounts.Summary) int64 { return sum.Version },
		func(sum accounts.Summary) string { return sum.Principal }, "account", unknownAccount)
}

// serveVersioned answers GET of one aggregate's read model: the id
// checked, read at least at the version the request names (or stale), 404
// when unknown, 403 when the caller may not read what its owner (the
// principal of its first event) owns, the version as ETag and 304 for
// If-None-Match.
//
// The owner is read with the model and checked on every read, also while
// waiting for a version: a caller who may not read the model gets 403 as
// soon as it is seen — never the model, a 304 or a stale answer that would
// tell its version. An id the read model does not know stays 404 (or
// stale, when a version was asked for), whoever asks.
func serveVersioned[T any](s *Server, w http.ResponseWriter, r *http.Request,
	read func(context.Context, string) (T, bool, error), version func(T) int64, owner func(T) string,
	what string, unknown func(id string) *problem.Problem,
) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if p := httpapi.ID(id); p != nil {
		problem.Write(w, r, p)
		return
	}
	want, p := minVersion(r)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	var model T
	var found bool
	have, err := s.await(r, want, func(ctx context.Context) (int64, error) {
		var err error
		model, found, err = read(ctx, id)
		if err == nil && found && !who.MayAccess(owner(model)) {
			return 0, auth.ErrForbidden
		}
		return version(model), err
	})
	switch {
	case errors.Is(err, auth.ErrForbidden):
		problem.Write(w, r, notYours(what, id))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	case have < want:
		writeStale(w, r, stale(want, have))
		return
	case !found:
		problem.Write(w, r, unknown(id))
		return
	}
	tag := `"` + strconv.FormatInt(version(model), 10) + `"`
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, model)
}

// getTransactions answers a page of an account's history. The owner comes
// with the version and the page in one read; while it waits for a version,
// it reads only the version and the owner, then the page once.
func (s *Server) getTransactions(w http.ResponseWriter, r *http.Request) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if p := httpapi.ID(id); p != nil {
		problem.Write(w, r, p)
		return
	}
	limit, p := httpapi.QueryInt(r, "limit", int64(s.cfg.DefaultPage), 1, int64(s.cfg.MaxPage))
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	before, ok := decodeHistoryCursor(r.URL.Query().Get("cursor"), id)
	if !ok {
		problem.Write(w, r, badCursor())
		return
	}
	want, p := minVersion(r)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	var page accounts.HistoryPage
	withEntries, reads := false, 0
	have, err := s.await(r, want, func(ctx context.Context) (int64, error) {
		var err error
		if reads++; reads == 1 {
			page, err = s.accounts.History(ctx, id, before, int(limit))
		} else {
			page = accounts.HistoryPage{}
			page.Version, page.Owner, err = s.accounts.HistoryHead(ctx, id)
		}
		withEntries = reads == 1 && err == nil
		if err == nil && page.Version > 0 && !who.MayAccess(page.Owner) {
			return 0, auth.ErrForbidden
		}
		return page.Version, err
	})
	switch {
	case errors.Is(err, auth.ErrForbidden):
		problem.Write(w, r, notYours("account", id))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	case have < want:
		writeStale(w, r, stale(want, have))
		return
	case have == 0:
		problem.Write(w, r, unknownAccount(id))
		return
	}
	if !withEntries {
		if page, err = s.accounts.History(r.Context(), id, before, int(limit)); err != nil {
			s.fail(w, r, err)
			return
		}
		if !who.MayAccess(page.Owner) { // an owner never changes; checked all the same
			problem.Write(w, r, notYours("account", id))
			return
		}
	}
	out := Transactions{AccountID: id, Items: page.Entries}
	if page.Next > 0 {
		out.Next = encodeCursor("h1:" + id + ":" + strconv.FormatInt(page.Next, 10))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// listAccounts answers a page of the account directory, which spans every
// owner: operators only.
func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	if !who.MayList() {
		problem.Write(w, r, auth.Forbidden("the account directory lists every owner's accounts: it is for operators only"))
		return
	}
	q := r.URL.Query()
	limit, p := httpapi.QueryInt(r, "limit", int64(s.cfg.DefaultPage), 1, int64(s.cfg.MaxPage))
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	if q.Has("min_version") || r.Header.Get(MinVersionHeader) != "" {
		problem.Write(w, r, invalidQuery("min_version applies to one account: GET /v1/accounts/{id} or its transactions"))
		return
	}
	var status, currency, sort string
	for _, param := range []struct {
		name string
		to   *string
	}{{"status", &status}, {"currency", &currency}, {"sort", &sort}} {
		if *param.to, p = httpapi.Query(r, param.name); p != nil {
			problem.Write(w, r, p)
			return
		}
	}
	var kind, key string
	switch sort {
	case "", "opened":
		if status != "pending" && status != "active" && status != "closed" {
			problem.Write(w, r, invalidQuery("status must be pending, active or closed (or use sort=balance&currency=XYZ)"))
			return
		}
		if currency != "" {
			problem.Write(w, r, invalidQuery("currency applies to sort=balance only"))
			return
		}
		kind, key = "s", status
	case "balance":
		if !currencyPattern.MatchString(currency) {
			problem.Write(w, r, invalidQuery("sort=balance needs currency: three upper-case letters (ISO 4217)"))
			return
		}
		if status != "" {
			problem.Write(w, r, invalidQuery("sort=balance ranks pending and active accounts; it does not combine with status"))
			return
		}
		kind, key = "b", currency
	default:
		problem.Write(w, r, invalidQuery("sort must be opened or balance"))
		return
	}
	after, ok := decodeDirectoryCursor(q.Get("cursor"), kind, key)
	if !ok {
		problem.Write(w, r, badCursor())
		return
	}
	var page accounts.DirectoryPage
	var err error
	if kind == "b" {
		page, err = s.accounts.ByBalancePage(r.Context(), key, after, int(limit))
	} else {
		page, err = s.accounts.ByStatusPage(r.Context(), key, after, int(limit))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := Directory{Items: make([]DirectoryEntry, len(page.Items))}
	for i, it := range page.Items {
		out.Items[i].ID = it.ID
		if kind == "b" {
			balance := it.Score
			out.Items[i].Balance, out.Items[i].Currency = &balance, key
		} else {
			opened := time.UnixMilli(it.Score).UTC()
			out.Items[i].OpenedAt = &opened
		}
	}
	if page.Next != nil {
		out.Next = encodeCursor("d1:" + kind + ":" + key + ":" + strconv.FormatInt(page.Next.Score, 10) + ":" + page.Next.ID)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// Cursors are opaque to clients: base64url of a versioned position.
func encodeCursor(pos string) string { return base64.RawURLEncoding.EncodeToString([]byte(pos)) }

func decodeCursor(c string) (string, bool) {
	if len(c) > 512 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	return string(b), err == nil
}

// decodeHistoryCursor returns the version a history page of account id
// starts below; 0 (the newest) without a cursor. A cursor of another
// account's history is refused.
func decodeHistoryCursor(c, id string) (int64, bool) {
	if c == "" {
		return 0, true
	}
	pos, ok := decodeCursor(c)
	v, found := strings.CutPrefix(pos, "h1:"+id+":")
	if !ok || !found {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 1
}

// decodeDirectoryCursor returns the position a directory page starts after;
// nil without a cursor. A cursor of another listing is refused.
func decodeDirectoryCursor(c, kind, key string) (*accounts.Ranked, bool) {
	if c == "" {
		return nil, true
	}
	pos, ok := decodeCursor(c)
	rest, found := strings.CutPrefix(pos, "d1:"+kind+":"+key+":")
	if !ok || !found {
		return nil, false
	}
	score, id, _ := strings.Cut(rest, ":")
	n, err := strconv.ParseInt(score, 10, 64)
	if err != nil || httpapi.ID(id) != nil {
		return nil, false
	}
	return &accounts.Ranked{ID: id, Score: n}, true
}

// etagMatches tells whether an If-None-Match value matches tag (weak
// comparison, RFC 9110 §13.1.2).
func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}

// notYours is the 403 for a read model of what another principal owns.
func notYours(what, id string) *problem.Problem {
	return auth.Forbidden(what + " " + id + " belongs to another principal: only its owner and operators may read it")
}

func unknownAccount(id string) *problem.Problem {
	return problem.New(http.StatusNotFound, "unknown-account", "Unknown account", "no account "+id+" in the read model")
}

func badCursor() *problem.Problem {
	return problem.New(http.StatusBadRequest, "invalid-cursor", "Invalid cursor",
		"cursor must be the next value of an earlier page of this same listing")
}

func invalidQuery(detail string) *problem.Problem {
	return problem.New(http.StatusBadRequest, "invalid-query", "Invalid query parameter", detail)
}
