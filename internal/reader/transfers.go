package reader

import (
	"context"
	"net/http"
	"strconv"

	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels/transfers"
)

func (s *Server) getTransfer(w http.ResponseWriter, r *http.Request) {
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
	var sum transfers.Summary
	var found bool
	have, err := s.await(r, want, func(ctx context.Context) (int64, error) {
		var err error
		sum, found, err = s.transfers.Get(ctx, id)
		return sum.Version, err
	})
	switch {
	case err != nil:
		s.fail(w, r, err)
		return
	case have < want:
		writeStale(w, r, stale(want, have))
		return
	case !found:
		problem.Write(w, r, problem.New(http.StatusNotFound, "unknown-transfer", "Unknown transfer", "no transfer "+id+" in the read model"))
		return
	}
	tag := `"` + strconv.FormatInt(sum.Version, 10) + `"`
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, sum)
}
