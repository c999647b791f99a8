// Package transfers is the process manager that moves the money of a
// transfer. A transfer touches two accounts, so it cannot be one
// transaction: the manager reacts to events from Kafka and issues one
// command per step, each caused by the event before it and sharing the
// transfer's correlation id:
//
//	TransferRequested ─▶ WithdrawFunds(from)      ─▶ FundsWithdrawn
//	FundsWithdrawn    ─▶ DepositFunds(to)         ─▶ FundsDeposited
//	FundsDeposited    ─▶ CompleteTransfer         ─▶ TransferCompleted
//
// A refused withdrawal fails the transfer (nothing moved); a refused deposit
// refunds the source (RefundFunds) and then fails the transfer, caused by
// the refund.
//
// Who asked (G11): every event the manager appends is recorded as
// Principal ("process-manager") acting on behalf of the transfer's requester,
// the owner of the transfer's stream (the principal of its TransferRequested,
// version 1; an owner never changes, so the handler's cache serves it as well
// as the store). It is never taken from the event being handled, so
// a step redone after a crash or from a replayed record, or caused by an
// account event, records the same requester.
//
// Effectively once: a step is recorded under an idempotency key of its own
// ("transfer:<id>:<step>", principal "process-manager"), completed in the
// same transaction as the step's events, or with the refusal. A step seen
// again — a redelivered event, a restart between steps, a second manager —
// fails to record its key a second time, and answers what the first run did
// instead of doing it twice. A
// transfer that has ended is left alone, whatever event arrives.
package transfers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tributary-es/tributary/internal/decider"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
)

// Principal is who the manager's commands are recorded as.
const Principal = "process-manager"

// Accounts and Transfers run the commands of the two aggregate types.
type (
	Accounts  = aggregate.Handler[account.State, account.Command, account.Event]
	Transfers = aggregate.Handler[transfer.State, transfer.Command, transfer.Event]
)

// Steps does the steps of transfers: given an event, the next command.
type Steps struct {
	store     *postgres.Store
	accounts  *Accounts
	transfers *Transfers
	claimFor  time.Duration
	logger    *slog.Logger
	// afterStep, if set, runs after each step's command (tests: a crash
	// between steps).
	afterStep func(transferID, step string) error
}

// NewSteps returns the steps over the event store and the two handlers.
// claimFor is how long a step's claim lasts before another manager may take
// it over from one that died holding it.
func NewSteps(store *postgres.Store, accounts *Accounts, transfers *Transfers, claimFor time.Duration, logger *slog.Logger) *Steps {
	return &Steps{store: store, accounts: accounts, transfers: transfers, claimFor: claimFor, logger: logger}
}

// TransferOf returns the transfer an account event belongs to, from the
// reason of a withdrawal or the source of a deposit ("transfer:<id>").
func TransferOf(e log.Event) (id string, ok bool) {
	var p struct{ Reason, Source string }
	if e.AggregateType != account.AggregateType || json.Unmarshal(e.Payload, &p) != nil {
		return "", false
	}
	switch e.Type {
	case "FundsWithdrawn":
		return strings.CutPrefix(p.Reason, "transfer:")
	case "FundsDeposited":
		return strings.CutPrefix(p.Source, "transfer:")
	}
	return "", false
}

// Handle does what e asks of its transfer, if anything. An error means the
// event must be handled again (it is safe to).
func (s *Steps) Handle(ctx context.Context, e log.Event) error {
	switch {
	case e.AggregateType == transfer.AggregateType && e.Type == "TransferRequested":
		return s.onRequested(ctx, e.AggregateID, e)
	case e.AggregateType == account.AggregateType && e.Type == "FundsWithdrawn":
		if id, ok := TransferOf(e); ok {
			return s.onWithdrawn(ctx, id, e)
		}
	case e.AggregateType == account.AggregateType && e.Type == "FundsDeposited":
		if id, ok := TransferOf(e); ok {
			return s.onDeposited(ctx, id, e)
		}
	}
	return nil
}

