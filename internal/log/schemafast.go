package log

import (
	"encoding/json"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// fastSchema recognises, without building a generic JSON tree, payloads that
// plainly match a flat object schema: string and integer properties with
// length, pattern and range limits, and booleans. Event schemas are like that, and the
// projector validates every event it applies.
//
// It only ever says "valid": a payload it does not accept — invalid, or
// merely written in a way it does not read (escapes, fractions, exponents,
// nesting, duplicate or unknown keys) — goes to the full JSON Schema
// validator, which has the last word and gives the reason. A schema that
// uses any keyword outside this subset gets no fast path at all.
type fastSchema struct {
	props    []fastProp
	required uint64 // bit i: props[i] is required
}

type fastProp struct {
	name             string
	integer          bool // else a string, or a boolean
	boolean          bool
	minLen, maxLen   int // in code points; maxLen < 0: none
	pattern          *regexp.Regexp
	hasMin, hasMax   bool
	minimum, maximum int64
}

// The keywords fastSchema understands; any other one disables it. Keywords
// that only annotate are harmless.
var (
	fastTopKeywords  = map[string]bool{"$schema": true, "$id": true, "$comment": true, "title": true, "description": true, "type": true, "additionalProperties": true, "required": true, "properties": true}
	fastPropKeywords = map[string]bool{"$comment": true, "title": true, "description": true, "type": true, "minLength": true, "maxLength": true, "pattern": true, "minimum": true, "maximum": true}
)

// compileFast builds the fast path of a schema document (as decoded by
// jsonschema.UnmarshalJSON, numbers as json.Number), or returns nil when
// the schema is not in the subset it handles.
func compileFast(doc any) *fastSchema {
	top, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	for k := range top {
		if !fastTopKeywords[k] {
			return nil
		}
	}
	if d, ok := top["$schema"]; ok && d != "https://json-schema.org/draft/2020-12/schema" {
		return nil
	}
	// The object must be closed: a key not among the properties is refused
	// by the full validator.
	if top["type"] != "object" || top["additionalProperties"] != false {
		return nil
	}
	props, ok := top["properties"].(map[string]any)
	if !ok && top["properties"] != nil || len(props) > 64 {
		return nil
	}
	f := &fastSchema{}
	for name, raw := range props {
		p, ok := compileFastProp(name, raw)
		if !ok {
			return nil
		}
		f.props = append(f.props, p)
	}
	if req, ok := top["required"]; ok {
		list, ok := req.([]any)
		if !ok {
			return nil
		}
		for _, r := range list {
			i := f.index(r)
			if i < 0 {
				return nil // required but not a property: never valid, let the validator say so
			}
			f.required |= 1 << i
		}
	}
	return f
}

func compileFastProp(name string, raw any) (fastProp, bool) {
	s, ok := raw.(map[string]any)
	if !ok {
		return fastProp{}, false
	}
	p := fastProp{name: name, maxLen: -1}
	for k := range s {
		if !fastPropKeywords[k] {
			return p, false
		}
	}
	switch s["type"] {
	case "string":
		if _, ok := s["minimum"]; ok {
			return p, false
		}
		if _, ok := s["maximum"]; ok {
			return p, false
		}
	case "integer":
		p.integer = true
		for _, k := range []string{"minLength", "maxLength", "pattern"} {
			if _, ok := s[k]; ok {
				return p, false
			}
		}
	case "boolean":
		p.boolean = true
		for _, k := range []string{"minLength", "maxLength", "pattern", "minimum", "maximum"} {
			if _, ok := s[k]; ok {
				return p, false
			}
		}
	default:
		return p, false
	}
	count := func(k string, into *int) bool {
		v, ok := s[k]
		if !ok {
			return true
		}
		n, err := strconv.ParseInt(string(asNumber(v)), 10, 32)
		*into = int(n)
		return err == nil && n >= 0
	}
	bound := func(k string, into *int64, has *bool) bool {
		v, ok := s[k]
		if !ok {
			return true
		}
		n, err := strconv.ParseInt(string(asNumber(v)), 10, 64)
		*into, *has = n, true
		return err == nil
	}
	if !count("minLength", &p.minLen) || !count("maxLength", &p.maxLen) ||
		!bound("minimum", &p.minimum, &p.hasMin) || !bound("maximum", &p.maximum, &p.hasMax) {
		return p, false
	}
	if v, ok := s["pattern"]; ok {
		src, ok := v.(string)
		if !ok {
			return p, false
		}
		re, err := regexp.Compile(src) // as jsonschema's default engine does
		if err != nil {
			return p, false
		}
		p.pattern = re
	}
	return p, true
}

// asNumber is v's literal when v is a JSON number, else "".
func asNumber(v any) json.Number {
	n, _ := v.(json.Number)
	return n
}

func (f *fastSchema) index(name any) int {
	for i, p := range f.props {
		if p.name == name {
			return i
		}
	}
	return -1
}

func (f *fastSchema) indexBytes(name []byte) int {
	for i, p := range f.props {
		if p.name == string(name) {
			return i
		}
	}
	return -1
}

// accepts tells whether payload is certainly valid; false means "ask the
// full validator".
func (f *fastSchema) accepts(payload []byte) bool {
	d := payload
	d = skipSpace(d)
	if len(d) == 0 || d[0] != '{' {
		return false
	}
	d = skipSpace(d[1:])
	var seen uint64
	if len(d) > 0 && d[0] == '}' {
		d = d[1:]
	} else {
		for {
			key, rest, ok := plainString(d)
			if !ok {
				return false
			}
			i := f.indexBytes(key)
			if i < 0 || seen&(1<<i) != 0 {
				return false // unknown (refused) or a duplicate key
			}
			seen |= 1 << i
			d = skipSpace(rest)
			if len(d) == 0 || d[0] != ':' {
				return false
			}
			d = skipSpace(d[1:])
			p := &f.props[i]
			if p.boolean {
				switch {
				case len(d) >= 4 && string(d[:4]) == "true":
					d = d[4:]
				case len(d) >= 5 && string(d[:5]) == "false":
					d = d[5:]
				default:
					return false
				}
			} else if p.integer {
				var n int64
				if n, d, ok = plainInteger(d); !ok || p.hasMin && n < p.minimum || p.hasMax && n > p.maximum {
					return false
				}
			} else {
				var s []byte
				if s, d, ok = plainString(d); !ok {
					return false
				}
				if n := utf8.RuneCount(s); n < p.minLen || p.maxLen >= 0 && n > p.maxLen {
					return false
				}
				if p.pattern != nil && !p.pattern.Match(s) {
					return false
				}
			}
			d = skipSpace(d)
			if len(d) == 0 {
				return false
			}
			if d[0] == '}' {
				d = d[1:]
				break
			}
			if d[0] != ',' {
				return false
			}
			d = skipSpace(d[1:])
		}
	}
	return len(skipSpace(d)) == 0 && seen&f.required == f.required
}

func skipSpace(d []byte) []byte {
	for len(d) > 0 && (d[0] == ' ' || d[0] == '\t' || d[0] == '\n' || d[0] == '\r') {
		d = d[1:]
	}
	return d
}

// plainString reads a JSON string without escapes, in valid UTF-8, at the
// start of d: its contents are then its value.
func plainString(d []byte) (s, rest []byte, ok bool) {
	if len(d) == 0 || d[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			s = d[1:i]
			return s, d[i+1:], utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// plainInteger reads -?(0|[1-9][0-9]*) at the start of d, not followed by a
// fraction or an exponent, that fits an int64.
func plainInteger(d []byte) (n int64, rest []byte, ok bool) {
	i := 0
	if i < len(d) && d[i] == '-' {
		i++
	}
	digits := i
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	if i == digits || d[digits] == '0' && i > digits+1 {
		return 0, nil, false
	}
	if i < len(d) && (d[i] == '.' || d[i] == 'e' || d[i] == 'E') {
		return 0, nil, false
	}
	n, err := strconv.ParseInt(string(d[:i]), 10, 64)
	return n, d[i:], err == nil
}
