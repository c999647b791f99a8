package accounts

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Queries read the account read models through their active generations.
type Queries struct {
	rdb                         redis.Cmdable
	views                       *readmodels.Views
	summary, history, directory readmodels.Layout
}

// NewQueries reads the projections kept under root, looking up the active
// generation on every query.
func NewQueries(rdb redis.Cmdable, root string) *Queries {
	return NewQueriesWithViews(rdb, root, readmodels.NewViews(rdb, 0))
}

// NewQueriesWithViews reads the projections kept under root through views,
// which may keep the active generations for a while.
func NewQueriesWithViews(rdb redis.Cmdable, root string, views *readmodels.Views) *Queries {
	return &Queries{
		rdb:       rdb,
		views:     views,
		summary:   readmodels.NewLayout(root, SummaryName),
		history:   readmodels.NewLayout(root, HistoryName),
		directory: readmodels.NewLayout(root, DirectoryName),
	}
}

// SummaryVersion is the account's last version the summary applied; 0 when
// it knows no event of it.
func (q *Queries) SummaryVersion(ctx context.Context, id string) (int64, error) {
	return q.version(ctx, q.summary, id)
}

// HistoryVersion is the account's last version the history applied; 0 when
// it knows no event of it.
func (q *Queries) HistoryVersion(ctx context.Context, id string) (int64, error) {
	return q.version(ctx, q.history, id)
}

func (q *Queries) version(ctx context.Context, layout readmodels.Layout, id string) (int64, error) {
	v, err := q.views.Active(ctx, layout)
	if err != nil {
		return 0, err
	}
	return readmodels.Version(ctx, q.rdb, v, account.AggregateType, id)
}

// Summary returns an account's summary; found is false for an account the
// projection does not know (yet).
func (q *Queries) Summary(ctx context.Context, id string) (s Summary, found bool, err error) {
	v, err := q.views.Active(ctx, q.summary)
	if err != nil {
		return Summary{}, false, err
	}
	return readSummary(ctx, q.rdb, v, id)
}

func readSummary(ctx context.Context, rdb redis.Cmdable, v readmodels.View, id string) (Summary, bool, error) {
	f, err := rdb.HGetAll(ctx, v.Prefix(id)+"summary:"+id).Result()
	if err != nil {
		return Summary{}, false, fmt.Errorf("read summary of %s: %w", id, err)
	}
	if len(f) == 0 {
		return Summary{}, false, nil
	}
	s := Summary{ID: f["id"], Owner: f["owner"], Principal: f["principal"], Currency: f["currency"], Status: f["status"]}
	var errs [4]error
	s.Balance, errs[0] = strconv.ParseInt(f["balance"], 10, 64)
	s.Version, errs[1] = strconv.ParseInt(f["version"], 10, 64)
	s.OpenedAt, errs[2] = time.Parse(time.RFC3339Nano, f["openedAt"])
	s.UpdatedAt, errs[3] = time.Parse(time.RFC3339Nano, f["updatedAt"])
	for _, e := range errs {
		if e != nil {
			return Summary{}, false, fmt.Errorf("summary of %s is malformed: %w", id, e)
		}
	}
	return s, true, nil
}

// HistoryPage is a page of an account's history, newest first.
type HistoryPage struct {
	// Version is the account's last version the history applied, read with
	// the page; 0 when it knows no event of the account.
	Version int64 `json:"version"`
	// Owner is the principal of the account's first event: whose history
	// it is. Empty for an account the history does not know, or one
	// projected before owners were kept.
	Owner   string  `json:"owner,omitempty"`
	Entries []Entry `json:"entries"`
	// Next is the cursor of the following (older) page; 0 when there is none.
	Next int64 `json:"next,omitempty"`
}