// inProgress returns transfer id's state and its requester (the owner of
// its stream: whom its steps are done for); ok is false when it has ended
// (or never began), and nothing is to be done. The state may come from the
// handler's cache, and lag behind another manager's steps: a step that is
// not due any more is then replayed from its key, never done twice.
func (s *Steps) inProgress(ctx context.Context, id string) (st transfer.State, requester string, ok bool, err error) {
	st, _, requester, err = s.transfers.Current(ctx, id)
	if err != nil {
		return st, "", false, fmt.Errorf("load transfer %s: %w", id, err)
	}
	return st, requester, st.Status == transfer.StatusRequested, nil
}

func (s *Steps) onRequested(ctx context.Context, id string, requested log.Event) error {
	st, requester, ok, err := s.inProgress(ctx, id)
	if err != nil || !ok {
		return err
	}
	_, refusal, err := step(ctx, s, id, "withdraw", requested, requester, s.accounts, st.From,
		account.Command(account.WithdrawFunds{Amount: st.Amount, Currency: st.Currency, Reason: "transfer:" + id}))
	if err != nil || refusal == "" {
		return err
	}
	return s.fail(ctx, id, requested, requester, "withdrawal refused: "+refusal, false)
}

func (s *Steps) onWithdrawn(ctx context.Context, id string, withdrawn log.Event) error {
	st, requester, ok, err := s.inProgress(ctx, id)
	if err != nil || !ok {
		return err
	}
	if withdrawn.AggregateID != st.From {
		s.logger.Warn("a withdrawal names a transfer from another account; ignored", "transfer", id, "account", withdrawn.AggregateID)
		return nil
	}
	_, refusal, err := step(ctx, s, id, "deposit", withdrawn, requester, s.accounts, st.To,
		account.Command(account.DepositFunds{Amount: st.Amount, Currency: st.Currency, Source: "transfer:" + id}))
	if err != nil || refusal == "" {
		return err
	}
	// The target refused: give the money back to the source, then fail the
	// transfer as caused by the refund.
	refunded, refundRefusal, err := step(ctx, s, id, "refund", withdrawn, requester, s.accounts, st.From,
		account.Command(account.RefundFunds{Amount: st.Amount, Currency: st.Currency, Source: "refund:transfer:" + id}))
	if err != nil {
		return err
	}
	if refundRefusal != "" {
		// Only a source that vanished or changed currency could refuse: keep
		// retrying and say so loudly rather than lose the money.
		return fmt.Errorf("transfer %s: the refund to %s was refused (%s); the money is withdrawn and not yet returned", id, st.From, refundRefusal)
	}
	return s.fail(ctx, id, refunded, requester, "deposit refused: "+refusal, true)
}

func (s *Steps) onDeposited(ctx context.Context, id string, deposited log.Event) error {
	st, requester, ok, err := s.inProgress(ctx, id)
	if err != nil || !ok {
		return err
	}
	if deposited.AggregateID != st.To {
		s.logger.Warn("a deposit names a transfer to another account; ignored", "transfer", id, "account", deposited.AggregateID)
		return nil
	}
	_, _, err = step(ctx, s, id, "complete", deposited, requester, s.transfers, id, transfer.Command(transfer.CompleteTransfer{}))
	return err
}

func (s *Steps) fail(ctx context.Context, id string, cause log.Event, requester, reason string, refunded bool) error {
	if len(reason) > 200 {
		reason = reason[:200]
	}
	_, refusal, err := step(ctx, s, id, "fail", cause, requester, s.transfers, id, transfer.Command(transfer.FailTransfer{Reason: reason, Refunded: refunded}))
	if err == nil && refusal != "" {
		s.logger.Info("transfer already ended", "transfer", id, "refusal", refusal)
	}
	return err
}

