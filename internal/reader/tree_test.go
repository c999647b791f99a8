package reader

import (
	"testing"

	"github.com/tributary-es/tributary/internal/readmodels/correlation"
)

// Every link appears exactly once in the tree, even when the data names a
// cause that is missing or closes a cycle.
func TestBuildTreeKeepsEveryEventOnce(t *testing.T) {
	link := func(id, cause string, pos int64) correlation.Link {
		return correlation.Link{EventID: id, CausationID: cause, GlobalPosition: pos}
	}
	tree := buildTree("c", []correlation.Link{
		link("a", "cmd", 1), link("b", "a", 2), link("c", "a", 3), link("d", "c", 4),
		link("orphan", "not-projected-yet", 5),
		link("x", "y", 6), link("y", "x", 7), // corrupt: a cycle
	}, 7)
	var order []string
	var walk func(depth int, ns []*Node)
	walk = func(depth int, ns []*Node) {
		for _, n := range ns {
			order = append(order, string(rune('0'+depth))+n.EventID)
			walk(depth+1, n.Children)
		}
	}
	walk(0, tree.Roots)
	want := []string{"0a", "1b", "1c", "2d", "0orphan", "0y", "1x"}
	if len(order) != len(want) || tree.Events != 7 || tree.TotalEvents != 7 || tree.Truncated {
		t.Fatalf("tree %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("tree %v, want %v", order, want)
		}
	}
}
