package writer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"github.com/tributary-es/tributary/internal/decider"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/telemetry"
)

// CommandResponse is the body of a successful command: what the writer
// appended, with the versions and positions a reader needs for
// read-your-writes.
type CommandResponse struct {
	AggregateType  string          `json:"aggregateType"`
	AggregateID    string          `json:"aggregateId"`
	StreamVersion  int64           `json:"streamVersion"`
	GlobalPosition int64           `json:"globalPosition"`
	CorrelationID  string          `json:"correlationId"`
	CausationID    string          `json:"causationId"`
	Events         []AppendedEvent `json:"events"`
}

// AppendedEvent identifies one appended event.
type AppendedEvent struct {
	ID             uuid.UUID `json:"id"`
	Type           string    `json:"type"`
	Version        int64     `json:"version"`
	GlobalPosition int64     `json:"globalPosition"`
}

func newCommandResponse(aggregateType, aggregateID string, version int64, meta log.Metadata, events []log.Event) CommandResponse {
	resp := CommandResponse{
		AggregateType: aggregateType, AggregateID: aggregateID, StreamVersion: version,
		CorrelationID: meta.CorrelationID, CausationID: meta.CausationID, Events: []AppendedEvent{},
	}
	for _, e := range events {
		resp.Events = append(resp.Events, AppendedEvent{ID: e.ID, Type: e.Type, Version: e.Version, GlobalPosition: e.GlobalPosition})
		resp.GlobalPosition = max(resp.GlobalPosition, e.GlobalPosition)
	}
	return resp
}

// commandContext is what every command request carries besides its body.
type commandContext struct {
	caller         auth.Principal
	expected       *int64
	metadata       log.Metadata
	idempotencyKey string
	requestHash    []byte
}

// parseCommandContext reads the headers every command shares.
func (s *Server) parseCommandContext(r *http.Request, body []byte) (commandContext, *problem.Problem) {
	var cc commandContext
	var p *problem.Problem
	if cc.caller, p = caller(r); p != nil {
		return cc, p
	}
	if cc.expected, p = expectedVersion(r); p != nil {
		return cc, p
	}
	if cc.idempotencyKey, p = optionalToken(r, "Idempotency-Key"); p != nil {
		return cc, p
	}
	correlationID, p := optionalToken(r, "X-Correlation-ID")
	if p != nil {
		return cc, p
	}
	commandID, err := uuid.NewV7()
	if err != nil {
		return cc, problem.New(http.StatusInternalServerError, "internal", "Internal error", "could not make a command id")
	}
	if correlationID == "" {
		correlationID = commandID.String()
	}
	trace.SpanFromContext(r.Context()).SetAttributes(telemetry.EventAttributes(correlationID, commandID.String())...)
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(r.Context(), carrier)
	cc.metadata = log.Metadata{
		CorrelationID: correlationID,
		CausationID:   commandID.String(),
		Principal:     cc.caller.Subject,
		TraceParent:   carrier.Get("traceparent"),
		TraceState:    carrier.Get("tracestate"),
	}
	if cc.idempotencyKey != "" {
		h := sha256.New()
		for _, part := range []string{r.Method, r.URL.Path, r.Header.Get("If-Match")} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		h.Write(body)
		cc.requestHash = h.Sum(nil)
	}
	return cc, nil
}

