package log

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// addField returns a step that adds one JSON field to an object payload.
func addField(name, value string) UpcastFunc {
	return func(payload json.RawMessage) (json.RawMessage, error) {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(payload, &fields); err != nil {
			return nil, err
		}
		if fields == nil {
			return nil, errors.New("payload is not an object")
		}
		fields[name] = json.RawMessage(value)
		return json.Marshal(fields)
	}
}

func testEvent(eventType string, schemaVersion int, payload string) Event {
	return Event{
		ID:            uuid.MustParse("0190b0d2-7c4e-7a55-9a1e-2f4d8f1c3b6a"),
		AggregateType: "widget",
		AggregateID:   "w-1",
		Version:       4,
		Type:          eventType,
		SchemaVersion: schemaVersion,
		Payload:       json.RawMessage(payload),
	}
}

// chain lifts widget/Made v1 to v3 in two steps and widget/Sold v1 to v2.
func chain() *Upcasters {
	return NewUpcasters().
		Register("widget", "Made", 1, addField("colour", `"grey"`)).
		Register("widget", "Made", 2, addField("size", `1`)).
		Register("widget", "Sold", 1, addField("channel", `"shop"`))
}

func TestUpcast(t *testing.T) {
	tests := []struct {
		name        string
		given       Event
		wantVersion int
		wantPayload string
	}{
		{
			name:        "v1 goes through both steps to v3",
			given:       testEvent("Made", 1, `{"name":"gear"}`),
			wantVersion: 3,
			wantPayload: `{"colour":"grey","name":"gear","size":1}`,
		},
		{
			name:        "v2 goes through the last step only",
			given:       testEvent("Made", 2, `{"name":"gear","colour":"red"}`),
			wantVersion: 3,
			wantPayload: `{"colour":"red","name":"gear","size":1}`,
		},
		{
			name:        "newest version is unchanged",
			given:       testEvent("Made", 3, `{"name":"gear","colour":"red","size":2}`),
			wantVersion: 3,
			wantPayload: `{"name":"gear","colour":"red","size":2}`,
		},
		{
			name:        "another event type has its own chain",
			given:       testEvent("Sold", 1, `{"price":5}`),
			wantVersion: 2,
			wantPayload: `{"channel":"shop","price":5}`,
		},
		{
			name:        "unregistered event type passes through",
			given:       testEvent("Scrapped", 1, `{"why":"rust"}`),
			wantVersion: 1,
			wantPayload: `{"why":"rust"}`,
		},
		{
			name: "same event type of another aggregate passes through",
			given: func() Event {
				e := testEvent("Made", 1, `{"name":"gear"}`)
				e.AggregateType = "gadget"
				return e
			}(),
			wantVersion: 1,
			wantPayload: `{"name":"gear"}`,
		},
	}
	u := chain()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := u.Upcast(tt.given)
			if err != nil {
				t.Fatalf("Upcast: %v", err)
			}
			if got.SchemaVersion != tt.wantVersion {
				t.Errorf("SchemaVersion = %d, want %d", got.SchemaVersion, tt.wantVersion)
			}
			if string(got.Payload) != tt.wantPayload {
				t.Errorf("Payload = %s, want %s", got.Payload, tt.wantPayload)
			}
			// Everything but the payload and its version is the envelope and stays.
			want := tt.given
			want.SchemaVersion, want.Payload = got.SchemaVersion, got.Payload
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Upcast changed the envelope: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestUpcastStepsRunInOrder(t *testing.T) {
	var calls []int
	step := func(from int) UpcastFunc {
		return func(p json.RawMessage) (json.RawMessage, error) {
			calls = append(calls, from)
			return json.RawMessage(fmt.Sprintf(`{"v":%d}`, from+1)), nil
		}
	}
	u := NewUpcasters().
		Register("widget", "Made", 2, step(2)).
		Register("widget", "Made", 1, step(1)).
		Register("widget", "Made", 3, step(3))
	got, err := u.Upcast(testEvent("Made", 1, `{"v":1}`))
	if err != nil {
		t.Fatalf("Upcast: %v", err)
	}
	if fmt.Sprint(calls) != "[1 2 3]" {
		t.Errorf("steps ran as %v, want [1 2 3]", calls)
	}
	if got.SchemaVersion != 4 || string(got.Payload) != `{"v":4}` {
		t.Errorf("got v%d %s, want v4 {\"v\":4}", got.SchemaVersion, got.Payload)
	}
}

func TestUpcastFailingStep(t *testing.T) {
	errBoom := errors.New("boom")
	u := NewUpcasters().
		Register("widget", "Made", 1, addField("colour", `"grey"`)).
		Register("widget", "Made", 2, func(json.RawMessage) (json.RawMessage, error) { return nil, errBoom })
	given := testEvent("Made", 1, `{"name":"gear"}`)

	_, err := u.Upcast(given)
	if err == nil {
		t.Fatal("Upcast succeeded, want the failing step's error")
	}
	if !errors.Is(err, errBoom) {
		t.Errorf("error %v does not wrap the step's error", err)
	}
	for _, want := range []string{"widget/Made", "v2", given.ID.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestUpcastFirstStepFailsOnBadPayload(t *testing.T) {
	_, err := chain().Upcast(testEvent("Made", 1, `[1]`))
	if err == nil {
		t.Fatal("Upcast of a non-object payload succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "widget/Made v1") {
		t.Errorf("error %q does not name widget/Made v1", err)
	}
}

func TestUpcastNilUpcasters(t *testing.T) {
	var u *Upcasters
	given := testEvent("Made", 1, `{"name":"gear"}`)
	got, err := u.Upcast(given)
	if err != nil {
		t.Fatalf("nil Upcasters: Upcast: %v", err)
	}
	if !reflect.DeepEqual(got, given) {
		t.Errorf("nil Upcasters changed the event: got %+v, want %+v", got, given)
	}
}

func TestUpcastEmptyUpcasters(t *testing.T) {
	given := testEvent("Made", 1, `{"name":"gear"}`)
	got, err := NewUpcasters().Upcast(given)
	if err != nil {
		t.Fatalf("Upcast: %v", err)
	}
	if !reflect.DeepEqual(got, given) {
		t.Errorf("empty Upcasters changed the event: got %+v, want %+v", got, given)
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	u := NewUpcasters().Register("widget", "Made", 1, addField("a", `1`))
	// The same type and version under another aggregate is not a duplicate.
	u.Register("gadget", "Made", 1, addField("a", `1`))

	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("registering widget/Made v1 twice did not panic")
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, "widget/Made v1") {
			t.Errorf("panic %q does not name widget/Made v1", msg)
		}
	}()
	u.Register("widget", "Made", 1, addField("b", `2`))
}
