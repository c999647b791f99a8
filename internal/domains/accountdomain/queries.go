package accountdomain

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// queries are the reader's routes over the account read models
// (schemas/openapi/reader.yaml documents them).
func queries() []reader.Route {
	return []reader.Route{
		reader.Versioned("GET /v1/accounts/{id}", reader.VersionedModel[accounts.Summary]{
			What: "account",
			Read: func(src reader.Source) func(context.Context, string) (accounts.Summary, bool, error) {
				return accounts.NewQueriesWithViews(src.Redis, src.Root, src.Views).Summary
			},
			Version: func(s accounts.Summary) int64 { return s.Version },
			Owner:   func(s accounts.Summary) string { return s.Principal },
		}),
		reader.Handle("GET /v1/accounts/{id}/transactions", func(q reader.Query) http.Handler {
			src := q.Source()
			queries := accounts.NewQueriesWithViews(src.Redis, src.Root, src.Views)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { getTransactions(q, queries, w, r) })
		}),
		reader.Handle("GET /v1/accounts", func(q reader.Query) http.Handler {
			src := q.Source()
			queries := accounts.NewQueriesWithViews(src.Redis, src.Root, src.Views)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { listAccounts(q, queries, w, r) })
		}),
	}
}

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

// getTransactions answers a page of an account's history. The owner comes
// with the version and the page in one read; while it waits for a version,
// it reads only the version and the owner, then the page once.
func getTransactions(q reader.Query, queries *accounts.Queries, w http.ResponseWriter, r *http.Request) {
	who, ok := q.Caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if p := httpapi.ID(id); p != nil {
		problem.Write(w, r, p)
		return
	}
	limit, p := q.Limit(r)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	before, ok := decodeHistoryCursor(r.URL.Query().Get("cursor"), id)
	if !ok {
		problem.Write(w, r, reader.BadCursor())
		return
	}
	want, p := q.MinVersion(r)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	var page accounts.HistoryPage
	withEntries, reads := false, 0
	have, err := q.Await(r, want, func(ctx context.Context) (int64, error) {
		var err error
		if reads++; reads == 1 {
			page, err = queries.History(ctx, id, before, limit)
		} else {
			page = accounts.HistoryPage{}
			page.Version, page.Owner, err = queries.HistoryHead(ctx, id)
		}
		withEntries = reads == 1 && err == nil
		if err == nil && page.Version > 0 && !who.MayAccess(page.Owner) {
			return 0, auth.ErrForbidden
		}
		return page.Version, err
	})
	switch {
	case errors.Is(err, auth.ErrForbidden):
		problem.Write(w, r, reader.NotYours("account", id))
		return
	case err != nil:
		q.Fail(w, r, err)
		return
	case have < want:
		q.Stale(w, r, want, have)
		return
	case have == 0:
		problem.Write(w, r, reader.Unknown("account", id))
		return
	}
	if !withEntries {
		if page, err = queries.History(r.Context(), id, before, limit); err != nil {
			q.Fail(w, r, err)
			return
		}
		if !who.MayAccess(page.Owner) { // an owner never changes; checked all the same
			problem.Write(w, r, reader.NotYours("account", id))
			return
		}
	}
	out := Transactions{AccountID: id, Items: page.Entries}
	if page.Next > 0 {
		out.Next = reader.EncodeCursor("h1:" + id + ":" + strconv.FormatInt(page.Next, 10))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// listAccounts answers a page of the account directory, which spans every
// owner: operators only.
func listAccounts(q reader.Query, queries *accounts.Queries, w http.ResponseWriter, r *http.Request) {
	who, ok := q.Caller(w, r)
	if !ok {
		return
	}
	if !who.MayList() {
		problem.Write(w, r, auth.Forbidden("the account directory lists every owner's accounts: it is for operators only"))
		return
	}
	params := r.URL.Query()
	limit, p := q.Limit(r)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	if params.Has("min_version") || r.Header.Get(reader.MinVersionHeader) != "" {
		problem.Write(w, r, reader.InvalidQuery("min_version applies to one account: GET /v1/accounts/{id} or its transactions"))
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
			problem.Write(w, r, reader.InvalidQuery("status must be pending, active or closed (or use sort=balance&currency=XYZ)"))
			return
		}
		if currency != "" {
			problem.Write(w, r, reader.InvalidQuery("currency applies to sort=balance only"))
			return
		}
		kind, key = "s", status
	case "balance":
		if !currencyPattern.MatchString(currency) {
			problem.Write(w, r, reader.InvalidQuery("sort=balance needs currency: three upper-case letters (ISO 4217)"))
			return
		}
		if status != "" {
			problem.Write(w, r, reader.InvalidQuery("sort=balance ranks pending and active accounts; it does not combine with status"))
			return
		}
		kind, key = "b", currency
	default:
		problem.Write(w, r, reader.InvalidQuery("sort must be opened or balance"))
		return
	}
	after, ok := decodeDirectoryCursor(params.Get("cursor"), kind, key)
	if !ok {
		problem.Write(w, r, reader.BadCursor())
		return
	}
	var page accounts.DirectoryPage
	var err error
	if kind == "b" {
		page, err = queries.ByBalancePage(r.Context(), key, after, limit)
	} else {
		page, err = queries.ByStatusPage(r.Context(), key, after, limit)
	}
	if err != nil {
		q.Fail(w, r, err)
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
		out.Next = reader.EncodeCursor("d1:" + kind + ":" + key + ":" + strconv.FormatInt(page.Next.Score, 10) + ":" + page.Next.ID)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// decodeHistoryCursor returns the version a history page of account id
// starts below; 0 (the newest) without a cursor. A cursor of another
// account's history is refused.
func decodeHistoryCursor(c, id string) (int64, bool) {
	if c == "" {
		return 0, true
	}
	pos, ok := reader.DecodeCursor(c)
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
	pos, ok := reader.DecodeCursor(c)
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
