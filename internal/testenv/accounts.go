package testenv

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
)

// AccountHistory is a valid event history of many bank accounts, as the
// writer would store it: versions 1, 2, 3… per account, global positions in
// order, events of different accounts interleaved.
type AccountHistory struct {
	Events []log.Event
	ByID   map[string][]log.Event
}

// GenerateAccounts makes count events over n accounts (ids depend on seed):
// each account is opened, activated, then takes deposits and withdrawals
// within its balance, and is sometimes closed at zero.
func GenerateAccounts(n, count int, seed uint64) *AccountHistory {
	rng := rand.New(rand.NewPCG(seed, 1))
	h := &AccountHistory{ByID: make(map[string][]log.Event)}
	states := make([]account.State, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("acc-%d-%05d", seed, i)
		states[i] = account.Initial(ids[i])
	}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	emit := func(i int, ev account.Event) {
		id := ids[i]
		payload, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		e := log.Event{
			ID: uuid.Must(uuid.NewV7()), AggregateType: account.AggregateType, AggregateID: id,
			Version: int64(len(h.ByID[id]) + 1), Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(),
			Payload: payload, RecordedAt: base.Add(time.Duration(len(h.Events)) * time.Millisecond),
			GlobalPosition: int64(len(h.Events) + 1),
			Metadata: log.Metadata{
				CorrelationID: fmt.Sprintf("corr-%s-%d", id, len(h.ByID[id])/3),
				CausationID:   uuid.NewString(), Principal: "test",
			},
		}
		h.Events = append(h.Events, e)
		h.ByID[id] = append(h.ByID[id], e)
		states[i] = account.Evolve(states[i], ev)
	}
	for len(h.Events) < count {
		i := rng.IntN(n)
		s := states[i]
		switch {
		case s.Status == account.StatusNone:
			emit(i, account.AccountOpened{Owner: "owner " + ids[i], Currency: "EUR"})
		case s.Status == account.StatusPending:
			emit(i, account.AccountActivated{})
		case s.Status == account.StatusClosed:
			continue
		case s.Balance > 0 && rng.IntN(3) == 0:
			emit(i, account.FundsWithdrawn{Amount: 1 + rng.Int64N(s.Balance), Currency: "EUR", Reason: "rent"})
		case s.Balance == 0 && rng.IntN(40) == 0:
			emit(i, account.AccountClosed{Reason: "moving"})
		default:
			emit(i, account.FundsDeposited{Amount: 1 + rng.Int64N(100_000), Currency: "EUR", Source: "salary"})
		}
	}
	return h
}

// FoldAccount is the state an account's events give.
func FoldAccount(t testing.TB, events []log.Event) account.State {
	t.Helper()
	domain := make([]account.Event, 0, len(events))
	for _, e := range events {
		ev, err := account.DecodeEvent(e.Type, e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		domain = append(domain, ev)
	}
	return account.Fold(events[0].AggregateID, domain)
}
