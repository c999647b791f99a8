package writer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
)

// readJSON decodes the request body strictly into dst: JSON content type,
// at most maxBytes, UTF-8 without lone surrogate escapes, no member name
// twice in an object, one object, no unknown fields, right types. An empty
// body is allowed when allowEmpty, and leaves dst as it is.
func readJSON(r *http.Request, maxBytes int64, allowEmpty bool, dst any) ([]byte, *problem.Problem) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, problem.New(http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
				fmt.Sprintf("the body may be at most %d bytes", maxBytes))
		}
		return nil, problem.New(http.StatusBadRequest, "unreadable-body", "Unreadable request body", err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return body, nil
		}
		return nil, problem.New(http.StatusBadRequest, "empty-body", "Empty request body", "this command needs a JSON object")
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mediaType != "application/json" && !strings.HasSuffix(mediaType, "+json")) {
		return nil, problem.New(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"send the command as Content-Type: application/json")
	}
	// What encoding/json lets through in valid JSON (G12) is refused before
	// anything is decoded. A body that is also not valid JSON is left to
	// Unmarshal, so bad syntax stays malformed-json whatever else is wrong
	// (json.Valid costs a second pass, on this error path only).
	if p := strictJSON(body); p != nil && json.Valid(body) {
		return nil, p
	}
	// Unmarshal refuses bad syntax, wrong types and data after the value;
	// exactMemberNames below refuses unknown members.
	if err := json.Unmarshal(body, dst); err != nil {
		return nil, malformed(err)
	}
	// Decoding into a struct also accepts null, and member names that match
	// a field only when case is ignored: neither is the object asked for.
	if bytes.TrimSpace(body)[0] != '{' {
		return nil, problem.New(http.StatusBadRequest, "wrong-type", "Wrong JSON type",
			"the body must be a JSON object, not null").With("field", "")
	}
	if p := exactMemberNames(body, dst); p != nil {
		return nil, p
	}
	return body, nil
}

// exactMemberNames refuses a member of the JSON object body whose name is
// not exactly the JSON name of a field of the struct dst points to
// (encoding/json matches names ignoring case, and ignores unknown ones).
// body must be valid JSON whose first non-space byte is '{'.
func exactMemberNames(body []byte, dst any) *problem.Problem {
	t := reflect.TypeOf(dst).Elem()
	var unknown []byte
	forEachMemberName(body, func(name []byte) bool {
		if bytes.IndexByte(name, '\\') >= 0 {
			// An escaped name: compare it decoded.
			var decoded string
			if json.Unmarshal(append(append([]byte{'"'}, name...), '"'), &decoded) == nil {
				name = []byte(decoded)
			}
		}
		if !isFieldName(t, name) {
			unknown = name
			return false
		}
		return true
	})
	if unknown != nil {
		return problem.New(http.StatusBadRequest, "malformed-json", "Malformed JSON",
			fmt.Sprintf("json: unknown field %q (member names are case-sensitive)", unknown))
	}
	return nil
}

// isFieldName tells whether name is the JSON name of an exported field of
// the struct type t.
func isFieldName(t reflect.Type, name []byte) bool {
	for i := range t.NumField() {
		f := t.Field(i)
		jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if jsonName == "" {
			jsonName = f.Name
		}
		if f.IsExported() && jsonName != "-" && jsonName == string(name) {
			return true
		}
	}
	return false
}

// forEachMemberName calls f with the raw name (between the quotes, escapes
// kept) of each member of the outermost object of body, in order, until f
// returns false. body must be valid JSON whose first non-space byte is '{'.
func forEachMemberName(body []byte, f func(name []byte) bool) {
	depth, expectName := 0, false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{':
			depth++
			expectName = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			expectName = depth == 1
		case '"':
			start := i + 1
			for i++; body[i] != '"'; i++ {
				if body[i] == '\\' {
					i++
				}
			}
			if expectName {
				if !f(body[start:i]) {
					return
				}
				expectName = false
			}
		}
	}
}

func malformed(err error) *problem.Problem {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "the body"
		}
		return problem.New(http.StatusBadRequest, "wrong-type", "Wrong JSON type",
			fmt.Sprintf("%s must be %s, not %s", field, typeErr.Type, typeErr.Value)).With("field", typeErr.Field)
	}
	return problem.New(http.StatusBadRequest, "malformed-json", "Malformed JSON", err.Error())
}

// expectedVersion parses If-Match: "<version>" (RFC 9110 strong entity tag).
// It returns nil when the header is absent.
func expectedVersion(r *http.Request) (*int64, *problem.Problem) {
	raw := r.Header.Get("If-Match")
	if raw == "" {
		return nil, nil
	}
	tag := strings.TrimSpace(raw)
	if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' {
		// Entity tags compare as strings (RFC 9110, 8.8.3.2): only the form
		// ETag carries, without sign or leading zeros, names a version.
		opaque := tag[1 : len(tag)-1]
		if v, err := strconv.ParseInt(opaque, 10, 64); err == nil && v >= 0 && strconv.FormatInt(v, 10) == opaque {
			return &v, nil
		}
	}
	return nil, problem.New(http.StatusBadRequest, "invalid-if-match", "Invalid If-Match",
		`If-Match must be one strong entity tag holding a stream version, e.g. "3"`)
}

// optionalToken returns the header's value if it is a valid token, "" if absent.
func optionalToken(r *http.Request, header string) (string, *problem.Problem) {
	v := r.Header.Get(header)
	if v == "" {
		return "", nil
	}
	if !httpapi.IsToken(v) {
		return "", problem.New(http.StatusBadRequest, "invalid-header", "Invalid "+header,
			header+" must be 1 to 128 printable ASCII characters without spaces")
	}
	return v, nil
}

// etag formats a stream version as a strong entity tag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }
