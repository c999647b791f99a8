package writer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
)

// Route is one route of the writer's API that a domain brings: built by
// Command, served once the server knows its handlers.
type Route struct {
	// Pattern is the route's ServeMux pattern, e.g. "POST /v1/carts".
	Pattern string
	// AggregateType is the type of the aggregates the route's command acts on.
	AggregateType string
	build         func(s *Server) (http.Handler, error)
}

// Owners tell who owns an aggregate: the principal of its first event, ""
// when it has none.
type Owners interface {
	Owner(ctx context.Context, aggregateType, id string) (string, error)
}

// CommandRoute says how requests of one route become a command C, from a
// JSON body B (strict: unknown or duplicate members, invalid UTF-8 and a
// body that is not one object are refused with 400).
type CommandRoute[B any, C any] struct {
	// Pattern is the route, e.g. "POST /v1/carts/{id}/items". Unless
	// the command creates its aggregate, the {id} wildcard names it.
	Pattern string
	// Name is the command's name in metrics and logs, e.g. "DepositFunds".
	Name string
	// Creates: the command creates its aggregate, whose id ID reads from the
	// body (a new UUIDv7 when it returns ""); the answer is 201 with a
	// Location.
	Creates bool
	// ID returns the id the body asks for; only for a route that Creates.
	ID func(body B) string
	// EmptyBody: the body may be empty, read as B's zero value.
	EmptyBody bool
	// Command turns the body into the command on aggregate id (the path's,
	// or the created one's).
	Command func(id string, body B) C
	// Authorize, if set, decides before the command runs whether the caller
	// may ask it, beyond acting on an aggregate they own (which the writer
	// always checks): e.g. a command that takes from another aggregate
	// needs that one's owner (owners tells who). A refusal is an
	// auth.ErrForbidden (auth.Refuse) whose message is the 403's detail; any
	// other error is a 500.
	Authorize func(ctx context.Context, caller auth.Principal, body B, owners Owners) error
}

// Command is the route that runs cr's command on aggregates of typ: the
// body read strictly, the command context (caller, If-Match,
// Idempotency-Key, correlation) parsed, the caller checked, the command
// handled, and the answer (or problem) written; a domain's refusals are
// mapped by their kind (decider.RuleError).
func Command[B any, S any, C any, E aggregate.Event](typ aggregate.Type[S, C, E], cr CommandRoute[B, C]) Route {
	return Route{Pattern: cr.Pattern, AggregateType: typ.Name, build: func(s *Server) (http.Handler, error) {
		if cr.Command == nil {
			return nil, errors.New("route " + cr.Pattern + ": no Command")
		}
		if cr.Creates != (cr.ID != nil) {
			return nil, errors.New("route " + cr.Pattern + ": ID is for (and needed by) a route that Creates its aggregate")
		}
		if !cr.Creates && !strings.Contains(cr.Pattern, "{id}") {
			return nil, errors.New("route " + cr.Pattern + ": no {id} names the aggregate")
		}
		h, err := aggregate.HandlerOf(s.handlers, typ)
		if err != nil {
			return nil, errors.New("route " + cr.Pattern + ": " + err.Error())
		}
		// Present from the start at 0, so that its rate (the shedding
		// alert) has data and counts the first one.
		shed := s.metrics.commands.WithLabelValues(typ.Name, cr.Name, "shed")
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			release, ok := s.admitted.enter(r.Context())
			if !ok {
				shed.Inc()
				w.Header().Set("Retry-After", "1")
				problem.Write(w, r, problem.New(http.StatusServiceUnavailable, "overloaded", "Overloaded",
					fmt.Sprintf("the writer has %d commands in flight and none finished within %s; nothing of this command was done: retry it (with the same Idempotency-Key)",
						s.cfg.MaxInFlight, s.cfg.AdmissionWait)))
				return
			}
			defer release()
			var id string
			if !cr.Creates {
				id = r.PathValue("id")
				if p := httpapi.ID(id); p != nil {
					problem.Write(w, r, p)
					return
				}
			}
			var body B
			raw, p := readJSON(r, s.cfg.MaxBodyBytes, cr.EmptyBody, &body)
			if p != nil {
				problem.Write(w, r, p)
				return
			}
			if cr.Creates {
				if id = cr.ID(body); id == "" {
					generated, err := uuid.NewV7()
					if err != nil {
						s.internalError(w, r, err)
						return
					}
					id = generated.String()
				} else if p := httpapi.ID(id); p != nil {
					problem.Write(w, r, p)
					return
				}
			}
			cc, p := s.parseCommandContext(r, raw)
			if p != nil {
				problem.Write(w, r, p)
				return
			}
			if cr.Authorize != nil {
				if err := cr.Authorize(r.Context(), cc.caller, body, s.handlers); errors.Is(err, auth.ErrForbidden) {
					s.metrics.commands.WithLabelValues(typ.Name, cr.Name, "forbidden").Inc()
					problem.Write(w, r, auth.Forbidden(err.Error()))
					return
				} else if err != nil {
					s.internalError(w, r, err)
					return
				}
			}
			runCommand(s, w, r, h, id, cr.Command(id, body), cc, cr.Creates, cr.Name)
		}), nil
	}}
}
