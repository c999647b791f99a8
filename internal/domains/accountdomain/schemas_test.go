package accountdomain_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/schemas"
)

// TestSchemasAcceptDomainEvents checks that what the account decider emits,
// encoded as the command handler encodes it, matches the schema of the
// version the event claims.
func TestSchemasAcceptDomainEvents(t *testing.T) {
	s, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	state := account.Initial("acc-1")
	commands := []account.Command{
		account.OpenAccount{ID: "acc-1", Owner: strings.Repeat("ü", 200), Currency: "EUR", InitialDeposit: 10_000},
		account.ActivateAccount{},
		account.DepositFunds{Amount: account.MaxDeposit("EUR"), Currency: "EUR", Source: strings.Repeat("s", 200)},
		account.WithdrawFunds{Amount: account.MaxDeposit("EUR") + 10_000, Currency: "EUR", Reason: "everything"},
		account.CloseAccount{},
	}
	seen := map[string]bool{}
	for _, c := range commands {
		events, err := account.Decide(state, c)
		if err != nil {
			t.Fatalf("Decide(%s): %v", account.CommandName(c), err)
		}
		for _, e := range events {
			payload, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("json.Marshal(%#v): %v", e, err)
			}
			if err := s.Validate(account.AggregateType, e.EventType(), e.SchemaVersion(), payload); err != nil {
				t.Errorf("%s v%d %s: %v", e.EventType(), e.SchemaVersion(), payload, err)
			}
			seen[e.EventType()] = true
			state = account.Evolve(state, e)
		}
	}
	if len(seen) != 5 {
		t.Errorf("checked event types %v, want all five", seen)
	}
}
