package account_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/domain/account"
)

func TestDecodeEventRoundTrip(t *testing.T) {
	events := []Event{
		account.AccountOpened{Owner: "Ada Lovelace", Currency: "EUR"},
		account.AccountOpened{Owner: "北斎 \"quoted\" <tag>", Currency: "JPY"},
		account.AccountActivated{},
		account.FundsDeposited{Amount: 100_000_000, Currency: "EUR", Source: "initial-deposit"},
		account.FundsWithdrawn{Amount: 1, Currency: "USD", Reason: "fee"},
		account.AccountClosed{Reason: "moving abroad"},
		account.AccountClosed{},
	}
	for _, want := range events {
		t.Run(fmt.Sprintf("%s %+v", want.EventType(), want), func(t *testing.T) {
			payload, err := json.Marshal(want)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			got, err := account.DecodeEvent(want.EventType(), payload)
			if err != nil {
				t.Fatalf("DecodeEvent(%q, %s): %v", want.EventType(), payload, err)
			}
			if got != want {
				t.Fatalf("DecodeEvent(%q, %s) = %#v, want %#v", want.EventType(), payload, got, want)
			}
		})
	}
}

func TestDecodeEventRejects(t *testing.T) {
	tests := []struct {
		name      string
		eventType string
		payload   string
		wantInErr string
	}{
		{"unknown type", "AccountFrozen", `{}`, `"AccountFrozen"`},
		{"type with wrong case", "fundsdeposited", `{"amount":1,"currency":"EUR","source":"x"}`, `"fundsdeposited"`},
		{"empty type", "", `{}`, `""`},
		{"malformed JSON", "AccountOpened", `{"owner":`, "AccountOpened"},
		{"amount of the wrong type", "FundsDeposited", `{"amount":"100","currency":"EUR","source":"x"}`, "FundsDeposited"},
		{"array instead of object", "FundsWithdrawn", `[1,2]`, "FundsWithdrawn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := account.DecodeEvent(tt.eventType, []byte(tt.payload))
			if err == nil {
				t.Fatalf("DecodeEvent(%q, %s) = %#v, want an error", tt.eventType, tt.payload, got)
			}
			if got != nil {
				t.Errorf("DecodeEvent returned event %#v with error %v", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %s", err, tt.wantInErr)
			}
		})
	}
}

func TestUpcastFundsDepositedV1(t *testing.T) {
	tests := []struct {
		name string
		v1   string
		want account.FundsDeposited
	}{
		{
			name: "v1 payload reads as source unknown",
			v1:   `{"amount":1250,"currency":"EUR"}`,
			want: account.FundsDeposited{Amount: 1250, Currency: "EUR", Source: "unknown"},
		},
		{
			name: "large amount is kept exactly",
			v1:   `{"currency":"JPY","amount":9007199254740993}`,
			want: account.FundsDeposited{Amount: 9007199254740993, Currency: "JPY", Source: "unknown"},
		},
		{
			name: "existing source is left alone",
			v1:   `{"amount":1250,"currency":"EUR","source":"atm"}`,
			want: account.FundsDeposited{Amount: 1250, Currency: "EUR", Source: "atm"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := account.UpcastFundsDepositedV1(json.RawMessage(tt.v1))
			if err != nil {
				t.Fatalf("UpcastFundsDepositedV1(%s): %v", tt.v1, err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(out, &fields); err != nil {
				t.Fatalf("upcast payload %s is not a JSON object: %v", out, err)
			}
			if len(fields) != 3 {
				t.Errorf("upcast payload %s has %d fields, want amount, currency and source", out, len(fields))
			}
			got, err := account.DecodeEvent("FundsDeposited", out)
			if err != nil {
				t.Fatalf("DecodeEvent(upcast payload %s): %v", out, err)
			}
			if got != tt.want {
				t.Fatalf("upcast %s decodes to %#v, want %#v", tt.v1, got, tt.want)
			}
		})
	}
}

func TestUpcastFundsDepositedV1RejectsNonObjects(t *testing.T) {
	for _, payload := range []string{`[1,2]`, `"text"`, `42`, `true`, `{"amount":`, ``} {
		t.Run(payload, func(t *testing.T) {
			out, err := upcastRecovering(json.RawMessage(payload))
			if err == nil {
				t.Fatalf("UpcastFundsDepositedV1(%s) = %s, want an error", payload, out)
			}
			if !strings.Contains(err.Error(), "FundsDeposited v1") {
				t.Errorf("error %q does not name FundsDeposited v1", err)
			}
		})
	}
}

// TestUpcastFundsDepositedV1RejectsJSONNull: `null` is valid JSON but not an
// object; json.Unmarshal leaves the map nil without an error, so the
// upcaster must still refuse it rather than write into a nil map.
func TestUpcastFundsDepositedV1RejectsJSONNull(t *testing.T) {
	out, err := upcastRecovering(json.RawMessage(`null`))
	if err == nil {
		t.Fatalf("UpcastFundsDepositedV1(null) = %s, want an error", out)
	}
	if strings.HasPrefix(err.Error(), "panic: ") {
		t.Fatalf("UpcastFundsDepositedV1(null) panicked instead of returning an error: %v", err)
	}
}

// upcastRecovering calls UpcastFundsDepositedV1 and turns a panic into an
// error, so that one bad input fails its own test instead of the whole binary.
func upcastRecovering(payload json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return account.UpcastFundsDepositedV1(payload)
}

func FuzzDecodeEvent(f *testing.F) {
	for _, seed := range []struct{ typ, payload string }{
		{"AccountOpened", `{"owner":"Ada","currency":"EUR"}`},
		{"AccountActivated", `{}`},
		{"FundsDeposited", `{"amount":1,"currency":"EUR","source":"x"}`},
		{"FundsWithdrawn", `{"amount":1,"currency":"EUR","reason":"y"}`},
		{"AccountClosed", `{"reason":"z"}`},
		{"AccountClosed", `null`},
		{"Nope", `{}`},
	} {
		f.Add(seed.typ, []byte(seed.payload))
	}
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		e, err := account.DecodeEvent(typ, payload)
		if err != nil {
			return
		}
		if e.EventType() != typ {
			t.Fatalf("DecodeEvent(%q) returned a %s", typ, e.EventType())
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("json.Marshal(%#v): %v", e, err)
		}
		e2, err := account.DecodeEvent(typ, again)
		if err != nil {
			t.Fatalf("DecodeEvent of re-encoded %s: %v", again, err)
		}
		if e2 != e {
			t.Fatalf("round trip changed %#v into %#v", e, e2)
		}
	})
}
