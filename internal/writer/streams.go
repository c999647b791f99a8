package writer

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/problem"
)

// StreamPage is the body of GET /v1/streams/{type}/{id}.
type StreamPage struct {
	AggregateType string      `json:"aggregateType"`
	AggregateID   string      `json:"aggregateId"`
	Events        []log.Event `json:"events"`
	// NextAfter, if set, is the ?after= value of the next page.
	NextAfter *int64 `json:"nextAfter,omitempty"`
}

// StateAt is the body of GET /v1/streams/{type}/{id}/state.
type StateAt struct {
	AggregateType string `json:"aggregateType"`
	AggregateID   string `json:"aggregateId"`
	Version       int64  `json:"version"`
	State         any    `json:"state"`
}

// streamTarget reads the stream a request names, and answers it (returning
// false) when the type is unknown, the id malformed, the stream empty, or
// the caller not allowed to read it.
func (s *Server) streamTarget(w http.ResponseWriter, r *http.Request) (typ, id string, ok bool) {
	typ, id = r.PathValue("type"), r.PathValue("id")
	if _, known := s.handlers.Runner(typ); !known {
		problem.Write(w, r, problem.New(http.StatusNotFound, "unknown-aggregate-type", "Unknown aggregate type",
			"there is no aggregate type "+strconv.Quote(typ)))
		return "", "", false
	}
	if p := httpapi.ID(id); p != nil {
		problem.Write(w, r, p)
		return "", "", false
	}
	// Only the stream's owner, or an operator, may read it.
	who, p := caller(r)
	if p != nil {
		problem.Write(w, r, p)
		return "", "", false
	}
	owner, err := s.store.StreamOwner(r.Context(), typ, id)
	switch {
	case err != nil:
		s.internalError(w, r, err)
		return "", "", false
	case owner == "":
		problem.Write(w, r, problem.New(http.StatusNotFound, "stream-not-found", "Stream not found", typ+"/"+id+" has no events"))
		return "", "", false
	case !who.MayAccess(owner):
		problem.Write(w, r, auth.Forbidden("only the owner of "+typ+"/"+id+" or an operator may read it"))
		return "", "", false
	}
	return typ, id, true
}

// readStream serves a stream's events for audit, a page at a time.
func (s *Server) readStream(w http.ResponseWriter, r *http.Request) {
	typ, id, ok := s.streamTarget(w, r)
	if !ok {
		return
	}
	after, p := httpapi.QueryInt(r, "after", 0, 0, 1<<62)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	limit, p := httpapi.QueryInt(r, "limit", 100, 1, int64(s.cfg.MaxStreamPage))
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	events, err := s.store.ReadStream(r.Context(), postgres.StreamQuery{
		AggregateType: typ, AggregateID: id, AfterVersion: after, Limit: int(limit) + 1,
	})
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if len(events) == 0 && after == 0 {
		problem.Write(w, r, problem.New(http.StatusNotFound, "stream-not-found", "Stream not found", typ+"/"+id+" has no events"))
		return
	}
	page := StreamPage{AggregateType: typ, AggregateID: id, Events: events}
	if len(events) > int(limit) {
		page.Events = events[:limit]
		next := page.Events[limit-1].Version
		page.NextAfter = &next
	}
	if page.Events == nil {
		page.Events = []log.Event{}
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

// readState answers a temporal query: ?version=N and/or ?at=<RFC 3339 time>.
func (s *Server) readState(w http.ResponseWriter, r *http.Request) {
	typ, id, ok := s.streamTarget(w, r)
	if !ok {
		return
	}
	version, p := httpapi.QueryInt(r, "version", 0, 1, 1<<62)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	raw, p := httpapi.Query(r, "at")
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	var at time.Time
	if raw != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, raw); err != nil {
			problem.Write(w, r, problem.New(http.StatusBadRequest, "invalid-query", "Invalid query parameter",
				"at must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z"))
			return
		}
	}
	runner, _ := s.handlers.Runner(typ) // streamTarget checked it
	state, v, err := runner.StateAny(r.Context(), id, version, at)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if v == 0 {
		problem.Write(w, r, problem.New(http.StatusNotFound, "stream-not-found", "Stream not found",
			typ+"/"+id+" has no events at or before that point"))
		return
	}
	w.Header().Set("ETag", etag(v))
	httpapi.WriteJSON(w, http.StatusOK, StateAt{AggregateType: typ, AggregateID: id, Version: v, State: state})
}