// refusal is what a step's idempotency key keeps of a refused command.
type refusal struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// step runs command on aggregate aggregateID once, under the step's key: it
// returns the event it appended (now, or the first time), or the refusal's
// detail. cause is the event that caused the step; requester is whom it is
// done for.
//
// The key is not claimed first: the append records it, completed, in its own
// transaction (or the refusal does), and fails when the key was completed
// already — by an earlier run of the step, or by another manager running it
// at the same time — and then the step answers what that run did.
func step[S any, C any, E aggregate.Event](ctx context.Context, s *Steps, transferID, name string, cause log.Event, requester string,
	h *aggregate.Handler[S, C, E], aggregateID string, command C,
) (log.Event, string, error) {
	key := "transfer:" + transferID + ":" + name
	hash := sha256.Sum256([]byte(key))
	traceParent, traceState := traceContext(ctx, cause)
	res, err := h.Handle(ctx, aggregate.Request[C]{
		AggregateID: aggregateID,
		Command:     command,
		Metadata: log.Metadata{
			CorrelationID: cause.CorrelationID, CausationID: cause.ID.String(), Principal: Principal, OnBehalfOf: requester,
			TraceParent: traceParent, TraceState: traceState,
		},
		Idempotency: &postgres.IdempotencyCompletion{Principal: Principal, Key: key, Status: http.StatusOK, RequestHash: hash[:]},
	})
	var rule *decider.RuleError
	switch {
	case errors.Is(err, postgres.ErrIdempotencyKeyCompleted):
		return s.done(ctx, transferID, name, key)
	case errors.As(err, &rule):
		return s.refused(ctx, transferID, name, key, hash[:], refusal{Code: rule.Code, Detail: rule.Detail})
	case err != nil:
		return log.Event{}, "", fmt.Errorf("transfer %s, step %s: %w", transferID, name, err)
	case len(res.Events) == 0:
		return log.Event{}, "", fmt.Errorf("transfer %s, step %s: the command decided no event", transferID, name)
	}
	if s.afterStep != nil {
		if err := s.afterStep(transferID, name); err != nil {
			return log.Event{}, "", err
		}
	}
	return res.Events[0], "", nil
}

// done answers a step that an earlier run completed: the event it appended,
// or its refusal's detail.
func (s *Steps) done(ctx context.Context, transferID, name, key string) (log.Event, string, error) {
	stored, completed, err := s.store.LookupIdempotencyKey(ctx, Principal, key)
	if err != nil {
		return log.Event{}, "", fmt.Errorf("transfer %s, step %s: %w", transferID, name, err)
	}
	if !completed {
		return log.Event{}, "", fmt.Errorf("transfer %s, step %s: its key is not completed, although the store said so", transferID, name)
	}
	if !stored.AppendedEvents() {
		var r refusal
		if err := json.Unmarshal(stored.Body, &r); err != nil {
			return log.Event{}, "", fmt.Errorf("transfer %s, step %s: stored outcome: %w", transferID, name, err)
		}
		return log.Event{}, r.Detail, nil
	}
	evs, err := s.store.ReadStream(ctx, postgres.StreamQuery{AggregateType: stored.AggregateType, AggregateID: stored.AggregateID,
		AfterVersion: stored.FirstVersion - 1, UntilVersion: stored.FirstVersion})
	if err != nil || len(evs) == 0 {
		return log.Event{}, "", fmt.Errorf("transfer %s, step %s: read the event it appended: %v", transferID, name, err)
	}
	return evs[0], "", nil
}

// traceContext is the W3C trace context a step's event is stored with: the
// span handling its cause (the manager's process span), so that the trace
// goes on through the step's event; the cause's own without one.
func traceContext(ctx context.Context, cause log.Event) (traceParent, traceState string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return cause.TraceParent, cause.TraceState
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent"), carrier.Get("tracestate")
}

// refused records a step's refusal under its key, unless an earlier run of
// the step completed the key first: then that run's outcome is the step's.
func (s *Steps) refused(ctx context.Context, transferID, name, key string, hash []byte, r refusal) (log.Event, string, error) {
	body, _ := json.Marshal(r)
	err := s.store.CompleteIdempotencyKey(ctx, Principal, key, hash, http.StatusUnprocessableEntity, body)
	if errors.Is(err, postgres.ErrIdempotencyKeyCompleted) {
		return s.done(ctx, transferID, name, key)
	}
	if err != nil {
		return log.Event{}, "", err
	}
	return log.Event{}, r.Detail, nil
}

// NewTransferID returns a fresh transfer id.
func NewTransferID() string { return uuid.Must(uuid.NewV7()).String() }