// runCommand is the shared path of every command: idempotency, handling,
// the response, and the idempotency record of what was answered.
func runCommand[S any, C any, E aggregate.Event](s *Server, w http.ResponseWriter, r *http.Request,
	h *aggregate.Handler[S, C, E], id string, cmd C, cc commandContext, created bool, commandName string,
) {
	ctx := r.Context()
	started := time.Now()
	outcome := "error"
	defer func() {
		s.metrics.commands.WithLabelValues(h.TypeName(), commandName, outcome).Inc()
		s.metrics.commandSeconds.WithLabelValues(h.TypeName(), commandName).Observe(time.Since(started).Seconds())
	}()

	principal := cc.metadata.Principal
	var completion *postgres.IdempotencyCompletion
	if cc.idempotencyKey != "" {
		claim, stored, err := s.store.ClaimIdempotencyKey(ctx, principal, cc.idempotencyKey, cc.requestHash, s.cfg.IdempotencyClaim)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		switch claim {
		case postgres.Mismatch:
			outcome = "rejected"
			problem.Write(w, r, keyReused())
			return
		case postgres.InProgress:
			outcome = "conflict"
			problem.Write(w, r, problem.New(http.StatusConflict, "idempotency-key-in-use", "Request in progress",
				"a request with this Idempotency-Key is still being processed; retry later"))
			return
		case postgres.Replay:
			outcome = "replayed"
			s.replay(w, r, stored)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		completion = &postgres.IdempotencyCompletion{Principal: principal, Key: cc.idempotencyKey, Status: status, RequestHash: cc.requestHash}
	}

	res, err := h.Handle(ctx, aggregate.Request[C]{
		AggregateID: id, Command: cmd, ExpectedVersion: cc.expected, Metadata: cc.metadata, Idempotency: completion,
		Authorize: func(owner string) error {
			if cc.caller.MayAccess(owner) {
				return nil
			}
			return &forbiddenError{stream: h.TypeName() + "/" + id}
		},
	})
	if errors.Is(err, postgres.ErrIdempotencyKeyCompleted) {
		outcome = "replayed"
		s.answerFromKey(w, r, principal, cc)
		return
	}
	if errors.Is(err, postgres.ErrIdempotencyKeyMismatch) {
		// The claim ran out and the key went to another request: nothing was
		// written, and the key is that request's now.
		outcome = "rejected"
		problem.Write(w, r, keyReused())
		return
	}
	if err != nil {
		p := s.commandProblem(err, h.TypeName())
		if p.Status >= 500 {
			if ctx.Err() != nil {
				// The client went away; nothing of ours failed.
				outcome = "cancelled"
				s.logger.InfoContext(ctx, "command cancelled by the client", "aggregate", h.TypeName(), "id", id, "command", commandName, "err", err)
			} else {
				s.logger.ErrorContext(ctx, "command failed", "aggregate", h.TypeName(), "id", id, "command", commandName, "err", err)
			}
			if completion != nil && !errors.Is(err, postgres.ErrAppendOutcomeUnknown) {
				// Let a retry run the command again: nothing was appended. (When
				// the append's outcome is unknown, the claim must run out
				// instead: the append may still commit.)
				if rerr := s.store.ReleaseIdempotencyKey(context.WithoutCancel(ctx), principal, cc.idempotencyKey); rerr != nil {
					s.logger.ErrorContext(ctx, "release idempotency key", "err", rerr)
				}
			}
			if outcome != "cancelled" {
				outcome = "error"
			}
		} else if p.Status == http.StatusForbidden {
			// A refused request writes nothing, not even its Idempotency-Key.
			outcome = "forbidden"
			if completion != nil {
				if rerr := s.store.ReleaseIdempotencyKey(context.WithoutCancel(ctx), principal, cc.idempotencyKey); rerr != nil {
					s.logger.ErrorContext(ctx, "release idempotency key", "err", rerr)
				}
			}
		} else {
			outcome = "rejected"
			if p.Status == http.StatusConflict || p.Status == http.StatusPreconditionFailed {
				outcome = "conflict"
			}
			if completion != nil {
				p.Instance = r.URL.Path
				body, _ := json.Marshal(p)
				if cerr := s.store.CompleteIdempotencyKey(ctx, principal, cc.idempotencyKey, cc.requestHash, p.Status, body); errors.Is(cerr, postgres.ErrIdempotencyKeyCompleted) {
					// Another run of the request answered first: its answer stands.
					s.answerFromKey(w, r, principal, cc)
					return
				} else if cerr != nil {
					s.logger.ErrorContext(ctx, "complete idempotency key", "err", cerr)
				}
			}
		}
		problem.Write(w, r, p)
		return
	}
	outcome = "accepted"
	for _, e := range res.Events {
		s.metrics.eventsAppended.WithLabelValues(e.AggregateType, e.Type).Inc()
	}
	resp := newCommandResponse(res.AggregateType, res.AggregateID, res.Version, cc.metadata, res.Events)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	if completion != nil && len(res.Events) == 0 {
		body, _ := json.Marshal(resp)
		if cerr := s.store.CompleteIdempotencyKey(ctx, principal, cc.idempotencyKey, cc.requestHash, status, body); errors.Is(cerr, postgres.ErrIdempotencyKeyCompleted) {
			s.answerFromKey(w, r, principal, cc)
			return
		} else if cerr != nil {
			s.logger.ErrorContext(ctx, "complete idempotency key", "err", cerr)
		}
	}
	writeCommandResponse(w, resp, status, created, false)
}

// keyReused is the problem of an Idempotency-Key used before with another
// request (G2).
func keyReused() *problem.Problem {
	return problem.New(http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused",
		"this Idempotency-Key was used before with a different request")
}

// answerFromKey answers a request whose Idempotency-Key another run of it
// completed while this run's claim had expired: with that run's answer,
// which stands (this run stored nothing).
func (s *Server) answerFromKey(w http.ResponseWriter, r *http.Request, principal string, cc commandContext) {
	ctx := context.WithoutCancel(r.Context())
	claim, stored, err := s.store.ClaimIdempotencyKey(ctx, principal, cc.idempotencyKey, cc.requestHash, s.cfg.IdempotencyClaim)
	switch {
	case err != nil:
		s.internalError(w, r, err)
	case claim == postgres.Replay:
		s.replay(w, r, stored)
	default:
		if claim == postgres.Claimed { // the record is gone (expired): let a retry run the command
			if err := s.store.ReleaseIdempotencyKey(ctx, principal, cc.idempotencyKey); err != nil {
				s.logger.ErrorContext(ctx, "release idempotency key", "err", err)
			}
		}
		problem.Write(w, r, problem.New(http.StatusConflict, "idempotency-key-in-use", "Request in progress",
			"another run of a request with this Idempotency-Key is being processed; retry later"))
	}
}

func writeCommandResponse(w http.ResponseWriter, resp CommandResponse, status int, created, replayed bool) {
	w.Header().Set("ETag", etag(resp.StreamVersion))
	w.Header().Set("X-Correlation-ID", resp.CorrelationID)
	if created {
		w.Header().Set("Location", "/v1/streams/"+resp.AggregateType+"/"+resp.AggregateID)
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	httpapi.WriteJSON(w, status, resp)
}

// replay answers a retried request with the response of its first run.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, stored postgres.StoredResponse) {
	if !stored.AppendedEvents() {
		w.Header().Set("Idempotent-Replayed", "true")
		contentType := "application/json"
		if stored.Status >= 400 {
			contentType = problem.ContentType
			w.Header().Set("X-Content-Type-Options", "nosniff") // as problem.Write answered the first time
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(stored.Status)
		_, _ = w.Write(stored.Body)
		return
	}
	events, err := s.store.ReadStream(r.Context(), postgres.StreamQuery{
		AggregateType: stored.AggregateType, AggregateID: stored.AggregateID,
		AfterVersion: stored.FirstVersion - 1, UntilVersion: stored.LastVersion,
	})
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if len(events) == 0 {
		s.internalError(w, r, errors.New("idempotency record points at events that are not in the store"))
		return
	}
	resp := newCommandResponse(stored.AggregateType, stored.AggregateID, stored.LastVersion, events[0].Metadata, events)
	writeCommandResponse(w, resp, stored.Status, stored.Status == http.StatusCreated, true)
}

// commandProblem maps a command's error on an aggregate of aggregateType
// to a problem: a domain's refusal by its kind, then the platform's errors.
func (s *Server) commandProblem(err error, aggregateType string) *problem.Problem {
	var rule *decider.RuleError
	if errors.As(err, &rule) {
		return refusal(rule, aggregateType)
	}
	var mismatch *aggregate.VersionMismatchError
	var forbidden *forbiddenError
	var schemaErr *log.SchemaError
	switch {
	case errors.As(err, &forbidden):
		return auth.Forbidden("only the owner of " + forbidden.stream + " or an operator may act on it")
	case errors.As(err, &mismatch):
		return problem.New(http.StatusPreconditionFailed, "version-mismatch", "Version mismatch",
			mismatch.Error()).With("currentVersion", mismatch.Current).With("expectedVersion", mismatch.Expected)
	case errors.Is(err, aggregate.ErrConflict):
		return problem.New(http.StatusConflict, "concurrent-modification", "Concurrent modification",
			"other commands kept changing this aggregate; retry the command")
	case errors.As(err, &schemaErr):
		return problem.New(http.StatusUnprocessableEntity, "invalid-event", "Event fails its schema", schemaErr.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return problem.New(http.StatusServiceUnavailable, "timeout", "Request cancelled or timed out",
			"the command did not finish in time; retry it with the same Idempotency-Key")
	}
	return problem.New(http.StatusInternalServerError, "internal", "Internal error",
		"the command could not be completed; retry it with the same Idempotency-Key")
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
	problem.Write(w, r, problem.New(http.StatusInternalServerError, "internal", "Internal error",
		"the request could not be completed; retry it"))
}

// forbiddenError: the caller may not act on stream ("type/id"); it is an
// auth.ErrForbidden.
type forbiddenError struct{ stream string }

func (e *forbiddenError) Error() string { return e.stream + " belongs to another principal" }

func (e *forbiddenError) Unwrap() error { return auth.ErrForbidden }

// refusal maps a domain's refusal of a command to a problem by its kind:
// not found 404, already exists 409, invalid 400, any other rule 422. The
// code is the domain's; the title names the aggregate type.
func refusal(rule *decider.RuleError, aggregateType string) *problem.Problem {
	noun := strings.ToUpper(aggregateType[:1]) + aggregateType[1:]
	switch {
	case errors.Is(rule, decider.ErrNotFound):
		return problem.New(http.StatusNotFound, rule.Code, noun+" not found", rule.Detail)
	case errors.Is(rule, decider.ErrAlreadyExists):
		return problem.New(http.StatusConflict, rule.Code, noun+" already exists", rule.Detail)
	case errors.Is(rule, decider.ErrInvalidCommand):
		return problem.New(http.StatusBadRequest, rule.Code, "Invalid command", rule.Detail)
	}
	return problem.New(http.StatusUnprocessableEntity, rule.Code, "Business rule violated", rule.Detail)
}
