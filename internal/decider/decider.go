// Package decider holds what every domain's decider shares: refusals that
// say which rule a command broke (with a kind the platform maps to an
// answer, a stable code and a detail), decoding events by type, and
// folding a stream into a state. It is pure: no I/O, no infrastructure.
package decider

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Kinds of refusal. Every *RuleError wraps one of them; the platform maps
// them to answers (HTTP: 400, 422, 404 and 409).
var (
	// ErrInvalidCommand: the command itself is malformed (a field missing or
	// out of range).
	ErrInvalidCommand = errors.New("invalid command")
	// ErrRuleViolated: the command is well formed but the aggregate's state
	// forbids it.
	ErrRuleViolated = errors.New("business rule violated")
	// ErrNotFound: the command addresses an aggregate that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a command that creates an aggregate names one that
	// exists.
	ErrAlreadyExists = errors.New("already exists")
)

// RuleError says which rule a command broke and why.
type RuleError struct {
	// Kind is ErrInvalidCommand, ErrRuleViolated, ErrNotFound or
	// ErrAlreadyExists.
	Kind error
	// Code is stable and machine-readable, e.g. "insufficient-funds".
	Code string
	// Detail explains the refusal to a human.
	Detail string
}

func (e *RuleError) Error() string { return e.Detail }

// Unwrap lets errors.Is match the kind.
func (e *RuleError) Unwrap() error { return e.Kind }

// Invalid refuses a malformed command.
func Invalid(code, format string, args ...any) error {
	return &RuleError{Kind: ErrInvalidCommand, Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Violated refuses a command the state forbids.
func Violated(code, format string, args ...any) error {
	return &RuleError{Kind: ErrRuleViolated, Code: code, Detail: fmt.Sprintf(format, args...)}
}

// NotFound refuses a command addressed to an aggregate that does not exist.
func NotFound(code, format string, args ...any) error {
	return &RuleError{Kind: ErrNotFound, Code: code, Detail: fmt.Sprintf(format, args...)}
}

// AlreadyExists refuses a command creating an aggregate that exists.
func AlreadyExists(code, format string, args ...any) error {
	return &RuleError{Kind: ErrAlreadyExists, Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Aggregate describes one aggregate type by its pure functions: what a
// domain hands the platform (package aggregate runs its commands). S must
// be a value that Evolve never changes in place (copy slices and maps it
// updates): the platform keeps states in memory between commands.
type Aggregate[S, C, E any] struct {
	// Name is the aggregate type in the event log, e.g. "account".
	Name string
	// Initial returns the state of an aggregate that has no events.
	Initial func(id string) S
	// Decide turns a command into events, or an error saying why not.
	Decide func(state S, command C) ([]E, error)
	// Evolve folds one event into the state. It never fails.
	Evolve func(state S, event E) S
	// DecodeEvent decodes a payload already upcast to the current schema
	// version.
	DecodeEvent func(eventType string, payload []byte) (E, error)
	// StateSchemaVersion is the version of S's JSON shape in snapshots. A
	// snapshot of any other version is ignored.
	StateSchemaVersion int
	// Creates, if set, tells the commands that start a new aggregate (open
	// an account, request a transfer). The platform decides such a command
	// on the initial state without reading the store first, unless it holds
	// the aggregate in memory; the append, which expects version 0, settles
	// whether the aggregate was new after all. If it was not, nothing is
	// written: the aggregate is read and the command decided again on its
	// state, as if it had been read first. Nil: every command reads first.
	Creates func(command C) bool
}

// Typed is what an event tells about its type.
type Typed interface{ EventType() string }

// Decode decodes a JSON payload of event type T, returned as the domain's
// event interface E (which T must implement): a domain's DecodeEvent
// switches on the type name and calls Decode for each.
func Decode[T Typed, E any](payload []byte) (E, error) {
	var t T
	var zero E
	if err := json.Unmarshal(payload, &t); err != nil {
		return zero, fmt.Errorf("decode %s: %w", t.EventType(), err)
	}
	e, ok := any(t).(E)
	if !ok {
		return zero, fmt.Errorf("decode %s: %T does not implement the domain's event interface", t.EventType(), t)
	}
	return e, nil
}

// Fold replays events over initial with evolve.
func Fold[S, E any](initial S, evolve func(S, E) S, events []E) S {
	s := initial
	for _, e := range events {
		s = evolve(s, e)
	}
	return s
}
