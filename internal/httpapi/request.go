package httpapi

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/tributary-es/tributary/internal/problem"
)

// idPattern is what an aggregate id may look like: short, ASCII, no path or
// key separators. Everything else is refused before it reaches a store.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// tokenPattern bounds values such as correlation ids, idempotency keys and
// principals: printable ASCII without spaces, at most 128 characters.
var tokenPattern = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)

// ID checks an aggregate id.
func ID(id string) *problem.Problem {
	if !idPattern.MatchString(id) {
		return problem.New(http.StatusBadRequest, "invalid-id", "Invalid aggregate id",
			"an id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_', starting with a letter or digit")
	}
	return nil
}

// IsToken tells whether v is a well-formed token: 1 to 128 printable ASCII
// characters without spaces.
func IsToken(v string) bool { return tokenPattern.MatchString(v) }

// Query reads the query parameter name: "" when it is absent. A parameter
// that is present without a value ("?name" or "?name=") is a 400 problem:
// for a parameter the OpenAPI documents do not allow empty, an empty one is
// more likely a client's bug than a wish for the default.
func Query(r *http.Request, name string) (string, *problem.Problem) {
	values, ok := r.URL.Query()[name]
	if !ok {
		return "", nil
	}
	if values[0] == "" {
		return "", problem.New(http.StatusBadRequest, "invalid-query", "Invalid query parameter",
			name+" is given without a value: leave it out or give it one")
	}
	return values[0], nil
}

// QueryInt reads the integer query parameter name, def when it is absent;
// a value that is not an integer from lo to hi (an empty one included) is a
// 400 problem.
func QueryInt(r *http.Request, name string, def, lo, hi int64) (int64, *problem.Problem) {
	raw, p := Query(r, name)
	if p != nil || raw == "" {
		return def, p
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, problem.New(http.StatusBadRequest, "invalid-query", "Invalid query parameter",
			name+" must be an integer from "+strconv.FormatInt(lo, 10)+" to "+strconv.FormatInt(hi, 10))
	}
	return v, nil
}

// RejectUncleanPaths answers 400 (invalid-path) to a request whose path,
// decoded or as sent, has empty, "." or ".." segments, instead of letting
// the router redirect it to the cleaned path or match it there: such a path
// is either a client's bug or an attempt to smuggle one path past a check
// made on another.
func RejectUncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cleanPath(r.URL.Path) || !cleanPath(r.URL.EscapedPath()) {
			problem.Write(w, r, problem.New(http.StatusBadRequest, "invalid-path", "Invalid path",
				"the path must not contain empty, '.' or '..' segments"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath reports whether a request path has no dot segments or empty
// segments that could smuggle another path past the router.
func cleanPath(p string) bool {
	for _, seg := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if seg == "." || seg == ".." || (seg == "" && p != "/") {
			return false
		}
	}
	return true
}
