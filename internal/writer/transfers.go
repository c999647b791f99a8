package writer

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
)

// TransferHandler runs the transfer commands.
type TransferHandler = aggregate.Handler[transfer.State, transfer.Command, transfer.Event]

// TransferType is the transfer as an aggregate type of the platform.
func TransferType() aggregate.Type[transfer.State, transfer.Command, transfer.Event] {
	return aggregate.Type[transfer.State, transfer.Command, transfer.Event]{
		Name:               transfer.AggregateType,
		Initial:            transfer.Initial,
		Decide:             transfer.Decide,
		Evolve:             transfer.Evolve,
		DecodeEvent:        transfer.DecodeEvent,
		StateSchemaVersion: transfer.StateSchemaVersion,
	}
}

// WithTransfers serves transfers too: POST /v1/transfers starts one (the
// process manager, internal/transfers, moves the money), and their streams
// can be read. It returns s.
func (s *Server) WithTransfers(h *TransferHandler) *Server {
	s.transfers = h
	s.stateAt[h.TypeName()] = func(ctx context.Context, id string, v int64, t time.Time) (any, int64, error) {
		return h.StateAt(ctx, id, v, t)
	}
	return s
}

// Transfers returns the transfer commands' handler (nil without
// WithTransfers), to share with a process manager in the same process: one
// cache of states and one lock per aggregate for both.
func (s *Server) Transfers() *TransferHandler { return s.transfers }

type transferBody struct {
	ID        string `json:"id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

func (s *Server) transferRoutes() []route {
	if s.transfers == nil {
		return nil
	}
	return []route{{"POST /v1/transfers", http.HandlerFunc(s.requestTransfer)}}
}

func (s *Server) requestTransfer(w http.ResponseWriter, r *http.Request) {
	var body transferBody
	raw, p := readJSON(r, s.cfg.MaxBodyBytes, false, &body)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	if body.ID == "" {
		body.ID = uuid.Must(uuid.NewV7()).String()
	} else if p := httpapi.ID(body.ID); p != nil {
		problem.Write(w, r, p)
		return
	}
	cc, p := s.parseCommandContext(r, raw)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	// Money leaves the source account: only its owner, or an operator, may
	// ask. (The process manager then moves it on the caller's behalf.)
	if httpapi.ID(body.From) == nil {
		owner, err := s.accounts.Owner(r.Context(), body.From)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		if !cc.caller.MayAccess(owner) {
			problem.Write(w, r, auth.Forbidden("the source account "+body.From+" does not exist or is not yours"))
			return
		}
	}
	cmd := transfer.RequestTransfer{From: body.From, To: body.To, Amount: body.Amount, Currency: body.Currency, Reference: body.Reference}
	runCommand(s, w, r, s.transfers, body.ID, transfer.Command(cmd), cc, true, "RequestTransfer")
}
