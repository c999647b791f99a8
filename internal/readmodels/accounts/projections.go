// Package accounts holds the bank-account read models: the account summary,
// the transaction history and the account directory, each a
// readmodels.Projection, and the queries that read them.
package accounts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Names of the projections.
const (
	SummaryName   = "account-summary"
	HistoryName   = "account-history"
	DirectoryName = "account-directory"
)

// Summary is one account as the summary projection keeps it.
type Summary struct {
	ID string `json:"id"`
	// Owner is the name the account was opened for (a payload field);
	// Principal is who opened it, its owner in the access policy: the
	// principal of its first event.
	Owner     string    `json:"owner"`
	Principal string    `json:"principal"`
	Currency  string    `json:"currency"`
	Balance   int64     `json:"balance"`
	Status    string    `json:"status"`
	Version   int64     `json:"version"`
	OpenedAt  time.Time `json:"openedAt"`
	// UpdatedAt is when the last applied event was recorded.
	UpdatedAt time.Time `json:"updatedAt"`
}

// decode turns an upcast account event into its domain type.
func decode(e log.Event) (account.Event, error) {
	if e.AggregateType != account.AggregateType {
		return nil, fmt.Errorf("not an account event: aggregate type %q", e.AggregateType)
	}
	return account.DecodeEvent(e.Type, e.Payload)
}

func recordedAt(e log.Event) string { return e.RecordedAt.UTC().Format(time.RFC3339Nano) }

// SummaryProjection keeps one hash per account: owner, the principal who
// opened it, currency, balance, status, version, opened and updated times.
type SummaryProjection struct{}

// Name implements readmodels.Projection.
func (SummaryProjection) Name() string { return SummaryName }

// AggregateTypes implements readmodels.Projection.
func (SummaryProjection) AggregateTypes() []string { return []string{account.AggregateType} }

// Lua implements readmodels.Projection.
func (SummaryProjection) Lua() string {
	return `
local k = p .. 'summary:' .. id
local op, t = a[i], a[i + n - 1]
if op == 'open' then
  redis.call('HSET', k, 'id', id, 'owner', a[i + 1], 'currency', a[i + 2], 'principal', a[i + 3], 'balance', 0,
    'status', 'pending', 'openedAt', t, 'version', ver, 'updatedAt', t)
  return
end
if op == 'status' then
  redis.call('HSET', k, 'status', a[i + 1], 'version', ver, 'updatedAt', t)
  return
end
if op == 'delta' then
  redis.call('HINCRBY', k, 'balance', a[i + 1])
end
redis.call('HSET', k, 'version', ver, 'updatedAt', t)
`
}

// Reads implements readmodels.Planned: the account's balance.
func (SummaryProjection) Reads(id string) []readmodels.Field {
	return []readmodels.Field{{Key: "summary:" + id, Field: "balance"}}
}

// Plan implements readmodels.Planned: what Lua does, the balance added in
// Go (failing, as HINCRBY would, on overflow or a stored balance that is
// not an integer), the account's fields written once a step.
func (SummaryProjection) Plan(w *readmodels.Writes, id string, version int64, a []string) error {
	k := "summary:" + id
	t := a[len(a)-1]
	switch a[0] {
	case "open":
		w.Set(k, "id", id)
		w.Set(k, "owner", a[1])
		w.Set(k, "currency", a[2])
		w.Set(k, "principal", a[3])
		w.Set(k, "balance", "0")
		w.Set(k, "status", "pending")
		w.Set(k, "openedAt", t)
	case "status":
		w.Set(k, "status", a[1])
	case "delta":
		balance, err := addBalance(w, k, "balance", a[1])
		if err != nil {
			return fmt.Errorf("summary of %s: %w", id, err)
		}
		w.Set(k, "balance", balance)
	}
	w.Set(k, "version", strconv.FormatInt(version, 10))
	w.Set(k, "updatedAt", t)
	return nil
}

// addBalance is field f of hash key plus delta, as HINCRBY adds: an error
// for a stored value that is not an integer or a sum beyond int64.
func addBalance(w *readmodels.Writes, key, f, delta string) (string, error) {
	var balance int64
	if stored, ok := w.Get(key, f); ok {
		var err error
		if balance, err = strconv.ParseInt(stored, 10, 64); err != nil {
			return "", fmt.Errorf("stored balance is not an integer: %q", stored)
		}
	}
	d, err := strconv.ParseInt(delta, 10, 64)
	if err != nil {
		return "", fmt.Errorf("amount is not an integer: %q", delta)
	}
	sum := balance + d
	if (d > 0 && sum < balance) || (d < 0 && sum > balance) {
		return "", fmt.Errorf("balance would overflow: %d + %d", balance, d)
	}
	return strconv.FormatInt(sum, 10), nil
}