// History returns up to limit entries older than version before (0: from
// the newest), with the account's version and owner, in one round trip.
// Versions never change, so a cursor stays valid while new events arrive.
func (q *Queries) History(ctx context.Context, id string, before int64, limit int) (HistoryPage, error) {
	v, err := q.views.Active(ctx, q.history)
	if err != nil {
		return HistoryPage{}, err
	}
	max := "+inf"
	if before > 0 {
		max = "(" + strconv.FormatInt(before, 10)
	}
	// Every key of one account shares its partition's hash tag: one slot.
	pipe := q.rdb.Pipeline()
	version := pipe.HGet(ctx, v.Layout.Versions(v.Generation, readmodels.PartitionOf(id, v.Partitions)), readmodels.StreamKey(account.AggregateType, id))
	owner := pipe.HGet(ctx, v.Prefix(id)+"owner", id)
	var members *redis.StringSliceCmd
	if limit > 0 {
		members = pipe.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: v.Prefix(id) + "history:" + id, Start: max, Stop: "-inf",
			ByScore: true, Rev: true, Count: int64(limit) + 1,
		})
	}
	_, _ = pipe.Exec(ctx) // each command's error is checked below
	if err := owner.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return HistoryPage{}, fmt.Errorf("read owner of %s: %w", id, err)
	}
	if members != nil && members.Err() != nil {
		return HistoryPage{}, fmt.Errorf("read history of %s: %w", id, members.Err())
	}
	page := HistoryPage{Owner: owner.Val(), Entries: []Entry{}}
	if page.Version, err = parseVersion(version); err != nil {
		return HistoryPage{}, fmt.Errorf("read version of %s: %w", id, err)
	}
	if members == nil {
		return page, nil
	}
	page.Entries = make([]Entry, 0, min(len(members.Val()), limit))
	for i, m := range members.Val() {
		if i == limit {
			page.Next = page.Entries[limit-1].Version
			break
		}
		var e Entry
		if err := json.Unmarshal([]byte(m), &e); err != nil {
			return HistoryPage{}, fmt.Errorf("history of %s holds a malformed entry: %w", id, err)
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

// HistoryHead returns the account's last version the history applied and
// its owner (see HistoryPage), in one round trip, without entries.
func (q *Queries) HistoryHead(ctx context.Context, id string) (version int64, owner string, err error) {
	page, err := q.History(ctx, id, 0, 0)
	return page.Version, page.Owner, err
}

// parseVersion reads a version from the versions hash; 0 when absent.
func parseVersion(c *redis.StringCmd) (int64, error) {
	s, err := c.Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("version %q: %w", s, err)
	}
	return n, nil
}

// Ranked is an account id with the score it is ranked by.
type Ranked struct {
	ID    string `json:"id"`
	Score int64  `json:"score"`
}

// DirectoryPage is a page of the account directory.
type DirectoryPage struct {
	Items []Ranked
	// Next is the position after the last item, for the following page;
	// nil when there is none.
	Next *Ranked
}

// TopByBalance returns the n accounts in currency with the largest
// balances, largest first; ties by id, descending. Closed accounts are not
// ranked; n below one returns none.
func (q *Queries) TopByBalance(ctx context.Context, currency string, n int) ([]Ranked, error) {
	page, err := q.ByBalancePage(ctx, currency, nil, n)
	return page.Items, err
}

// ByStatus returns up to limit accounts with status, oldest opened first,
// scored by their opening time in Unix milliseconds; ties by id. A limit
// below one returns none.
func (q *Queries) ByStatus(ctx context.Context, status string, limit int) ([]Ranked, error) {
	page, err := q.ByStatusPage(ctx, status, nil, limit)
	return page.Items, err
}

// ByBalancePage is TopByBalance paged: up to limit accounts ranked after
// the position after (nil: from the top). An account whose rank does not
// change between pages is returned exactly once.
func (q *Queries) ByBalancePage(ctx context.Context, currency string, after *Ranked, limit int) (DirectoryPage, error) {
	return q.directoryPage(ctx, "balance:"+currency, true, after, limit)
}

// ByStatusPage is ByStatus paged: up to limit accounts after the position
// after (nil: from the oldest).
func (q *Queries) ByStatusPage(ctx context.Context, status string, after *Ranked, limit int) (DirectoryPage, error) {
	return q.directoryPage(ctx, "status:"+status, false, after, limit)
}

// pageScript returns up to ARGV[5] members of the sorted set KEYS[1], with
// their scores, that come after (ARGV[3] score, ARGV[4] member) in
// ascending (ARGV[1] "asc") or descending (score, member) order; from the
// start when ARGV[2] is "0". Members of one score are ordered byte-wise, as
// Redis orders them, so the start is found by a binary search among the
// members sharing the cursor's score: O(log n) whatever the ties.
const pageScript = `
local key, asc, limit = KEYS[1], ARGV[1] == 'asc', tonumber(ARGV[5])
local function less(a, b)
  local n = math.min(#a, #b)
  for j = 1, n do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local start = 0
if ARGV[2] == '1' then
  local s, m = ARGV[3], ARGV[4]
  local lo, hi
  if asc then
    lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)
    hi = redis.call('ZCOUNT', key, '-inf', s)
  else
    lo = redis.call('ZCOUNT', key, '(' .. s, '+inf')
    hi = redis.call('ZCOUNT', key, s, '+inf')
  end
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local x
    if asc then x = redis.call('ZRANGE', key, mid, mid)[1] else x = redis.call('ZREVRANGE', key, mid, mid)[1] end
    if (asc and not less(m, x)) or (not asc and not less(x, m)) then lo = mid + 1 else hi = mid end
  end
  start = lo
end
if asc then
  return redis.call('ZRANGE', key, start, start + limit - 1, 'WITHSCORES')
end
return redis.call('ZREVRANGE', key, start, start + limit - 1, 'WITHSCORES')
`

// directoryPage reads one page of the sorted sets named set in every
// partition (one script each, in one pipeline) and merges them.
func (q *Queries) directoryPage(ctx context.Context, set string, desc bool, after *Ranked, limit int) (DirectoryPage, error) {
	if limit < 1 {
		return DirectoryPage{Items: []Ranked{}}, nil
	}
	v, err := q.views.Active(ctx, q.directory)
	if err != nil {
		return DirectoryPage{}, err
	}
	args := []any{"asc", "0", "0", "", limit + 1}
	if desc {
		args[0] = "desc"
	}
	if after != nil {
		args[1], args[2], args[3] = "1", strconv.FormatInt(after.Score, 10), after.ID
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.Cmd, v.Partitions)
	for p := range v.Partitions {
		cmds[p] = pipe.EvalRO(ctx, pageScript, []string{v.Layout.Prefix(v.Generation, p) + set}, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return DirectoryPage{}, fmt.Errorf("read %s: %w", v.Layout.Name(), err)
	}
	var all []Ranked
	for _, c := range cmds {
		flat, err := c.StringSlice()
		if err != nil || len(flat)%2 != 0 {
			return DirectoryPage{}, fmt.Errorf("read %s: unexpected reply %v (%v)", v.Layout.Name(), c.Val(), err)
		}
		for i := 0; i < len(flat); i += 2 {
			score, err := strconv.ParseFloat(flat[i+1], 64)
			if err != nil {
				return DirectoryPage{}, fmt.Errorf("read %s: score %q of %s: %w", v.Layout.Name(), flat[i+1], flat[i], err)
			}
			all = append(all, Ranked{ID: flat[i], Score: scoreToInt(score)})
		}
	}
	slices.SortFunc(all, func(a, b Ranked) int {
		if desc {
			a, b = b, a
		}
		return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(a.ID, b.ID))
	})
	page := DirectoryPage{Items: all[:min(limit, len(all))]}
	if len(all) > limit {
		last := page.Items[limit-1]
		page.Next = &last
	}
	return page, nil
}

// scoreToInt converts a sorted-set score, which Redis keeps as a float64,
// back to the integer it was written as, clamped to the int64 range (a
// float64 at 2^63 would otherwise wrap to the smallest int64 and break the
// order and the cursor). Scores are exact up to 2^53.
func scoreToInt(f float64) int64 {
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}
