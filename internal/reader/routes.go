package reader

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels"
)

// Route is one route of the reader's API that a domain brings: made by
// Versioned or Handle, served once the server exists.
type Route struct {
	// Pattern is the route's ServeMux pattern, e.g. "GET /v1/carts/{id}".
	Pattern string
	build   func(q Query) http.Handler
}

// Source is where a domain's queries read: the reader's Redis (its reads
// pipelined), the key root of the read models, and their active
// generations (cached briefly).
type Source struct {
	Redis redis.Cmdable
	Root  string
	Views *readmodels.Views
}

// Query is what a domain's query handlers use of the reader: who asks,
// read-your-writes, paging and the answers every query shares.
type Query struct{ s *Server }

// Source returns where the queries read.
func (q Query) Source() Source { return Source{Redis: q.s.reads, Root: q.s.root, Views: q.s.views} }

// Caller returns the request's authenticated principal; without one it
// answers 401 and returns false.
func (q Query) Caller(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	return caller(w, r)
}

// MinVersion reads the version the request must see, from the min_version
// parameter or the Min-Version header; 0 when it names none.
func (q Query) MinVersion(r *http.Request) (int64, *problem.Problem) { return minVersion(r) }

// Await calls current until it returns at least want or the request's wait
// bound passes, and returns the last version it returned (want 0: once).
// An error of current ends the wait and is returned.
func (q Query) Await(r *http.Request, want int64, current func(context.Context) (int64, error)) (int64, error) {
	return q.s.await(r, want, current)
}

// Stale answers 503 "stale": the read model did not reach want (it has
// have) within the wait bound.
func (q Query) Stale(w http.ResponseWriter, r *http.Request, want, have int64) {
	writeStale(w, r, stale(want, have))
}

// Fail answers with the problem err stands for: read model not ready,
// request cancelled, or Redis unavailable (logged).
func (q Query) Fail(w http.ResponseWriter, r *http.Request, err error) { q.s.fail(w, r, err) }

// Limit reads the limit parameter of a page: the server's default page
// size when absent, at most its largest.
func (q Query) Limit(r *http.Request) (int, *problem.Problem) {
	n, p := httpapi.QueryInt(r, "limit", int64(q.s.cfg.DefaultPage), 1, int64(q.s.cfg.MaxPage))
	return int(n), p
}

// Handle is a route whose handler a domain writes with q's help.
func Handle(pattern string, handler func(q Query) http.Handler) Route {
	return Route{Pattern: pattern, build: handler}
}

// Versioned is a route answering GET of one aggregate's read model, named
// by the pattern's {id}: the id checked, read at least at the version the
// request names (or 503 stale), 404 when unknown, 403 when the caller may
// not read what its owner (the principal of its first event) owns, the
// version as ETag and 304 for If-None-Match.
//
// The owner is read with the model and checked on every read, also while
// waiting for a version: a caller who may not read the model gets 403 as
// soon as it is seen — never the model, a 304 or a stale answer that would
// tell its version. An id the read model does not know stays 404 (or
// stale, when a version was asked for), whoever asks.
func Versioned[T any](pattern string, m VersionedModel[T]) Route {
	return Route{Pattern: pattern, build: func(q Query) http.Handler {
		read := m.Read(q.Source())
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serveVersioned(q.s, w, r, read, m.Version, m.Owner, m.What)
		})
	}}
}

// VersionedModel says how Versioned reads one aggregate's read model T.
type VersionedModel[T any] struct {
	// What names the aggregate in problems, e.g. "cart": an unknown id is
	// 404 unknown-<What>.
	What string
	// Read returns the read of one aggregate's model from src: found false
	// when the model has none.
	Read func(src Source) func(ctx context.Context, id string) (model T, found bool, err error)
	// Version is the aggregate version the model reflects.
	Version func(T) int64
	// Owner is the principal who owns the aggregate.
	Owner func(T) string
}

func serveVersioned[T any](s *Server, w http.ResponseWriter, r *http.Request,
	read func(context.Context, string) (T, bool, error), version func(T) int64, owner func(T) string, what string,
) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if p := httpapi.ID(id); p != nil {
		problem.Write(w, r, p)
		return
	}
	want, p := minVersion(r)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	var model T
	var found bool
	have, err := s.await(r, want, func(ctx context.Context) (int64, error) {
		var err error
		model, found, err = read(ctx, id)
		if err == nil && found && !who.MayAccess(owner(model)) {
			return 0, auth.ErrForbidden
		}
		return version(model), err
	})
	switch {
	case errors.Is(err, auth.ErrForbidden):
		problem.Write(w, r, NotYours(what, id))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	case have < want:
		writeStale(w, r, stale(want, have))
		return
	case !found:
		problem.Write(w, r, Unknown(what, id))
		return
	}
	tag := `"` + strconv.FormatInt(version(model), 10) + `"`
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, model)
}

// NotYours is the 403 for a read model of what another principal owns.
func NotYours(what, id string) *problem.Problem {
	return auth.Forbidden(what + " " + id + " belongs to another principal: only its owner and operators may read it")
}

// Unknown is the 404 for an id the read model of what does not know.
func Unknown(what, id string) *problem.Problem {
	return problem.New(http.StatusNotFound, "unknown-"+what, "Unknown "+what, "no "+what+" "+id+" in the read model")
}

// InvalidQuery is the 400 for a query parameter that is wrong.
func InvalidQuery(detail string) *problem.Problem {
	return problem.New(http.StatusBadRequest, "invalid-query", "Invalid query parameter", detail)
}

// BadCursor is the 400 for a cursor that is not the next value of an
// earlier page of the same listing.
func BadCursor() *problem.Problem {
	return problem.New(http.StatusBadRequest, "invalid-cursor", "Invalid cursor",
		"cursor must be the next value of an earlier page of this same listing")
}

// EncodeCursor makes a cursor of a position: opaque to clients (base64url
// of a versioned position, e.g. "h1:<id>:<version>").
func EncodeCursor(pos string) string { return base64.RawURLEncoding.EncodeToString([]byte(pos)) }

// DecodeCursor returns the position a cursor holds; false when it is not
// one of EncodeCursor's.
func DecodeCursor(c string) (string, bool) {
	if len(c) > 512 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	return string(b), err == nil
}

// etagMatches tells whether an If-None-Match value matches tag (weak
// comparison, RFC 9110 §13.1.2).
func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}
