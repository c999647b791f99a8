package account_test

import (
	"github.com/tributary-es/tributary/internal/decider"

	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domain/account"
)

type (
	Event   = account.Event
	Command = account.Command
)

const testID = "acc-1"

// Histories that the table tests start from.
var (
	pending = []Event{account.AccountOpened{Owner: "Ada Lovelace", Currency: "EUR"}}
	active  = append(clone(pending), account.AccountActivated{})
	closed  = append(clone(active), account.AccountClosed{Reason: "moving abroad"})
	pendJPY = []Event{account.AccountOpened{Owner: "Hokusai", Currency: "JPY"}}
	actJPY  = append(clone(pendJPY), account.AccountActivated{})
)

func clone(events []Event) []Event { return append([]Event(nil), events...) }

// funded is an active EUR account holding balance cents.
func funded(balance int64) []Event {
	return append(clone(active), account.FundsDeposited{Amount: balance, Currency: "EUR", Source: "salary"})
}

// otherCommand is a Command that Decide does not know: it borrows the
// unexported marker method by embedding a known command.
type otherCommand struct{ account.CloseAccount }

func TestDecide(t *testing.T) {
	maxEUR := account.MaxDeposit("EUR")
	maxJPY := account.MaxDeposit("JPY")
	tests := []struct {
		name  string
		given []Event
		when  Command
		then  []Event
		err   error  // kind the error must wrap; nil when the command succeeds
		code  string // RuleError.Code when err is set
	}{
		// RefundFunds
		{
			name:  "a refund reaches a closed account, above the deposit limit",
			given: closed, when: account.RefundFunds{Amount: maxEUR * 2, Currency: "EUR", Source: "refund:transfer:t1"},
			then: []Event{account.FundsDeposited{Amount: maxEUR * 2, Currency: "EUR", Source: "refund:transfer:t1"}},
		},
		{
			name:  "a refund reaches a pending account",
			given: pending, when: account.RefundFunds{Amount: 5, Currency: "EUR", Source: "refund:transfer:t1"},
			then: []Event{account.FundsDeposited{Amount: 5, Currency: "EUR", Source: "refund:transfer:t1"}},
		},
		{
			name:  "a refund in another currency is refused",
			given: active, when: account.RefundFunds{Amount: 5, Currency: "USD", Source: "refund:transfer:t1"},
			err: decider.ErrRuleViolated, code: "currency-mismatch",
		},
		{
			name:  "a refund of nothing is invalid",
			given: active, when: account.RefundFunds{Amount: 0, Currency: "EUR", Source: "refund:transfer:t1"},
			err: decider.ErrInvalidCommand, code: "invalid-amount",
		},
		{
			name: "a refund to an account never opened is refused",
			when: account.RefundFunds{Amount: 5, Currency: "EUR", Source: "refund:transfer:t1"},
			err:  decider.ErrNotFound, code: "account-not-found",
		},
		// OpenAccount
		{
			name: "open without initial deposit emits only AccountOpened",
			when: account.OpenAccount{ID: testID, Owner: "Ada Lovelace", Currency: "EUR"},
			then: []Event{account.AccountOpened{Owner: "Ada Lovelace", Currency: "EUR"}},
		},
		{
			name: "open with initial deposit emits AccountOpened and FundsDeposited",
			when: account.OpenAccount{ID: testID, Owner: "Ada Lovelace", Currency: "EUR", InitialDeposit: 5_000},
			then: []Event{
				account.AccountOpened{Owner: "Ada Lovelace", Currency: "EUR"},
				account.FundsDeposited{Amount: 5_000, Currency: "EUR", Source: "initial-deposit"},
			},
		},
		{
			name: "open with initial deposit exactly at the limit",
			when: account.OpenAccount{ID: testID, Owner: "Ada", Currency: "EUR", InitialDeposit: maxEUR},
			then: []Event{
				account.AccountOpened{Owner: "Ada", Currency: "EUR"},
				account.FundsDeposited{Amount: maxEUR, Currency: "EUR", Source: "initial-deposit"},
			},
		},
		{
			name: "open with initial deposit above the limit",
			when: account.OpenAccount{ID: testID, Owner: "Ada", Currency: "EUR", InitialDeposit: maxEUR + 1},
			err:  decider.ErrRuleViolated, code: "deposit-limit-exceeded",
		},
		{
			name: "open in JPY with initial deposit above the limit for exponent 0",
			when: account.OpenAccount{ID: testID, Owner: "Hokusai", Currency: "JPY", InitialDeposit: maxJPY + 1},
			err:  decider.ErrRuleViolated, code: "deposit-limit-exceeded",
		},
		{
			name: "open with negative initial deposit",
			when: account.OpenAccount{ID: testID, Owner: "Ada", Currency: "EUR", InitialDeposit: -1},
			err:  decider.ErrInvalidCommand, code: "invalid-amount",
		},
		{
			name: "open without owner",
			when: account.OpenAccount{ID: testID, Currency: "EUR"},
			err:  decider.ErrInvalidCommand, code: "missing-owner",
		},
		{
			name: "open with blank owner",
			when: account.OpenAccount{ID: testID, Owner: " \t\n", Currency: "EUR"},
			err:  decider.ErrInvalidCommand, code: "missing-owner",
		},
		{
			name: "open with owner of 200 multi-byte runes",
			when: account.OpenAccount{ID: testID, Owner: strings.Repeat("é", 200), Currency: "EUR"},
			then: []Event{account.AccountOpened{Owner: strings.Repeat("é", 200), Currency: "EUR"}},
		},
		{
			name: "open with owner of 201 runes",
			when: account.OpenAccount{ID: testID, Owner: strings.Repeat("a", 201), Currency: "EUR"},
			err:  decider.ErrInvalidCommand, code: "invalid-owner",
		},
		{
			name: "open with owner that is not valid UTF-8",
			when: account.OpenAccount{ID: testID, Owner: "Ada \xff", Currency: "EUR"},
			err:  decider.ErrInvalidCommand, code: "invalid-owner",
		},
		{
			name: "open in unsupported currency",
			when: account.OpenAccount{ID: testID, Owner: "Ada", Currency: "XYZ"},
			err:  decider.ErrInvalidCommand, code: "unsupported-currency",
		},
		{
			name: "open in lower-case currency",
			when: account.OpenAccount{ID: testID, Owner: "Ada", Currency: "eur"},
			err:  decider.ErrInvalidCommand, code: "unsupported-currency",
		},
		{
			name: "open without currency",
			when: account.OpenAccount{ID: testID, Owner: "Ada"},
			err:  decider.ErrInvalidCommand, code: "unsupported-currency",
		},
		{
			name:  "open a pending account again",
			given: pending,
			when:  account.OpenAccount{ID: testID, Owner: "Ada", Currency: "EUR"},
			err:   decider.ErrAlreadyExists, code: "already-open",
		},
		{
			name:  "open an active account again",
			given: active,
			when:  account.OpenAccount{ID: testID, Owner: "Ada", Currency: "EUR"},
			err:   decider.ErrAlreadyExists, code: "already-open",
		},
		{
			name:  "open a closed account again",
			given: closed,
			when:  account.OpenAccount{ID: testID, Owner: "Ada", Currency: "EUR"},
			err:   decider.ErrAlreadyExists, code: "already-open",
		},

		// Commands on an account that was never opened
		{
			name: "activate a never-opened account",
			when: account.ActivateAccount{},
			err:  decider.ErrNotFound, code: "account-not-found",
		},
		{
			name: "deposit to a never-opened account",
			when: account.DepositFunds{Amount: 100, Currency: "EUR", Source: "salary"},
			err:  decider.ErrNotFound, code: "account-not-found",
		},
		{
			name: "withdraw from a never-opened account",
			when: account.WithdrawFunds{Amount: 100, Currency: "EUR", Reason: "rent"},
			err:  decider.ErrNotFound, code: "account-not-found",
		},
		{
			name: "close a never-opened account",
			when: account.CloseAccount{},
			err:  decider.ErrNotFound, code: "account-not-found",
		},

		// ActivateAccount
		{
			name:  "activate a pending account",
			given: pending,
			when:  account.ActivateAccount{},
			then:  []Event{account.AccountActivated{}},
		},
		{
			name:  "activate an active account",
			given: active,
			when:  account.ActivateAccount{},
			err:   decider.ErrRuleViolated, code: "not-pending",
		},
		{
			name:  "activate a closed account",
			given: closed,
			when:  account.ActivateAccount{},
			err:   decider.ErrRuleViolated, code: "not-pending",
		},

		// DepositFunds
		{
			name:  "deposit to an active account",
			given: active,
			when:  account.DepositFunds{Amount: 1_250, Currency: "EUR", Source: "salary"},
			then:  []Event{account.FundsDeposited{Amount: 1_250, Currency: "EUR", Source: "salary"}},
		},
		{
			name:  "deposit to a pending account",
			given: pending,
			when:  account.DepositFunds{Amount: 1_250, Currency: "EUR", Source: "salary"},
			err:   decider.ErrRuleViolated, code: "account-not-active",
		},
		{
			name:  "deposit to a closed account",
			given: closed,
			when:  account.DepositFunds{Amount: 1_250, Currency: "EUR", Source: "salary"},
			err:   decider.ErrRuleViolated, code: "account-not-active",
		},
		{
			name:  "deposit of zero",
			given: active,
			when:  account.DepositFunds{Amount: 0, Currency: "EUR", Source: "salary"},
			err:   decider.ErrInvalidCommand, code: "invalid-amount",
		},
		{
			name:  "deposit of a negative amount",
			given: active,
			when:  account.DepositFunds{Amount: -5, Currency: "EUR", Source: "salary"},
			err:   decider.ErrInvalidCommand, code: "invalid-amount",
		},
		{
			name:  "deposit in another currency",
			given: active,
			when:  account.DepositFunds{Amount: 100, Currency: "USD", Source: "salary"},
			err:   decider.ErrRuleViolated, code: "currency-mismatch",
		},
		{
			name:  "deposit exactly at the limit",
			given: active,
			when:  account.DepositFunds{Amount: maxEUR, Currency: "EUR", Source: "lottery"},
			then:  []Event{account.FundsDeposited{Amount: maxEUR, Currency: "EUR", Source: "lottery"}},
		},
		{
			name:  "deposit one minor unit above the limit",
			given: active,
			when:  account.DepositFunds{Amount: maxEUR + 1, Currency: "EUR", Source: "lottery"},
			err:   decider.ErrRuleViolated, code: "deposit-limit-exceeded",
		},
		{
			name:  "JPY deposit exactly at the limit for exponent 0",
			given: actJPY,
			when:  account.DepositFunds{Amount: 1_000_000, Currency: "JPY", Source: "bonus"},
			then:  []Event{account.FundsDeposited{Amount: 1_000_000, Currency: "JPY", Source: "bonus"}},
		},
		{
			name:  "JPY deposit one yen above the limit",
			given: actJPY,
			when:  account.DepositFunds{Amount: 1_000_001, Currency: "JPY", Source: "bonus"},
			err:   decider.ErrRuleViolated, code: "deposit-limit-exceeded",
		},
		{
			name:  "deposit without source",
			given: active,
			when:  account.DepositFunds{Amount: 100, Currency: "EUR"},
			err:   decider.ErrInvalidCommand, code: "missing-source",
		},
		{
			name:  "deposit with blank source",
			given: active,
			when:  account.DepositFunds{Amount: 100, Currency: "EUR", Source: "   "},
			err:   decider.ErrInvalidCommand, code: "missing-source",
		},
		{
			name:  "deposit with source of 201 runes",
			given: active,
			when:  account.DepositFunds{Amount: 100, Currency: "EUR", Source: strings.Repeat("s", 201)},
			err:   decider.ErrInvalidCommand, code: "invalid-source",
		},

		// WithdrawFunds
		{
			name:  "withdraw part of the balance",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 2_000, Currency: "EUR", Reason: "rent"},
			then:  []Event{account.FundsWithdrawn{Amount: 2_000, Currency: "EUR", Reason: "rent"}},
		},
		{
			name:  "withdraw exactly the balance",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 5_000, Currency: "EUR", Reason: "rent"},
			then:  []Event{account.FundsWithdrawn{Amount: 5_000, Currency: "EUR", Reason: "rent"}},
		},
		{
			name:  "withdraw one minor unit more than the balance",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 5_001, Currency: "EUR", Reason: "rent"},
			err:   decider.ErrRuleViolated, code: "insufficient-funds",
		},
		{
			name:  "withdraw from an empty active account",
			given: active,
			when:  account.WithdrawFunds{Amount: 1, Currency: "EUR", Reason: "rent"},
			err:   decider.ErrRuleViolated, code: "insufficient-funds",
		},
		{
			name: "withdraw from a pending account that holds an initial deposit",
			given: append(clone(pending),
				account.FundsDeposited{Amount: 5_000, Currency: "EUR", Source: "initial-deposit"}),
			when: account.WithdrawFunds{Amount: 100, Currency: "EUR", Reason: "rent"},
			err:  decider.ErrRuleViolated, code: "account-not-active",
		},
		{
			name:  "withdraw from a closed account",
			given: closed,
			when:  account.WithdrawFunds{Amount: 100, Currency: "EUR", Reason: "rent"},
			err:   decider.ErrRuleViolated, code: "account-not-active",
		},
		{
			name:  "withdraw without reason",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 100, Currency: "EUR"},
			err:   decider.ErrInvalidCommand, code: "missing-reason",
		},
		{
			name:  "withdraw with reason that is not valid UTF-8",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 100, Currency: "EUR", Reason: "\xc3\x28"},
			err:   decider.ErrInvalidCommand, code: "invalid-reason",
		},
		{
			name:  "withdraw zero",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 0, Currency: "EUR", Reason: "rent"},
			err:   decider.ErrInvalidCommand, code: "invalid-amount",
		},
		{
			name:  "withdraw in another currency",
			given: funded(5_000),
			when:  account.WithdrawFunds{Amount: 100, Currency: "GBP", Reason: "rent"},
			err:   decider.ErrRuleViolated, code: "currency-mismatch",
		},

		// CloseAccount
		{
			name:  "close an active account with zero balance",
			given: active,
			when:  account.CloseAccount{Reason: "moving abroad"},
			then:  []Event{account.AccountClosed{Reason: "moving abroad"}},
		},
		{
			name:  "close without a reason",
			given: active,
			when:  account.CloseAccount{},
			then:  []Event{account.AccountClosed{}},
		},
		{
			name: "close after withdrawing everything",
			given: append(funded(5_000),
				account.FundsWithdrawn{Amount: 5_000, Currency: "EUR", Reason: "rent"}),
			when: account.CloseAccount{},
			then: []Event{account.AccountClosed{}},
		},
		{
			name:  "close a pending account with zero balance",
			given: pending,
			when:  account.CloseAccount{Reason: "changed my mind"},
			then:  []Event{account.AccountClosed{Reason: "changed my mind"}},
		},
		{
			name:  "close an account that holds money",
			given: funded(1),
			when:  account.CloseAccount{},
			err:   decider.ErrRuleViolated, code: "balance-not-zero",
		},
		{
			name: "close a pending account that holds an initial deposit",
			given: append(clone(pending),
				account.FundsDeposited{Amount: 5_000, Currency: "EUR", Source: "initial-deposit"}),
			when: account.CloseAccount{},
			err:  decider.ErrRuleViolated, code: "balance-not-zero",
		},
		{
			name:  "close an account that is already closed",
			given: closed,
			when:  account.CloseAccount{},
			err:   decider.ErrRuleViolated, code: "already-closed",
		},
		{
			name:  "close with reason of 201 runes",
			given: active,
			when:  account.CloseAccount{Reason: strings.Repeat("r", 201)},
			err:   decider.ErrInvalidCommand, code: "invalid-reason",
		},

		// Anything else
		{
			name:  "unknown command",
			given: active,
			when:  otherCommand{},
			err:   decider.ErrInvalidCommand, code: "unknown-command",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := account.Fold(testID, tt.given)
			got, err := account.Decide(state, tt.when)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Decide(%s) = error %v, want events %v", account.CommandName(tt.when), err, tt.then)
				}
				if !reflect.DeepEqual(got, tt.then) {
					t.Fatalf("Decide(%s) = %#v, want %#v", account.CommandName(tt.when), got, tt.then)
				}
				return
			}
			if got != nil {
				t.Errorf("Decide(%s) returned events %#v with an error", account.CommandName(tt.when), got)
			}
			checkRuleError(t, err, tt.err, tt.code)
		})
	}
}

