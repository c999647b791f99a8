package writer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// problemCode is the last segment of a problem's type, "" for none.
func problemCode(t *testing.T, body string) string {
	t.Helper()
	p := strictJSON([]byte(body))
	if p == nil {
		return ""
	}
	if p.Status != http.StatusBadRequest || p.Title == "" || p.Detail == "" {
		t.Errorf("%q: problem %+v, want a 400 with title and detail", body, p)
	}
	return strings.TrimPrefix(p.Type, "https://tributary.dev/problems/")
}

func TestStrictJSON(t *testing.T) {
	const (
		ok        = ""
		dup       = "duplicate-member"
		badUTF8   = "invalid-utf8"
		surrogate = "invalid-unicode-escape"
	)
	tests := []struct {
		name, body, want string
	}{
		{"a command", `{"amount":100,"currency":"EUR","source":"x"}`, ok},
		{"empty object", `{}`, ok},
		{"spaces everywhere", " { \"a\" : 1 ,\n\t\"b\" : [ 1 , { } ] } ", ok},
		{"not an object", `[1,"a",null,true]`, ok},

		// Duplicate member names.
		{"duplicate", `{"amount":1,"amount":999999}`, dup},
		{"duplicate of another type", `{"amount":1,"currency":"EUR","amount":"1"}`, dup},
		{"escaped duplicate", `{"amount":1,"\u0061mount":2}`, dup},
		{"upper-case hex escape duplicate", `{"\u00E9":1,"\u00e9":2}`, dup},
		{"escaped and raw multibyte", `{"é":1,"\u00e9":2}`, dup},
		{"surrogate pair and raw", `{"😀":1,"\ud83d\ude00":2}`, dup},
		{"short escapes", `{"a\"\\\/\b\f\n\r\t":1,"a\u0022\u005c/\u0008\u000c\u000a\u000d\u0009":2}`, dup},
		{"empty names", `{"":1,"":2}`, dup},
		{"nested duplicate", `{"a":{"x":1,"y":{"z":1,"z":2}}}`, dup},
		{"duplicate in an array's object", `{"a":[{"k":1},{"k":1,"k":2}]}`, dup},
		{"duplicate in a top-level array", `[{"k":1,"k":2}]`, dup},
		{"duplicate after a nested object", `{"a":{"b":1},"c":2,"a":3}`, dup},
		{"duplicate of a member with an array value", `{"a":[1,{"a":1}],"a":2}`, dup},
		{"duplicate in a big object", bigObject(100, "m42"), dup},
		{"duplicate at the edge of the linear scan", bigObject(linearNames, "m0"), dup},
		{"duplicate just past the linear scan", bigObject(linearNames+1, "m0"), dup},
		{"duplicate in the second object", `{"a":1}{"a":1,"a":2}`, dup},

		// Near misses: no duplicate.
		{"same name in two nested objects", `{"a":{"k":1},"b":{"k":2},"k":3}`, ok},
		{"same name at two depths", `{"k":{"k":{"k":1}}}`, ok},
		{"same name in array elements", `{"a":[{"k":1},{"k":2}]}`, ok},
		{"names that differ in case", `{"amount":1,"Amount":2}`, ok},
		{"names that differ after unescaping", `{"a\u0062":1,"ac":2}`, ok},
		{"escaped backslash then u", `{"\\u0061":1,"a":2}`, ok},
		{"names as values", `{"a":"a","b":"a","c":["a","a"]}`, ok},
		{"value equal to a later name", `{"x":"y","y":1}`, ok},
		{"braces and commas in strings", `{"a":"{\"a\":1,","b":"}],[{"}`, ok},
		{"distinct names in a big object", bigObject(100, ""), ok},
		{"many small objects", "[" + strings.Repeat(`{"a":1,"b":2},`, 50) + `{"a":1}]`, ok},
		{"NFC and NFD spellings are different names", "{\"\u00e9\":1,\"e\u0301\":2}", ok},
		{"two objects, each without duplicates", `{"a":1}{"a":1}`, ok},

		// UTF-8.
		{"raw multibyte", `{"owner":"Zoë Ångström 日本 😀"}`, ok},
		{"raw multibyte name", `{"é":1,"e":2}`, ok},
		{"Latin-1 byte in a value", "{\"owner\":\"caf\xe9\"}", badUTF8},
		{"invalid byte in a name", "{\"\xff\":1}", badUTF8},
		{"invalid byte outside strings", "{\"a\":1}\xff", badUTF8},
		{"truncated sequence", "{\"a\":\"\xe2\x82\"}", badUTF8},
		{"overlong encoding", "{\"a\":\"\xc0\xaf\"}", badUTF8},
		{"encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", badUTF8},
		{"beyond U+10FFFF", "{\"a\":\"\xf4\x90\x80\x80\"}", badUTF8},
		{"lone continuation byte", "{\"a\":\"\x80\"}", badUTF8},
		{"U+FFFD itself", "{\"a\":\"\xef\xbf\xbd\\ufffd\"}", ok},

		// Lone surrogates.
		{"valid surrogate pair", `{"a":"\ud83d\ude00"}`, ok},
		{"valid surrogate pair, upper case", `{"a":"\uD83D\uDE00"}`, ok},
		{"highest pair", `{"a":"\udbff\udfff"}`, ok},
		{"non-surrogate escapes", `{"a":"\u0000\u00e9\ud7ff\ue000\uffff"}`, ok},
		{"lone high", `{"a":"\ud800"}`, surrogate},
		{"lone high, upper case", `{"a":"\uD800"}`, surrogate},
		{"lone high then text", `{"a":"\ud83dx"}`, surrogate},
		{"lone high then a short escape", `{"a":"\ud83d\n"}`, surrogate},
		{"two high", `{"a":"\ud83d\ud83d"}`, surrogate},
		{"high then non-surrogate escape", `{"a":"\ud83d\u0041"}`, surrogate},
		{"high then raw low", "{\"a\":\"\\ud83d\xed\xb8\x80\"}", surrogate},
		{"lone low", `{"a":"\ude00"}`, surrogate},
		{"low then high", `{"a":"\ude00\ud83d"}`, surrogate},
		{"pair then lone low", `{"a":"\ud83d\ude00\ude00"}`, surrogate},
		{"lone high at the end of a string", `{"a":"x\udbff"}`, surrogate},
		{"lone surrogate in a name", `{"\ud800":1}`, surrogate},
		{"lone surrogate in an array", `[1,"\udfff"]`, surrogate},
		{"escaped backslash before u", `{"a":"\\ud800"}`, ok},

		// The first problem in the body is the one reported.
		{"duplicate before bad UTF-8", "{\"a\":1,\"a\":\"\xff\"}", dup},
		{"bad UTF-8 before duplicate", "{\"a\":\"\xff\",\"a\":1}", badUTF8},
		{"lone surrogate before duplicate", `{"a":"\ud800","a":1}`, surrogate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := problemCode(t, tt.body); got != tt.want {
				t.Errorf("%q: problem %q, want %q", tt.body, got, tt.want)
			}
			// What is accepted is valid JSON here, and must decode exactly:
			// encoding/json would have replaced what strictJSON refuses.
			if tt.want == ok && json.Valid([]byte(tt.body)) && !utf8.ValidString(tt.body) {
				t.Errorf("%q accepted but not UTF-8", tt.body)
			}
		})
	}
}

