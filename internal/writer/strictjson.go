package writer

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tributary-es/tributary/internal/problem"
)

// maxScanDepth is encoding/json's nesting limit: a body nested deeper is
// malformed JSON, so strictJSON stops there and leaves it to Unmarshal.
const maxScanDepth = 10000

// linearNames is how many member names of one object strictJSON compares
// one by one; past it, it keeps that object's names in a map, so that an
// object of thousands of members costs linear time, not quadratic.
const linearNames = 16

// objectFrame is an object strictJSON is inside of.
type objectFrame struct {
	first int                 // index in names of the object's first name
	set   map[string]struct{} // its names, once it has more than linearNames
}

// strictJSON refuses, in one pass over body, what encoding/json accepts in
// valid JSON without a word (RFC 8259 sections 4, 7 and 8.1):
//   - bytes that are not UTF-8, anywhere (Unmarshal turns those inside a
//     string into U+FFFD): invalid-utf8;
//   - a \u escape of a lone surrogate, in a value or a member name: a high
//     one (D800-DBFF) not followed by a \u escape of a low one (DC00-DFFF),
//     or a low one without a high one before it (Unmarshal turns those into
//     U+FFFD too): invalid-unicode-escape;
//   - a member name twice in one object, at any depth, names compared after
//     unescaping, code point by code point (Unmarshal keeps the last one):
//     duplicate-member.
//
// It reports the first of these in body's order. It does not check syntax,
// but any input is safe: on a body that is not valid JSON its answer means
// nothing (readJSON then lets Unmarshal report the syntax error).
func strictJSON(body []byte) *problem.Problem {
	var (
		// Fixed buffers keep a command's body (a few members, one level)
		// free of allocations; deeper or larger bodies grow them.
		kindsBuf  [16]byte // '{' or '[' of each open container
		framesBuf [8]objectFrame
		namesBuf  [32][]byte // the names of the open objects, unescaped
	)
	kinds, frames, names := kindsBuf[:0], framesBuf[:0], namesBuf[:0]
	var unescaped []byte // backs the names that had escapes
	expectName := false  // the next string is a member name
	for i := 0; i < len(body); {
		switch c := body[i]; {
		case c == '"':
			end, escaped, p := scanString(body, i+1)
			if p != nil {
				return p
			}
			if end < 0 {
				return nil // unterminated: malformed
			}
			if expectName {
				name := body[i+1 : end]
				if escaped {
					n := len(unescaped)
					unescaped = appendUnescaped(unescaped, name)
					name = unescaped[n:len(unescaped):len(unescaped)]
				}
				f := &frames[len(frames)-1]
				var seen bool
				if f.set != nil {
					_, seen = f.set[string(name)]
					f.set[string(name)] = struct{}{}
				} else {
					for _, other := range names[f.first:] {
						if bytes.Equal(other, name) {
							seen = true
							break
						}
					}
					names = append(names, name)
					if len(names)-f.first > linearNames {
						f.set = make(map[string]struct{}, 2*linearNames)
						for _, other := range names[f.first:] {
							f.set[string(other)] = struct{}{}
						}
						names = names[:f.first]
					}
				}
				if seen {
					return duplicateMember(name, i)
				}
				expectName = false
			}
			i = end + 1
		case c == '{' || c == '[':
			if len(kinds) == maxScanDepth {
				return nil
			}
			kinds = append(kinds, c)
			if c == '{' {
				frames = append(frames, objectFrame{first: len(names)})
			}
			expectName = c == '{'
			i++
		case c == '}' || c == ']':
			if len(kinds) == 0 || kinds[len(kinds)-1] != c-2 { // '{'+2 is '}', '['+2 is ']'
				return nil // unbalanced: malformed
			}
			if c == '}' {
				names = names[:frames[len(frames)-1].first]
				frames = frames[:len(frames)-1]
			}
			kinds = kinds[:len(kinds)-1]
			expectName = false
			i++
		case c == ',':
			expectName = len(kinds) > 0 && kinds[len(kinds)-1] == '{'
			i++
		case c == ':':
			expectName = false
			i++
		case c < utf8.RuneSelf:
			i++
		default:
			size, p := checkUTF8(body, i)
			if p != nil {
				return p
			}
			i += size
		}
	}
	return nil
}

