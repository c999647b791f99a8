package readmodels

import (
	"encoding/json"
	"strconv"
	"time"
)

// JSONObject builds a JSON object member by member, byte for byte as
// encoding/json marshals a struct with the same fields in the same order,
// without its reflection: projections that store JSON build it for every
// event they apply.
type JSONObject struct {
	b   []byte
	err error
}

// NewJSONObject starts an object; size is a guess of its length in bytes.
func NewJSONObject(size int) *JSONObject {
	return &JSONObject{b: append(make([]byte, 0, size), '{')}
}

func (o *JSONObject) name(name string) {
	if len(o.b) > 1 {
		o.b = append(o.b, ',')
	}
	o.b = appendJSONString(o.b, name)
	o.b = append(o.b, ':')
}

// String adds a string member.
func (o *JSONObject) String(name, v string) *JSONObject {
	o.name(name)
	o.b = appendJSONString(o.b, v)
	return o
}

// StringOmitEmpty adds a string member unless v is empty (`json:",omitempty"`).
func (o *JSONObject) StringOmitEmpty(name, v string) *JSONObject {
	if v == "" {
		return o
	}
	return o.String(name, v)
}

// Int adds an integer member.
func (o *JSONObject) Int(name string, v int64) *JSONObject {
	o.name(name)
	o.b = strconv.AppendInt(o.b, v, 10)
	return o
}

// Time adds a time member as time.Time marshals itself (RFC 3339 with
// nanoseconds; a year outside 0–9999 is an error).
func (o *JSONObject) Time(name string, t time.Time) *JSONObject {
	o.name(name)
	o.b = append(o.b, '"')
	b, err := t.AppendText(o.b)
	if err != nil && o.err == nil {
		o.err = err
	}
	o.b = append(b, '"')
	return o
}

// Marshaled adds a member whose value v is what json.Marshal returned
// (compact, HTML-escaped), as it is: as encoding/json writes a
// json.RawMessage of it.
func (o *JSONObject) Marshaled(name string, v []byte) *JSONObject {
	o.name(name)
	o.b = append(o.b, v...)
	return o
}

// Open returns the object without its closing brace, for a script to add
// members to; Close returns the whole object.
func (o *JSONObject) Open() ([]byte, error) { return o.b, o.err }

// Close returns the object.
func (o *JSONObject) Close() ([]byte, error) { return append(o.b, '}'), o.err }

// appendJSONString appends s as encoding/json writes a string: a plain
// ASCII string as it is, anything else (escapes, HTML characters, non-ASCII,
// invalid UTF-8) through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
