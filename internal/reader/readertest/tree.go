package readertest

import (
	"slices"

	"github.com/tributary-es/tributary/internal/reader"
)

// EventIDs are the ids of every event in tree, at any depth, sorted.
func EventIDs(tree reader.CausationTree) []string {
	var out []string
	var walk func([]*reader.Node)
	walk = func(ns []*reader.Node) {
		for _, n := range ns {
			out = append(out, n.EventID)
			walk(n.Children)
		}
	}
	walk(tree.Roots)
	slices.Sort(out)
	return out
}
