package projector_test

import (
	"context"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/readmodels/accounts"
)

// Acceptance 1: 20,000 events over 1,000 accounts; every summary equals the
// fold of the account's events, every history holds each event once.
func TestProjectsEveryAccountAsTheFoldOfItsEvents(t *testing.T) {
	e := newEnv(t)
	h := generate(1000, 20_000, 1)
	e.produce(h.events)
	e.run(e.projector(accounts.SummaryProjection{}, nil))
	e.run(e.projector(accounts.HistoryProjection{}, nil))
	q := accounts.NewQueries(e.rdb, e.prefix)
	waitFor(t, 60*time.Second, "summaries caught up", e.caughtUp(q, h))
	e.checkSummaries(q, h)
	waitFor(t, 60*time.Second, "histories caught up", func() (bool, error) {
		for id, evs := range h.byID {
			page, err := q.History(context.Background(), id, 0, 1)
			if err != nil || len(page.Entries) == 0 || page.Entries[0].Version != int64(len(evs)) {
				return false, nil
			}
		}
		return true, nil
	})
	e.checkHistories(q, h)
}
