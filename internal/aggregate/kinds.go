package aggregate

import (
	"context"
	"fmt"
	"time"

	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
)

// Kind is an aggregate type whatever its state, command and event types:
// what a registry of domains lists (Of makes one).
type Kind interface {
	// TypeName is the aggregate type in the event log, e.g. "account".
	TypeName() string
	// bind makes the kind's Handler over store.
	bind(store *postgres.Store, schemas *log.Schemas, opts Options) Runner
}

// Of returns typ as a Kind.
func Of[S any, C any, E Event](typ Type[S, C, E]) Kind { return kind[S, C, E]{typ} }

type kind[S any, C any, E Event] struct{ typ Type[S, C, E] }

func (k kind[S, C, E]) TypeName() string { return k.typ.Name }

func (k kind[S, C, E]) bind(store *postgres.Store, schemas *log.Schemas, opts Options) Runner {
	return NewHandler(k.typ, store, schemas, opts)
}

// Runner is a Handler whatever its types: what the platform does with any
// aggregate without knowing its domain.
type Runner interface {
	// TypeName is the aggregate type's name.
	TypeName() string
	// Owner returns the principal of the aggregate's first event; "" when
	// it has none.
	Owner(ctx context.Context, id string) (string, error)
	// StateAny folds the aggregate's stream up to untilVersion (0: all) and
	// until (zero: any time), returning its state and version.
	StateAny(ctx context.Context, id string, untilVersion int64, until time.Time) (any, int64, error)
}

// StateAny is StateAt with the state as any: see Runner.
func (h *Handler[S, C, E]) StateAny(ctx context.Context, id string, untilVersion int64, until time.Time) (any, int64, error) {
	return h.StateAt(ctx, id, untilVersion, until)
}

// Handlers are the handlers of every aggregate type a process serves, over
// one store: one cache of states and one lock per aggregate for each type,
// shared by whatever runs commands in the process (the API, process
// managers).
type Handlers struct {
	store  *postgres.Store
	byType map[string]Runner
	order  []string
}

// Bind makes the handlers of kinds over store, each validating its events
// against schemas. The kinds' type names must differ.
func Bind(kinds []Kind, store *postgres.Store, schemas *log.Schemas, opts Options) (*Handlers, error) {
	hs := &Handlers{store: store, byType: make(map[string]Runner, len(kinds))}
	for _, k := range kinds {
		name := k.TypeName()
		if name == "" {
			return nil, fmt.Errorf("an aggregate type has no name")
		}
		if _, dup := hs.byType[name]; dup {
			return nil, fmt.Errorf("aggregate type %q is registered twice", name)
		}
		hs.byType[name] = k.bind(store, schemas, opts)
		hs.order = append(hs.order, name)
	}
	return hs, nil
}

// Store returns the event store the handlers append to.
func (hs *Handlers) Store() *postgres.Store { return hs.store }

// Types returns the aggregate type names, in the order they were bound.
func (hs *Handlers) Types() []string { return append([]string(nil), hs.order...) }

// Runner returns the handler of the aggregate type called name.
func (hs *Handlers) Runner(name string) (Runner, bool) {
	r, ok := hs.byType[name]
	return r, ok
}

// Owner returns the owner of aggregate id of type aggregateType: the
// principal of its first event, "" when it has none.
func (hs *Handlers) Owner(ctx context.Context, aggregateType, id string) (string, error) {
	r, ok := hs.byType[aggregateType]
	if !ok {
		return "", fmt.Errorf("no aggregate type %q", aggregateType)
	}
	return r.Owner(ctx, id)
}

// HandlerOf returns the typed handler of typ among hs. It fails when typ
// was not bound, or another type was bound under its name.
func HandlerOf[S any, C any, E Event](hs *Handlers, typ Type[S, C, E]) (*Handler[S, C, E], error) {
	r, ok := hs.byType[typ.Name]
	if !ok {
		return nil, fmt.Errorf("aggregate type %q is not registered", typ.Name)
	}
	h, ok := r.(*Handler[S, C, E])
	if !ok {
		return nil, fmt.Errorf("aggregate type %q is registered with other state, command or event types", typ.Name)
	}
	return h, nil
}