func checkRuleError(t *testing.T, err, kind error, code string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want one wrapping %v", err, kind)
	}
	var re *decider.RuleError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *decider.RuleError", err, err)
	}
	if re.Code != code {
		t.Errorf("RuleError.Code = %q, want %q (detail: %s)", re.Code, code, re.Detail)
	}
	if re.Detail == "" || err.Error() != re.Detail {
		t.Errorf("Error() = %q, want the non-empty Detail %q", err.Error(), re.Detail)
	}
}

func TestMaxDeposit(t *testing.T) {
	tests := []struct {
		currency string
		want     int64
	}{
		{"EUR", 100_000_000},
		{"USD", 100_000_000},
		{"JPY", 1_000_000},
		{"KRW", 1_000_000},
	}
	for _, tt := range tests {
		if got := account.MaxDeposit(tt.currency); got != tt.want {
			t.Errorf("MaxDeposit(%q) = %d, want %d", tt.currency, got, tt.want)
		}
	}
}

func TestCommandName(t *testing.T) {
	tests := []struct {
		cmd  Command
		want string
	}{
		{account.OpenAccount{}, "OpenAccount"},
		{account.ActivateAccount{}, "ActivateAccount"},
		{account.DepositFunds{}, "DepositFunds"},
		{account.WithdrawFunds{}, "WithdrawFunds"},
		{account.CloseAccount{}, "CloseAccount"},
	}
	for _, tt := range tests {
		if got := account.CommandName(tt.cmd); got != tt.want {
			t.Errorf("CommandName(%T) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestEvolve(t *testing.T) {
	tests := []struct {
		name  string
		given []Event
		want  account.State
	}{
		{
			name: "no events",
			want: account.State{ID: testID},
		},
		{
			name:  "opened",
			given: pending,
			want:  account.State{ID: testID, Owner: "Ada Lovelace", Currency: "EUR", Status: account.StatusPending},
		},
		{
			name: "opened with initial deposit stays pending",
			given: append(clone(pending),
				account.FundsDeposited{Amount: 700, Currency: "EUR", Source: "initial-deposit"}),
			want: account.State{ID: testID, Owner: "Ada Lovelace", Currency: "EUR", Balance: 700, Status: account.StatusPending},
		},
		{
			name:  "activated",
			given: active,
			want:  account.State{ID: testID, Owner: "Ada Lovelace", Currency: "EUR", Status: account.StatusActive},
		},
		{
			name: "deposits and withdrawals add up",
			given: append(clone(active),
				account.FundsDeposited{Amount: 10_000, Currency: "EUR", Source: "salary"},
				account.FundsWithdrawn{Amount: 2_500, Currency: "EUR", Reason: "rent"},
				account.FundsDeposited{Amount: 1, Currency: "EUR", Source: "interest"},
				account.FundsWithdrawn{Amount: 7_000, Currency: "EUR", Reason: "car"},
			),
			want: account.State{ID: testID, Owner: "Ada Lovelace", Currency: "EUR", Balance: 501, Status: account.StatusActive},
		},
		{
			name: "withdrawn to zero and closed",
			given: append(funded(4_200),
				account.FundsWithdrawn{Amount: 4_200, Currency: "EUR", Reason: "everything"},
				account.AccountClosed{Reason: "done"},
			),
			want: account.State{ID: testID, Owner: "Ada Lovelace", Currency: "EUR", Status: account.StatusClosed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := account.Fold(testID, tt.given); got != tt.want {
				t.Fatalf("Fold = %+v, want %+v", got, tt.want)
			}
			s := account.Initial(testID)
			for _, e := range tt.given {
				s = account.Evolve(s, e)
			}
			if s != tt.want {
				t.Fatalf("Evolve one by one = %+v, want %+v", s, tt.want)
			}
		})
	}
}

// TestDecideKeepsBalanceConsistent drives one account at a time through
// random commands and checks, after every step, that the balance is never
// negative and always equals the sum of deposits minus withdrawals.
func TestDecideKeepsBalanceConsistent(t *testing.T) {
	const steps = 5_000
	rng := rand.New(rand.NewPCG(20240611, 7))
	currencies := []string{"EUR", "USD", "JPY", "KRW", "XYZ"}

	var (
		state                 account.State
		history               []Event
		deposited, withdrawn  int64
		accounts              int
		accepted, refused     = map[string]int{}, map[string]int{}
		acceptedWithdrawalMax int
	)
	reset := func() {
		accounts++
		state = account.Initial(fmt.Sprintf("acc-%d", accounts))
		history, deposited, withdrawn = nil, 0, 0
	}
	// amount picks mostly valid amounts, with edge cases around the limit and
	// the balance and a few invalid ones.
	amount := func() int64 {
		limit := account.MaxDeposit(state.Currency)
		switch rng.IntN(10) {
		case 0:
			return -rng.Int64N(100)
		case 1:
			return limit
		case 2:
			return limit + 1
		case 3:
			return state.Balance
		case 4:
			return state.Balance + 1
		case 5:
			return rng.Int64N(max(state.Balance, 1)) + 1
		default:
			return rng.Int64N(limit/100) + 1
		}
	}
	currency := func() string {
		if rng.IntN(10) == 0 {
			return currencies[rng.IntN(len(currencies))]
		}
		return state.Currency
	}
	text := func(valid string) string {
		switch rng.IntN(20) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("x", 201)
		}
		return valid
	}

	reset()
	for step := range steps {
		if state.Status == account.StatusClosed && rng.IntN(3) == 0 {
			reset()
		}
		var cmd Command
		switch n := rng.IntN(100); {
		case n < 8:
			cmd = account.OpenAccount{
				ID:             state.ID,
				Owner:          text("Owner"),
				Currency:       currencies[rng.IntN(len(currencies))],
				InitialDeposit: rng.Int64N(200_000) - 1_000,
			}
		case n < 15:
			cmd = account.ActivateAccount{}
		case n < 55:
			cmd = account.DepositFunds{Amount: amount(), Currency: currency(), Source: text("salary")}
		case n < 95:
			cmd = account.WithdrawFunds{Amount: amount(), Currency: currency(), Reason: text("rent")}
		default:
			cmd = account.CloseAccount{Reason: text("done")}
		}

		before := state
		events, err := account.Decide(state, cmd)
		if err != nil {
			var re *decider.RuleError
			if !errors.As(err, &re) {
				t.Fatalf("step %d: Decide(%+v) error %v is not a *RuleError", step, cmd, err)
			}
			if events != nil {
				t.Fatalf("step %d: Decide(%+v) returned events %v with error %v", step, cmd, events, err)
			}
			refused[re.Code]++
			continue
		}
		accepted[account.CommandName(cmd)]++
		for _, e := range events {
			switch e := e.(type) {
			case account.FundsDeposited:
				if e.Currency != state.Currency {
					t.Fatalf("step %d: deposit in %s on a %s account", step, e.Currency, state.Currency)
				}
				deposited += e.Amount
			case account.FundsWithdrawn:
				if e.Currency != state.Currency {
					t.Fatalf("step %d: withdrawal in %s on a %s account", step, e.Currency, state.Currency)
				}
				if e.Amount == before.Balance {
					acceptedWithdrawalMax++
				}
				withdrawn += e.Amount
			}
			state = account.Evolve(state, e)
			history = append(history, e)
		}
		if state.Balance < 0 {
			t.Fatalf("step %d: after %+v the balance is %d", step, cmd, state.Balance)
		}
		if want := deposited - withdrawn; state.Balance != want {
			t.Fatalf("step %d: balance %d, want deposits %d - withdrawals %d = %d", step, state.Balance, deposited, withdrawn, want)
		}
		if replayed := account.Fold(state.ID, history); replayed != state {
			t.Fatalf("step %d: replaying the history gives %+v, want %+v", step, replayed, state)
		}
	}

	t.Logf("%d accounts; accepted %v; refused %v", accounts, accepted, refused)
	// Guard against a generator that never reaches the interesting paths.
	for _, name := range []string{"OpenAccount", "ActivateAccount", "DepositFunds", "WithdrawFunds", "CloseAccount"} {
		if accepted[name] == 0 {
			t.Errorf("no %s was ever accepted; accepted %v", name, accepted)
		}
	}
	for _, code := range []string{"insufficient-funds", "deposit-limit-exceeded", "invalid-amount", "currency-mismatch", "account-not-active", "already-open"} {
		if refused[code] == 0 {
			t.Errorf("no command was ever refused with %q; refused %v", code, refused)
		}
	}
	if acceptedWithdrawalMax == 0 {
		t.Error("no withdrawal of the whole balance was ever accepted")
	}
	if accounts < 2 {
		t.Errorf("only %d account(s) were driven; want several lifecycles", accounts)
	}
}
