package reader

import (
	"net/http"

	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels/transfers"
)

func (s *Server) getTransfer(w http.ResponseWriter, r *http.Request) {
	serveVersioned(s, w, r, s.transfers.Get, func(t transfers.Summary) int64 { return t.Version },
		func(t transfers.Summary) string { return t.Principal }, "transfer", func(id string) *problem.Problem {
			return problem.New(http.StatusNotFound, "unknown-transfer", "Unknown transfer", "no transfer "+id+" in the read model")
		})
}
