// Package auth establishes who is asking and decides what they may do: it
// verifies bearer JWTs (against a JWKS URL or a static key set), or trusts
// an authenticating proxy only where told to, and holds the platform's
// access policy (Policy) in one place.
package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/tributary-es/tributary/internal/problem"
)

// Principal is who is asking, as the authenticator established it.
type Principal struct {
	// Subject names the caller: a token's "sub" claim, or what the trusted
	// proxy said. It is the principal recorded on the events they cause.
	Subject string
	// Roles are the caller's roles or scopes, from the configured claim.
	Roles []string
	// Operator: the caller holds one of the operator roles, and may act on
	// and read every stream and read model.
	Operator bool
}

// HasRole tells whether p holds role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the authenticator put in ctx; false
// when there is none (the request was not authenticated).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// ErrForbidden is returned where a principal asks for what the policy does
// not allow; the HTTP layer answers 403 (see Forbidden).
var ErrForbidden = errors.New("forbidden")

// Refuse is an ErrForbidden whose message is detail: what the caller is
// told (Forbidden(err.Error())).
func Refuse(detail string) error { return &refusal{detail} }

type refusal struct{ detail string }

func (e *refusal) Error() string { return e.detail }

func (e *refusal) Unwrap() error { return ErrForbidden }

// Unauthorized is the 401 problem for a request without valid credentials.
func Unauthorized(detail string) *problem.Problem {
	return problem.New(http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
}

// Forbidden is the 403 problem for a request the policy refuses.
func Forbidden(detail string) *problem.Problem {
	return problem.New(http.StatusForbidden, "forbidden", "Forbidden", detail)
}