// scanString scans the string whose content starts at body[start], checking
// its UTF-8 and its \u escapes. It returns the index of the closing quote
// (-1 if there is none or an escape is cut short) and whether the string
// has escapes.
func scanString(body []byte, start int) (end int, escaped bool, p *problem.Problem) {
	for i := start; i < len(body); {
		c := body[i]
		if c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		switch {
		case c == '"':
			return i, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(body) {
				return -1, escaped, nil
			}
			if body[i+1] != 'u' {
				i += 2
				continue
			}
			r, ok := hex4(body, i+2)
			if !ok {
				return -1, escaped, nil // a bad \u escape: malformed
			}
			switch {
			case r >= 0xD800 && r < 0xDC00: // high surrogate: a low one must follow
				if low, ok := hex4(body, i+8); !ok || body[i+6] != '\\' || body[i+7] != 'u' || low < 0xDC00 || low > 0xDFFF {
					return -1, escaped, loneSurrogate(body[i:i+6], i, "a high surrogate not followed by a \\u escape of a low surrogate (DC00-DFFF)")
				}
				i += 12
			case r >= 0xDC00 && r <= 0xDFFF:
				return -1, escaped, loneSurrogate(body[i:i+6], i, "a low surrogate without a \\u escape of a high surrogate (D800-DBFF) before it")
			default:
				i += 6
			}
		default:
			size, p := checkUTF8(body, i)
			if p != nil {
				return -1, escaped, p
			}
			i += size
		}
	}
	return -1, escaped, nil
}

// checkUTF8 returns the length of the UTF-8 sequence at body[i], or an
// invalid-utf8 problem.
func checkUTF8(body []byte, i int) (int, *problem.Problem) {
	r, size := utf8.DecodeRune(body[i:])
	if r == utf8.RuneError && size == 1 {
		return 0, problem.New(http.StatusBadRequest, "invalid-utf8", "Invalid UTF-8",
			fmt.Sprintf("the body must be UTF-8 (RFC 8259, section 8.1): byte 0x%02x at offset %d does not start a valid UTF-8 sequence", body[i], i))
	}
	return size, nil
}

// hex4 decodes the four hexadecimal digits at body[i:i+4].
func hex4(body []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(body) {
		return 0, false
	}
	var r rune
	for _, c := range body[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendUnescaped appends the string content raw (between the quotes, as
// scanString accepted it) unescaped to dst.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			dst = append(dst, c)
			i++
			continue
		}
		switch e := raw[i+1]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw, i+2)
			if !ok {
				dst = append(dst, c, e)
				break
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if low, ok := hex4(raw, i+4); ok && raw[i+2] == '\\' && raw[i+3] == 'u' {
					r = utf16.DecodeRune(r, low)
					i += 6
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
		i += 2
	}
	return dst
}

func duplicateMember(name []byte, offset int) *problem.Problem {
	shown := string(name)
	if len(shown) > 64 {
		shown = strings.ToValidUTF8(shown[:64], "") + "..."
	}
	return problem.New(http.StatusBadRequest, "duplicate-member", "Duplicate member name",
		fmt.Sprintf("the member name %q appears again, at offset %d, in an object that already has it: a name may appear once per object", shown, offset))
}

func loneSurrogate(escape []byte, offset int, what string) *problem.Problem {
	return problem.New(http.StatusBadRequest, "invalid-unicode-escape", "Invalid Unicode escape",
		fmt.Sprintf("the escape %s at offset %d is %s: it is not a character (RFC 8259, section 8.2)", escape, offset, what))
}