// bigObject is an object of n members m0, m1, ..., with a member named
// again at the end when again is not "".
func bigObject(n int, again string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		b.WriteString(`"m` + strconv.Itoa(i) + `":{"x":1},`)
	}
	if again != "" {
		b.WriteString(`"` + again + `":2,`)
	}
	b.WriteString(`"last":0}`)
	return b.String()
}

// The problems name what is wrong and where.
func TestStrictJSONDetails(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"amount":1,"amount":999999}`, `"amount"`},
		{`{"amount":1,"amount":999999}`, "offset 12"},
		{`{"amount":1,"\u0061mount":999999}`, `"amount"`},
		{`{"` + strings.Repeat("n", 200) + `":1,"` + strings.Repeat("n", 200) + `":2}`, `"` + strings.Repeat("n", 64) + `..."`},
		{"{\"a\":\"caf\xe9\"}", "byte 0xe9 at offset 9"},
		{`{"a":"\ud800"}`, `\ud800 at offset 6`},
		{`{"a":"\ud800"}`, "high surrogate"},
		{`{"a":"\ude00"}`, "low surrogate"},
	}
	for _, tt := range tests {
		p := strictJSON([]byte(tt.body))
		if p == nil || !strings.Contains(p.Detail, tt.want) {
			t.Errorf("%q: problem %+v, want a detail with %q", tt.body, p, tt.want)
		}
	}
}

// A body that is not valid JSON keeps its malformed-json problem whatever
// else is wrong with it; one that is gets the strict problem before any
// other (wrong-type, unknown members), and dst is left untouched.
func TestReadJSONRefusesStrictProblemsBeforeDecoding(t *testing.T) {
	type deposit struct {
		Amount   int64  `json:"amount"`
		Currency string `json:"currency"`
		Source   string `json:"source"`
	}
	tests := []struct{ body, want string }{
		{`{"amount":1,"amount":999999,"currency":"EUR","source":"x"}`, "duplicate-member"},
		{"{\"amount\":1,\"currency\":\"EUR\",\"source\":\"caf\xe9\"}", "invalid-utf8"},
		{`{"amount":1,"currency":"EUR","source":"\ud800"}`, "invalid-unicode-escape"},
		{`{"amount":"1","amount":2}`, "duplicate-member"},
		{`{"extra":1,"extra":2}`, "duplicate-member"},
		{`[{"a":1,"a":2}]`, "duplicate-member"},
		// Not valid JSON: malformed-json, as before.
		{`{"amount":1,"amount":2`, "malformed-json"},
		{`{"amount":1,"amount":2}x`, "malformed-json"},
		{"{\"amount\":1}\xff", "malformed-json"},
		{"\xff", "malformed-json"},
		{`{"source":"\ud800","amount":}`, "malformed-json"},
		{`{"source":"\ud800\u12"}`, "malformed-json"},
		// Valid and strict: the checks that come after.
		{`{"amount":1,"currency":"EUR","source":"\ud83d\ude00 é"}`, ""},
		{`{"amount":1,"Amount":2}`, "malformed-json"},
		{`{"amount":"1"}`, "wrong-type"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodPost, "/v1/counters/c1/increments", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", "application/json")
		dst := deposit{Source: "untouched"}
		_, p := readJSON(req, 1<<16, false, &dst)
		got := ""
		if p != nil {
			got = strings.TrimPrefix(p.Type, "https://tributary.dev/problems/")
		}
		if got != tt.want {
			t.Errorf("%q: problem %q (%v), want %q", tt.body, got, p, tt.want)
		}
		if strings.HasPrefix(tt.want, "duplicate") || strings.HasPrefix(tt.want, "invalid") {
			if dst != (deposit{Source: "untouched"}) {
				t.Errorf("%q: decoded %+v before refusing", tt.body, dst)
			}
		}
	}
	// The other checks still come first.
	for _, tt := range []struct{ contentType, body, want string }{
		{"text/plain", `{"a":1,"a":2}`, "unsupported-media-type"},
		{"application/json", " \n ", "empty-body"},
		{"application/json", `{"a":"` + strings.Repeat("\xff", 1<<16) + `"}`, "body-too-large"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", tt.contentType)
		_, p := readJSON(req, 1<<16, false, &deposit{})
		if p == nil || p.Type != "https://tributary.dev/problems/"+tt.want {
			t.Errorf("%s %.20q: problem %v, want %s", tt.contentType, tt.body, p, tt.want)
		}
	}
}

func TestAppendUnescaped(t *testing.T) {
	for _, raw := range []string{
		``, `plain`, `é😀`, `\"\\\/\b\f\n\r\t`, `\u0041\u00e9\u20ac\ud83d\ude00\uD83D\uDE00`, `a\u0000b`, `\u005c\u0022`,
	} {
		var want string
		if err := json.Unmarshal([]byte(`"`+raw+`"`), &want); err != nil {
			t.Fatal(err)
		}
		if got := appendUnescaped(nil, []byte(raw)); string(got) != want {
			t.Errorf("%q: %q, want %q", raw, got, want)
		}
	}
}

