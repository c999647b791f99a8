package transfer

import (
	"github.com/tributary-es/tributary/internal/decider"

	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	requested := TransferRequested{From: "a", To: "b", Amount: 500, Currency: "EUR", Reference: "rent"}
	tests := []struct {
		name  string
		given []Event
		when  Command
		then  []Event
		code  string
		kind  error
	}{
		{"request", nil, RequestTransfer{From: "a", To: "b", Amount: 500, Currency: "EUR", Reference: "rent"}, []Event{requested}, "", nil},
		{"request twice", []Event{requested}, RequestTransfer{From: "a", To: "b", Amount: 500, Currency: "EUR", Reference: "rent"}, nil, "already-requested", decider.ErrAlreadyExists},
		{"to itself", nil, RequestTransfer{From: "a", To: "a", Amount: 1, Currency: "EUR", Reference: "x"}, nil, "same-account", decider.ErrInvalidCommand},
		{"zero amount", nil, RequestTransfer{From: "a", To: "b", Amount: 0, Currency: "EUR", Reference: "x"}, nil, "invalid-amount", decider.ErrInvalidCommand},
		{"negative amount", nil, RequestTransfer{From: "a", To: "b", Amount: -5, Currency: "EUR", Reference: "x"}, nil, "invalid-amount", decider.ErrInvalidCommand},
		{"bad currency", nil, RequestTransfer{From: "a", To: "b", Amount: 5, Currency: "eur", Reference: "x"}, nil, "invalid-currency", decider.ErrInvalidCommand},
		{"hostile from", nil, RequestTransfer{From: "../a", To: "b", Amount: 5, Currency: "EUR", Reference: "x"}, nil, "invalid-from", decider.ErrInvalidCommand},
		{"empty to", nil, RequestTransfer{From: "a", To: "", Amount: 5, Currency: "EUR", Reference: "x"}, nil, "invalid-to", decider.ErrInvalidCommand},
		{"no reference", nil, RequestTransfer{From: "a", To: "b", Amount: 5, Currency: "EUR", Reference: " "}, nil, "missing-reference", decider.ErrInvalidCommand},
		{"long reference", nil, RequestTransfer{From: "a", To: "b", Amount: 5, Currency: "EUR", Reference: strings.Repeat("r", 201)}, nil, "invalid-reference", decider.ErrInvalidCommand},
		{"complete", []Event{requested}, CompleteTransfer{}, []Event{TransferCompleted{}}, "", nil},
		{"complete unknown", nil, CompleteTransfer{}, nil, "transfer-not-found", decider.ErrNotFound},
		{"complete twice", []Event{requested, TransferCompleted{}}, CompleteTransfer{}, nil, "not-in-progress", decider.ErrRuleViolated},
		{"fail", []Event{requested}, FailTransfer{Reason: "target closed", Refunded: true}, []Event{TransferFailed{Reason: "target closed", Refunded: true}}, "", nil},
		{"fail without reason", []Event{requested}, FailTransfer{}, nil, "missing-reason", decider.ErrInvalidCommand},
		{"fail after completion", []Event{requested, TransferCompleted{}}, FailTransfer{Reason: "late"}, nil, "not-in-progress", decider.ErrRuleViolated},
		{"complete after failure", []Event{requested, TransferFailed{Reason: "no funds"}}, CompleteTransfer{}, nil, "not-in-progress", decider.ErrRuleViolated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decide(Fold("t1", tc.given), tc.when)
			if tc.kind != nil {
				var re *decider.RuleError
				if !errors.As(err, &re) || re.Code != tc.code || !errors.Is(err, tc.kind) || got != nil {
					t.Fatalf("got %v, %v; want a %v error with code %s", got, err, tc.kind, tc.code)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.then) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.then)
			}
		})
	}
}

func TestEvolveAndDecodeRoundTrip(t *testing.T) {
	events := []Event{
		TransferRequested{From: "a", To: "b", Amount: 5, Currency: "EUR", Reference: "r"},
		TransferFailed{Reason: "target closed", Refunded: true},
	}
	var decoded []Event
	for _, e := range events {
		payload, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeEvent(e.EventType(), payload)
		if err != nil {
			t.Fatal(err)
		}
		decoded = append(decoded, d)
	}
	s := Fold("t1", decoded)
	want := State{ID: "t1", From: "a", To: "b", Amount: 5, Currency: "EUR", Reference: "r", Status: StatusFailed, Reason: "target closed"}
	if s != want {
		t.Fatalf("state %+v, want %+v", s, want)
	}
	if _, err := DecodeEvent("TransferExploded", []byte(`{}`)); err == nil {
		t.Fatal("an unknown event type decoded")
	}
}
