// Package accounts holds the bank-account read models: the account summary,
// the transaction history and the account directory, each a
// readmodels.Projection, and the queries that read them.
package accounts

import (
	"encoding/json"
	"fmt"
	"strconv"
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
