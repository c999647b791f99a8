package writertest

import (
	"testing"
)

// BadInput is a request the writer must refuse with an RFC 9457 problem
// document, storing nothing.
type BadInput struct {
	Name, Method, Path, Body string
	// Headers are name, value pairs, sent as Do sends them.
	Headers []string
	Status  int
	// Problem is the last segment of the problem type.
	Problem string
}

// CheckBadInput sends each case to process 0 of st, as a subtest of t
// named after it, and fails it unless the answer is a problem document of
// the case's status and type, with a title and a detail, and no event was
// stored (G10).
func CheckBadInput(t *testing.T, st *Stack, cases []BadInput) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			before := st.EventCount()
			r := st.Do(0, tc.Method, tc.Path, tc.Body, tc.Headers...)
			if r.Status != tc.Status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.Status, r.Body)
			}
			CheckProblem(t, r, tc.Status, tc.Problem)
			if after := st.EventCount(); after != before {
				t.Fatalf("bad input stored %d events", after-before)
			}
		})
	}
}

// CheckProblem fails t unless r is a problem document (content type
// application/problem+json) of status and the problem type whose last
// segment is problem, with a title and a detail.
func CheckProblem(t testing.TB, r Response, status int, problem string) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	p := r.JSON(t)
	if p["type"] != ProblemType(problem) || p["status"] != float64(status) || p["title"] == "" || p["detail"] == "" {
		t.Fatalf("problem %v, want type %s and status %d with title and detail", p, problem, status)
	}
}

// ProblemType is the URI of the problem type whose last segment is name.
func ProblemType(name string) string { return "https://tributary.dev/problems/" + name }