// A command's body is checked without allocating.
func TestStrictJSONDoesNotAllocate(t *testing.T) {
	bodies := []string{
		`{"amount":100,"currency":"EUR","source":"salary"}`,
		`{"id":"t1","from":"a1","to":"a2","amount":5,"currency":"EUR","reference":"r\u00e9f \ud83d\ude00"}`,
		`{"a":{"b":[1,{"c":2}]},"d":"é"}`,
	}
	for _, body := range bodies {
		b := []byte(body)
		if n := testing.AllocsPerRun(100, func() { _ = strictJSON(b) }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", body, n)
		}
	}
}

func BenchmarkStrictJSON(b *testing.B) {
	body := []byte(`{"id":"t1","from":"a1","to":"a2","amount":5,"currency":"EUR","reference":"invoice 2024-17"}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if strictJSON(body) != nil {
			b.Fatal("refused")
		}
	}
}

// strictJSON never panics, and on valid JSON agrees with a slow reference
// built on encoding/json's tokenizer.
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{
		`{"amount":1,"amount":2}`, `{"a":{"k":1},"b":{"k":2}}`, `{"\u0061":1,"a":2}`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`,
		"{\"a\":\"\xff\"}", `[{"a":1},{"a":1,"a":2}]`, bigObject(20, "m3"), `{"a":"\\ud800"}`, `{"a":"\ud83d\u`, `{"a`, `}}]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p := strictJSON(body)
		if !json.Valid(body) {
			return // readJSON then reports malformed-json, whatever p is
		}
		code := ""
		if p != nil {
			code = strings.TrimPrefix(p.Type, "https://tributary.dev/problems/")
		}
		switch code {
		case "invalid-utf8":
			if utf8.Valid(body) {
				t.Fatalf("%q: invalid-utf8 on valid UTF-8: %s", body, p.Detail)
			}
		case "invalid-unicode-escape":
			if !bytes.Contains(bytes.ToLower(body), []byte(`\ud`)) {
				t.Fatalf("%q: invalid-unicode-escape without a surrogate escape: %s", body, p.Detail)
			}
		case "duplicate-member":
			// Everything before the duplicate is UTF-8 without lone
			// surrogates (or that would have been reported), so
			// encoding/json decodes the two names alike.
			if dup, _ := referenceScan(t, body); !dup {
				t.Fatalf("%q: the reference finds no duplicate: %s", body, p.Detail)
			}
		case "":
			// Then encoding/json decodes names exactly, so its names are
			// the reference for duplicates; and it replaces nothing, so
			// U+FFFD comes only from the body.
			if !utf8.Valid(body) {
				t.Fatalf("%q: accepted, but not UTF-8", body)
			}
			dup, replaced := referenceScan(t, body)
			if dup {
				t.Fatalf("%q: accepted, but the reference finds a duplicate member", body)
			}
			if replaced && !bytes.Contains(body, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
				t.Fatalf("%q: accepted, but encoding/json replaced a character", body)
			}
		default:
			t.Fatalf("%q: unexpected problem %+v", body, p)
		}
	})
}

// referenceScan walks valid JSON with encoding/json's tokenizer up to the
// first duplicate member name, and tells whether it found one and whether
// a decoded string holds U+FFFD.
func referenceScan(t *testing.T, body []byte) (dup, replaced bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // 1e999 is valid JSON, but no float64
	type container struct {
		names     map[string]bool // nil for an array
		expectKey bool
	}
	var stack []*container
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return false, replaced
		}
		if err != nil {
			t.Fatalf("%q: the reference cannot read valid JSON: %v", body, err)
		}
		var top *container
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, utf8.RuneError) {
			replaced = true
		}
		if name, ok := tok.(string); ok && top != nil && top.names != nil && top.expectKey {
			if top.names[name] {
				return true, replaced
			}
			top.names[name] = true
			top.expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &container{names: map[string]bool{}, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &container{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			} else {
				top = nil
			}
		}
		if top != nil && top.names != nil {
			top.expectKey = true // a value ended: a name comes next
		}
	}
}
