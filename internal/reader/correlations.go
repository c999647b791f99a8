package reader

import (
	"context"
	"math"
	"net/http"

	"github.com/tributary-es/tributary/internal/httpapi"
	"github.com/tributary-es/tributary/internal/problem"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
)

// CausationTree is every event of one correlation, arranged by what caused
// what: an event's children are the events it caused. Roots are events
// caused by something outside the log (a command); events caused by the
// same command are sibling roots.
//
// A correlation's size is the writers' to choose: the tree holds at most
// the reader's MaxCorrelationEvents, the earliest in global order (an
// event's cause comes before it), and says when it left the rest out.
//
// A caller who is not an operator gets the correlation as they may see it
// (auth.Principal.MaySee): the events they appended, or a process manager
// appended on their behalf, read from their own index, so the bound, the
// counts and read-your-writes apply to those alone, and nothing of anyone
// else's events shows — not even how many there are. An event whose cause
// they may not see is a root.
type CausationTree struct {
	CorrelationID string `json:"correlationId"`
	// Events is the number of events in the tree; TotalEvents the number
	// the correlation holds (that the caller may see). Truncated: the tree
	// holds only the earliest.
	Events      int     `json:"events"`
	TotalEvents int64   `json:"totalEvents"`
	Truncated   bool    `json:"truncated"`
	Roots       []*Node `json:"roots"`
}

// Node is one event in a causation tree.
type Node struct {
	correlation.Link
	Children []*Node `json:"children"`
}

// buildTree arranges links (in global order) into their causation tree;
// siblings stay in global order. An event whose cause is not among the
// links is a root; so is one that would close a cycle (which only corrupt
// data could hold), so that every event appears exactly once.
func buildTree(correlationID string, links []correlation.Link, total int64) CausationTree {
	nodes := make(map[string]*Node, len(links))
	ordered := make([]*Node, len(links))
	for i, l := range links {
		ordered[i] = &Node{Link: l, Children: []*Node{}}
		nodes[l.EventID] = ordered[i]
	}
	tree := CausationTree{CorrelationID: correlationID, Events: len(links), TotalEvents: total,
		Truncated: int64(len(links)) < total, Roots: []*Node{}}
	parentOf := make(map[*Node]*Node, len(links))
	for _, n := range ordered {
		parent, ok := nodes[n.CausationID]
		if ok && !above(n, parent, parentOf) {
			parent.Children = append(parent.Children, n)
			parentOf[n] = parent
		} else {
			tree.Roots = append(tree.Roots, n)
		}
	}
	return tree
}

// above tells whether n is m or one of m's ancestors in the tree so far.
func above(n, m *Node, parentOf map[*Node]*Node) bool {
	for ; m != nil; m = parentOf[m] {
		if m == n {
			return true
		}
	}
	return false
}

func (s *Server) getCorrelation(w http.ResponseWriter, r *http.Request) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !httpapi.IsToken(id) {
		problem.Write(w, r, problem.New(http.StatusBadRequest, "invalid-id", "Invalid correlation id",
			"a correlation id is 1 to 128 printable ASCII characters without spaces"))
		return
	}
	want, p := httpapi.QueryInt(r, "min_position", 0, 1, math.MaxInt64)
	if p != nil {
		problem.Write(w, r, p)
		return
	}
	// Operators read the whole correlation; anyone else the events they may
	// see, from their own index.
	first := func(ctx context.Context, limit int) ([]correlation.Link, int64, error) {
		if who.Operator {
			return correlation.First(ctx, s.reads, s.root, id, limit)
		}
		return correlation.FirstSeenBy(ctx, s.reads, s.root, id, who.Subject, limit)
	}
	has := func(ctx context.Context, position int64) (bool, error) {
		if who.Operator {
			return correlation.Has(ctx, s.reads, s.root, id, position)
		}
		return correlation.HasSeenBy(ctx, s.reads, s.root, id, who.Subject, position)
	}
	// Read-your-writes waits for the event at exactly that position: the
	// correlation's events lie on several partitions, projected each at its
	// own pace, so a later one being there proves nothing of it. For a
	// caller who may not see that event, it never comes.
	if want > 0 {
		found, err := s.await(r, 1, func(ctx context.Context) (int64, error) {
			ok, err := has(ctx, want)
			if ok {
				return 1, err
			}
			return 0, err
		})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if found == 0 {
			_, present, err := first(r.Context(), 0)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			writeStale(w, r, problem.New(http.StatusServiceUnavailable, "stale", "Read model is behind",
				"the correlation does not hold the event at the requested position yet; retry, or read without it to get what it has").
				With("requestedPosition", want).With("eventsPresent", present))
			return
		}
	}
	links, total, err := first(r.Context(), s.cfg.MaxCorrelationEvents)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The index already holds only what the caller may see; the policy is
	// asked all the same, so that the answer never shows more than it allows.
	visible := links[:0]
	for _, l := range links {
		if who.MaySee(l.Principal, l.OnBehalfOf) {
			visible = append(visible, l)
		}
	}
	total -= int64(len(links) - len(visible))
	if len(visible) == 0 {
		problem.Write(w, r, problem.New(http.StatusNotFound, "unknown-correlation", "Unknown correlation",
			"no event of correlation "+id+" in the read model"))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, buildTree(id, visible, total))
}
