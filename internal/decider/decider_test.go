package decider_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/decider"
)

type event interface{ EventType() string }

type added struct {
	N int `json:"n"`
}

func (added) EventType() string { return "Added" }

type notAnEvent struct{}

func (notAnEvent) EventType() string { return "NotAnEvent" }

type counterEvent interface {
	event
	counter()
}

func (added) counter() {}

func TestRefusalsWrapTheirKind(t *testing.T) {
	for _, tt := range []struct {
		err  error
		kind error
	}{
		{decider.Invalid("missing-n", "n is %s", "required"), decider.ErrInvalidCommand},
		{decider.Violated("too-big", "n exceeds %d", 3), decider.ErrRuleViolated},
		{decider.NotFound("counter-not-found", "no counter %s", "c1"), decider.ErrNotFound},
		{decider.AlreadyExists("already-open", "counter %s exists", "c1"), decider.ErrAlreadyExists},
	} {
		var rule *decider.RuleError
		if !errors.As(tt.err, &rule) || !errors.Is(tt.err, tt.kind) {
			t.Fatalf("%v: not a RuleError of kind %v", tt.err, tt.kind)
		}
		if rule.Code == "" || rule.Detail == "" || rule.Error() != rule.Detail {
			t.Errorf("%+v: code and detail must be set, Error() the detail", rule)
		}
		for _, other := range []error{decider.ErrInvalidCommand, decider.ErrRuleViolated, decider.ErrNotFound, decider.ErrAlreadyExists} {
			if other != tt.kind && errors.Is(tt.err, other) {
				t.Errorf("%v also matches %v", tt.err, other)
			}
		}
	}
	if got := decider.Invalid("x", "n is %d", 7).Error(); got != "n is 7" {
		t.Errorf("detail %q, want the formatted message", got)
	}
}

func TestDecode(t *testing.T) {
	e, err := decider.Decode[added, counterEvent]([]byte(`{"n":3}`))
	if err != nil || e.(added).N != 3 {
		t.Fatalf("decode: %v, %+v", err, e)
	}
	if _, err := decider.Decode[added, counterEvent]([]byte(`{"n":"three"}`)); err == nil || !strings.Contains(err.Error(), "decode Added") {
		t.Errorf("a malformed payload: %v, want an error naming the event type", err)
	}
	if _, err := decider.Decode[notAnEvent, counterEvent]([]byte(`{}`)); err == nil {
		t.Error("a type that is not one of the domain's events was decoded as one")
	}
}

func TestFold(t *testing.T) {
	sum := decider.Fold(10, func(s int, e added) int { return s + e.N }, []added{{1}, {2}, {3}})
	if sum != 16 {
		t.Errorf("fold: %d, want 16", sum)
	}
	if got := decider.Fold(10, func(s int, e added) int { return s + e.N }, nil); got != 10 {
		t.Errorf("fold of no events: %d, want the initial state", got)
	}
}
