package auth

// The access policy of the platform, in one place (DESIGN G11):
//
//   - Every route but the probes, /metrics and /openapi.json needs an
//     authenticated principal (Authenticator.Middleware).
//   - A stream (an aggregate's events) belongs to the principal that
//     appended its first event. Its owner, or an operator, may act on it and
//     read it, and read every read model kept of it (MayAccess).
//   - Any authenticated principal may start a new stream (open an account,
//     request a transfer out of an account it may act on).
//   - Listings across owners (the account directory) are for operators
//     only (MayList).
//   - A causation tree shows a principal only the events it caused, itself
//     or through a process manager acting on its behalf (MaySee); an
//     operator sees them all.
//   - Internal actors (a process manager) append without a principal check,
//     recording whom they act for as the events' onBehalfOf.

// MayAccess tells whether p may act on or read what owner owns. An empty
// owner (unknown) is nobody's: only operators may.
func (p Principal) MayAccess(owner string) bool {
	return p.Operator || (owner != "" && owner == p.Subject)
}

// MayList tells whether p may read listings that span every owner.
func (p Principal) MayList() bool { return p.Operator }

// MaySee tells whether p may see an event recorded with principal and
// onBehalfOf.
func (p Principal) MaySee(principal, onBehalfOf string) bool {
	if p.Operator {
		return true
	}
	if onBehalfOf != "" {
		return onBehalfOf == p.Subject
	}
	return principal == p.Subject
}
