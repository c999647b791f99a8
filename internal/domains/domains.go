// Package domains is the build list: the domains this build of Tributary
// serves. Adding a domain is one line here; everything else about it is
// in its own package (see docs/DOMAINS.md).
package domains

import (
	"github.com/tributary-es/tributary/internal/domains/accountdomain"
	"github.com/tributary-es/tributary/internal/domains/transferdomain"
	"github.com/tributary-es/tributary/internal/registry"
)

// All returns the registry of this build's domains. Order matters only
// where a domain reads another's events: transfers need accounts.
func All() (*registry.Registry, error) {
	return registry.New(
		accountdomain.Domain(),
		transferdomain.Domain(),
	)
}

// Must is All for tests and tools: it panics if this build's domains are
// registered wrong, which is a bug to fix at once.
func Must() *registry.Registry {
	r, err := All()
	if err != nil {
		panic(err)
	}
	return r
}
