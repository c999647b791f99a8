package writer

import (
	"slices"
	"testing"
)

func TestForEachMemberNameSeesOnlyTheOuterObjectsNames(t *testing.T) {
	tests := []struct {
		body string
		want []string
	}{
		{`{}`, nil},
		{` { "a" : 1 , "b":"x" } `, []string{"a", "b"}},
		{`{"a":{"inner":1,"deep":{"x":[1,{"y":2}]}},"b":[{"z":1},"w"],"c":null}`, []string{"a", "b", "c"}},
		{`{"a":"a string with {braces}, [brackets], a \"quoted\" \"key\": and commas,","b":1}`, []string{"a", "b"}},
		{`{"a\"b":1,"back\\":2,"c":"\\"}`, []string{`a\"b`, `back\\`, "c"}},
		{`{"a":[],"b":{},"c":[[]]}`, []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		var got []string
		forEachMemberName([]byte(tt.body), func(name []byte) bool {
			got = append(got, string(name))
			return true
		})
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: names %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestExactMemberNames(t *testing.T) {
	type command struct {
		Amount   int64  `json:"amount"`
		Source   string `json:"source,omitempty"`
		Internal string `json:"-"`
		Plain    string
		hidden   string
	}
	_ = command{}.hidden
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"amount":1,"source":"x","Plain":"p"}`, true},
		{`{"sour\u0063e":"escaped, still the name"}`, true},
		{`{"Amount":1}`, false},
		{`{"\u0041mount":1}`, false},
		{`{"amount":1,"extra":{"amount":1}}`, false},
		{`{"-":1}`, false},
		{`{"Internal":"x"}`, false},
		{`{"hidden":"x"}`, false},
		{`{"plain":"x"}`, false},
	}
	for _, tt := range tests {
		if p := exactMemberNames([]byte(tt.body), &command{}); (p == nil) != tt.ok {
			t.Errorf("%s: problem %v, want ok %v", tt.body, p, tt.ok)
		}
	}
}