// Args implements readmodels.Projection.
func (SummaryProjection) Args(e log.Event) ([]string, error) {
	ev, err := decode(e)
	if err != nil {
		return nil, err
	}
	t := recordedAt(e)
	switch ev := ev.(type) {
	case account.AccountOpened:
		return []string{"open", ev.Owner, ev.Currency, e.Principal, t}, nil
	case account.AccountActivated:
		return []string{"status", string(account.StatusActive), t}, nil
	case account.FundsDeposited:
		return []string{"delta", strconv.FormatInt(ev.Amount, 10), t}, nil
	case account.FundsWithdrawn:
		return []string{"delta", strconv.FormatInt(-ev.Amount, 10), t}, nil
	case account.AccountClosed:
		return []string{"status", string(account.StatusClosed), t}, nil
	}
	return nil, fmt.Errorf("summary has no rule for %s", e.Type)
}

// Entry is one line of an account's history.
type Entry struct {
	Version       int64           `json:"version"`
	Type          string          `json:"type"`
	EventID       string          `json:"eventId"`
	RecordedAt    time.Time       `json:"recordedAt"`
	CorrelationID string          `json:"correlationId,omitempty"`
	Data          json.RawMessage `json:"data"`
	// Amount is the signed change of the balance: + in, − out, 0 otherwise.
	Amount int64 `json:"amount"`
	// BalanceAfter is the balance once this event applied.
	BalanceAfter int64 `json:"balanceAfter"`
}

// HistoryProjection keeps, per account, a sorted set of its events scored by
// version: newest first, paged by version, which never changes. The hash
// "owner" of each partition maps an account to the principal of its first
// event (its owner in the access policy), written with version 1 in the
// same step, so a query reads the owner with the page.
type HistoryProjection struct{}

// Name implements readmodels.Projection.
func (HistoryProjection) Name() string { return HistoryName }

// AggregateTypes implements readmodels.Projection.
func (HistoryProjection) AggregateTypes() []string { return []string{account.AggregateType} }

// Lua implements readmodels.Projection. The entry is JSON from Go, closed
// here with the running balance. HINCRBY's reply is a Lua number, which
// Lua writes with 14 digits (1e+14) and holds exactly only below 2^53: from
// 10^14 on, the stored decimal is read back instead.
func (HistoryProjection) Lua() string {
	return `
local balance = redis.call('HINCRBY', p .. 'balance', id, a[i + 1])
if balance >= 1e14 or balance <= -1e14 then
  balance = redis.call('HGET', p .. 'balance', id)
end
redis.call('ZADD', p .. 'history:' .. id, ver, a[i] .. ',"balanceAfter":' .. balance .. '}')
if ver == 1 then
  redis.call('HSET', p .. 'owner', id, a[i + 2])
end
`
}

// Reads implements readmodels.Planned: the account's running balance.
func (HistoryProjection) Reads(id string) []readmodels.Field {
	return []readmodels.Field{{Key: "balance", Field: id}}
}

// Plan implements readmodels.Planned: what Lua does, the balance added in
// Go (see addBalance).
func (HistoryProjection) Plan(w *readmodels.Writes, id string, version int64, a []string) error {
	after, err := addBalance(w, "balance", id, a[1])
	if err != nil {
		return fmt.Errorf("history of %s: %w", id, err)
	}
	w.Set("balance", id, after)
	w.Command("ZADD", w.Prefix()+"history:"+id, version, a[0]+`,"balanceAfter":`+after+"}")
	if version == 1 {
		w.Set("owner", id, a[2])
	}
	return nil
}

