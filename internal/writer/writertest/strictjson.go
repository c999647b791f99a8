package writertest

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// BodyRoute is a command route that takes a body, for
// CheckStrictJSONBodies.
type BodyRoute struct {
	// Path is where the command is posted.
	Path string
	// Template is a body the route takes, with § in a string member; a
	// route that takes no member has one it does not know, so that the
	// strict checks are seen to come first all the same.
	Template string
	// Dup is a member Template already has, named again.
	Dup string
	// NoMembers says the route takes no member: its clean body is empty.
	NoMembers bool
}

// spoiling is a way CheckStrictJSONBodies spoils a template: the problem
// it must get, and the body made of a template and its dup.
type spoiling struct {
	name, problem string
	body          func(template, dup string) string
}

// spoilings are the ways CheckStrictJSONBodies spoils a template.
func spoilings() []spoiling {
	return []spoiling{
		{"duplicate member", "duplicate-member", func(template, dup string) string {
			body := strings.Replace(template, "§", "x", 1)
			return body[:len(body)-1] + "," + dup + "}"
		}},
		{"invalid UTF-8", "invalid-utf8", func(template, _ string) string {
			return strings.Replace(template, "§", "caf\xe9", 1) // é in Latin-1
		}},
		{"lone surrogate", "invalid-unicode-escape", func(template, _ string) string {
			return strings.Replace(template, "§", `\ud800`, 1)
		}},
	}
}

// CheckStrictJSONBodies posts to each route, as subtests of t named
// "<path>/<kind>", a body with a member name twice, one with bytes that are
// not UTF-8 and one with a lone surrogate escape (G12): each must be
// refused with a 400 problem document of its kind before anything is
// written, neither an event nor an Idempotency-Key. Then the same bodies,
// clean, must be taken: the refusals were for what was wrong with them. st
// must hold what the routes act on.
func CheckStrictJSONBodies(t *testing.T, st *Stack, routes []BodyRoute) {
	t.Helper()
	for i, route := range routes {
		for j, kind := range spoilings() {
			t.Run(route.Path+"/"+kind.name, func(t *testing.T) {
				body := kind.body(route.Template, route.Dup)
				events, keys := st.EventCount(), st.IdempotencyKeyCount(t)
				r := st.Do(0, "POST", route.Path, body, "Idempotency-Key", "strict-"+strconv.Itoa(i)+"-"+strconv.Itoa(j))
				if r.Status != http.StatusBadRequest {
					t.Fatalf("%q: status %d, want 400: %s", body, r.Status, r.Body)
				}
				CheckProblem(t, r, http.StatusBadRequest, kind.problem)
				if after := st.EventCount(); after != events {
					t.Errorf("stored %d events", after-events)
				}
				if after := st.IdempotencyKeyCount(t); after != keys {
					t.Errorf("stored %d idempotency keys", after-keys)
				}
			})
		}
	}
	for _, route := range routes {
		body := strings.Replace(route.Template, "§", "x", 1)
		if route.NoMembers {
			body = ""
		}
		if r := st.Do(0, "POST", route.Path, body); r.Status/100 != 2 {
			t.Errorf("POST %s %s: status %d, want 2xx: %s", route.Path, body, r.Status, r.Body)
		}
	}
}
