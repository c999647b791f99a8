package readmodels

import (
	"encoding/json"
	"testing"
	"time"
)

// awkward are strings encoding/json escapes in every way it does: quotes,
// backslashes, control characters, HTML characters, U+2028/U+2029, other
// non-ASCII and invalid UTF-8.
var awkward = []string{"", "plain", `q"uote`, `back\slash`, "tab\tnew\nline\x01\x1f", "<a href='x'>&amp;</a>",
	"line\u2028para\u2029", "ünïcödé €", "bad\xffutf8\xc3", "\x7f del"}

func FuzzJSONObjectMarshalsLikeEncodingJSON(f *testing.F) {
	for _, s := range awkward {
		f.Add(s, int64(-42), int64(1700000000123456789))
	}
	f.Fuzz(func(t *testing.T, s string, n, nanos int64) {
		type object struct {
			A string          `json:"a"`
			B int64           `json:"b"`
			C string          `json:"c,omitempty"`
			T time.Time       `json:"t"`
			D json.RawMessage `json:"d"`
		}
		at := time.Unix(0, nanos).In(time.FixedZone("x", 3600))
		d, err := json.Marshal(map[string]any{"s": s, "n": n})
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(object{A: s, B: n, C: s, T: at, D: d})
		if err != nil {
			t.Fatal(err)
		}
		got, err := NewJSONObject(16).String("a", s).Int("b", n).StringOmitEmpty("c", s).Time("t", at).Marshaled("d", d).Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("JSONObject wrote\n%s\nencoding/json writes\n%s", got, want)
		}
		open, _ := NewJSONObject(16).String("a", s).Open()
		if string(open)+"}" != string(must(json.Marshal(struct {
			A string `json:"a"`
		}{s}))) {
			t.Fatalf("Open = %s", open)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// A time encoding/json cannot write is an error here too.
func TestJSONObjectRejectsATimeJSONCannotWrite(t *testing.T) {
	if _, err := NewJSONObject(16).Time("t", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)).Close(); err == nil {
		t.Fatal("year 10000: no error")
	}
}

func BenchmarkJSONObject(b *testing.B) {
	at := time.Now().UTC()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = NewJSONObject(256).String("eventId", "0195d6a4-8f3c-7b1e-9a2d-3c4b5a6d7e8f").Int("version", 12).
			Time("recordedAt", at).String("principal", "test").Close()
	}
}