// Args implements readmodels.Projection.
func (HistoryProjection) Args(e log.Event) ([]string, error) {
	ev, err := decode(e)
	if err != nil {
		return nil, err
	}
	var delta int64
	switch ev := ev.(type) {
	case account.FundsDeposited:
		delta = ev.Amount
	case account.FundsWithdrawn:
		delta = -ev.Amount
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	// The Entry as json.Marshal writes it (TestHistoryEntryIsEntrysJSON),
	// without balanceAfter and the closing brace: Lua appends them.
	open, err := readmodels.NewJSONObject(256+len(data)).
		Int("version", e.Version).String("type", e.Type).String("eventId", e.ID.String()).
		Time("recordedAt", e.RecordedAt.UTC()).StringOmitEmpty("correlationId", e.CorrelationID).
		Marshaled("data", data).Int("amount", delta).Open()
	if err != nil {
		return nil, err
	}
	return []string{string(open), strconv.FormatInt(delta, 10), e.Principal}, nil
}

// DirectoryProjection keeps the accounts by status (sorted by opening time)
// and by balance per currency (for top N), as sorted sets per partition.
type DirectoryProjection struct{}

// Name implements readmodels.Projection.
func (DirectoryProjection) Name() string { return DirectoryName }

// AggregateTypes implements readmodels.Projection.
func (DirectoryProjection) AggregateTypes() []string { return []string{account.AggregateType} }

// Lua implements readmodels.Projection. The hash "dir" keeps each account's
// status, currency and opening time, to move it between sets.
func (DirectoryProjection) Lua() string {
	return `
local op = a[i]
if op == 'open' then
  redis.call('HSET', p .. 'dir', id, 'pending|' .. a[i + 1] .. '|' .. a[i + 2])
  redis.call('ZADD', p .. 'status:pending', a[i + 2], id)
  redis.call('ZADD', p .. 'balance:' .. a[i + 1], 0, id)
  return
end
local cur = redis.call('HGET', p .. 'dir', id)
if not cur then
  return
end
local status, currency, opened = string.match(cur, '^([^|]*)|([^|]*)|(.*)$')
if op == 'delta' then
  if status ~= 'closed' then
    redis.call('ZINCRBY', p .. 'balance:' .. currency, a[i + 1], id)
  end
elseif op == 'status' then
  redis.call('ZREM', p .. 'status:' .. status, id)
  redis.call('ZADD', p .. 'status:' .. a[i + 1], opened, id)
  redis.call('HSET', p .. 'dir', id, a[i + 1] .. '|' .. currency .. '|' .. opened)
  if a[i + 1] == 'closed' then
    redis.call('ZREM', p .. 'balance:' .. currency, id)
  end
end
`
}

// Reads implements readmodels.Planned: the account's entry.
func (DirectoryProjection) Reads(id string) []readmodels.Field {
	return []readmodels.Field{{Key: "dir", Field: id}}
}

// Plan implements readmodels.Planned: what Lua does, as commands.
func (DirectoryProjection) Plan(w *readmodels.Writes, id string, _ int64, a []string) error {
	p := w.Prefix()
	if a[0] == "open" {
		w.Set("dir", id, "pending|"+a[1]+"|"+a[2])
		w.Command("ZADD", p+"status:pending", a[2], id)
		w.Command("ZADD", p+"balance:"+a[1], 0, id)
		return nil
	}
	cur, ok := w.Get("dir", id)
	if !ok {
		return nil
	}
	status, rest, ok1 := strings.Cut(cur, "|")
	currency, opened, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 {
		return fmt.Errorf("directory entry of %s is malformed: %q", id, cur)
	}
	switch a[0] {
	case "delta":
		if status != "closed" {
			w.Command("ZINCRBY", p+"balance:"+currency, a[1], id)
		}
	case "status":
		w.Command("ZREM", p+"status:"+status, id)
		w.Command("ZADD", p+"status:"+a[1], opened, id)
		w.Set("dir", id, a[1]+"|"+currency+"|"+opened)
		if a[1] == "closed" {
			w.Command("ZREM", p+"balance:"+currency, id)
		}
	}
	return nil
}

// Args implements readmodels.Projection.
func (DirectoryProjection) Args(e log.Event) ([]string, error) {
	ev, err := decode(e)
	if err != nil {
		return nil, err
	}
	switch ev := ev.(type) {
	case account.AccountOpened:
		return []string{"open", ev.Currency, strconv.FormatInt(e.RecordedAt.UnixMilli(), 10)}, nil
	case account.AccountActivated:
		return []string{"status", string(account.StatusActive)}, nil
	case account.FundsDeposited:
		return []string{"delta", strconv.FormatInt(ev.Amount, 10)}, nil
	case account.FundsWithdrawn:
		return []string{"delta", strconv.FormatInt(-ev.Amount, 10)}, nil
	case account.AccountClosed:
		return []string{"status", string(account.StatusClosed)}, nil
	}
	return nil, fmt.Errorf("directory has no rule for %s", e.Type)
}
