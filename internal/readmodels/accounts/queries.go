package accounts

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/readmodels"
)

// Queries read the account read models through their active generations.
type Queries struct {
	rdb                         redis.UniversalClient
	summary, history, directory readmodels.Layout
}

// NewQueries reads the projections kept under root.
func NewQueries(rdb redis.UniversalClient, root string) *Queries {
	return &Queries{
		rdb:       rdb,
		summary:   readmodels.NewLayout(root, SummaryName),
		history:   readmodels.NewLayout(root, HistoryName),
		directory: readmodels.NewLayout(root, DirectoryName),
	}
}

// Summary returns an account's summary; found is false for an account the
// projection does not know (yet).
func (q *Queries) Summary(ctx context.Context, id string) (s Summary, found bool, err error) {
	v, err := readmodels.ActiveView(ctx, q.rdb, q.summary)
	if err != nil {
		return Summary{}, false, err
	}
	return readSummary(ctx, q.rdb, v, id)
}

func readSummary(ctx context.Context, rdb redis.UniversalClient, v readmodels.View, id string) (Summary, bool, error) {
	f, err := rdb.HGetAll(ctx, v.Prefix(id)+"summary:"+id).Result()
	if err != nil {
		return Summary{}, false, fmt.Errorf("read summary of %s: %w", id, err)
	}
	if len(f) == 0 {
		return Summary{}, false, nil
	}
	s := Summary{ID: f["id"], Owner: f["owner"], Currency: f["currency"], Status: f["status"]}
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
	Entries []Entry `json:"entries"`
	// Next is the cursor of the following (older) page; 0 when there is none.
	Next int64 `json:"next,omitempty"`
}

// History returns up to limit entries older than version before (0: from
// the newest). Versions never change, so a cursor stays valid while new
// events arrive.
func (q *Queries) History(ctx context.Context, id string, before int64, limit int) (HistoryPage, error) {
	if limit < 1 {
		return HistoryPage{Entries: []Entry{}}, nil
	}
	v, err := readmodels.ActiveView(ctx, q.rdb, q.history)
	if err != nil {
		return HistoryPage{}, err
	}
	max := "+inf"
	if before > 0 {
		max = "(" + strconv.FormatInt(before, 10)
	}
	members, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: v.Prefix(id) + "history:" + id, Start: max, Stop: "-inf",
		ByScore: true, Rev: true, Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return HistoryPage{}, fmt.Errorf("read history of %s: %w", id, err)
	}
	page := HistoryPage{Entries: make([]Entry, 0, min(len(members), limit))}
	for i, m := range members {
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

// Ranked is an account id with the score it is ranked by.
type Ranked struct {
	ID    string `json:"id"`
	Score int64  `json:"score"`
}

// TopByBalance returns the n accounts in currency with the largest
// balances, largest first; ties by id, descending, as Redis orders them
// in each partition, so the merge of per-partition tops is exact. Closed
// accounts are not ranked;
// n below one returns none.
func (q *Queries) TopByBalance(ctx context.Context, currency string, n int) ([]Ranked, error) {
	if n < 1 {
		return nil, nil
	}
	v, err := readmodels.ActiveView(ctx, q.rdb, q.directory)
	if err != nil {
		return nil, err
	}
	all, err := q.gather(ctx, v, func(pipe redis.Pipeliner, prefix string) *redis.ZSliceCmd {
		return pipe.ZRevRangeWithScores(ctx, prefix+"balance:"+currency, 0, int64(n)-1)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b Ranked) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(b.ID, a.ID))
	})
	return all[:min(n, len(all))], nil
}

// ByStatus returns up to limit accounts with status, oldest opened first,
// scored by their opening time in Unix milliseconds. A limit below one
// returns none.
func (q *Queries) ByStatus(ctx context.Context, status string, limit int) ([]Ranked, error) {
	if limit < 1 {
		return nil, nil
	}
	v, err := readmodels.ActiveView(ctx, q.rdb, q.directory)
	if err != nil {
		return nil, err
	}
	all, err := q.gather(ctx, v, func(pipe redis.Pipeliner, prefix string) *redis.ZSliceCmd {
		return pipe.ZRangeWithScores(ctx, prefix+"status:"+status, 0, int64(limit)-1)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b Ranked) int {
		return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(a.ID, b.ID))
	})
	return all[:min(limit, len(all))], nil
}

// gather runs one sorted-set read per partition in one pipeline and merges
// the results.
func (q *Queries) gather(ctx context.Context, v readmodels.View, read func(redis.Pipeliner, string) *redis.ZSliceCmd) ([]Ranked, error) {
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, v.Partitions)
	for p := range v.Partitions {
		cmds[p] = read(pipe, v.Layout.Prefix(v.Generation, p))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read %s: %w", v.Layout.Name(), err)
	}
	var all []Ranked
	for _, c := range cmds {
		for _, z := range c.Val() {
			all = append(all, Ranked{ID: z.Member.(string), Score: int64(z.Score)})
		}
	}
	return all, nil
}
