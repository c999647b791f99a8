package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
)

// The benchmark's identity provider, and how many principals own the
// accounts: account i belongs to principal i mod benchPrincipals, which
// opens it and sends its commands and queries with its own token.
const (
	benchIssuer     = "https://bench.tributary.invalid"
	benchAudience   = "tributary-bench"
	benchPrincipals = 16
	// benchTokenLifetime outlasts any run.
	benchTokenLifetime = 24 * time.Hour
)

// benchAuth is what the writer and the reader verify tokens with — an
// authenticator in jwt mode over the key set of a signer of the
// benchmark's, as cmd/writer and cmd/reader build it from AUTH_JWKS_FILE —
// and the principals' tokens: the cost of verifying them is in the
// figures.
type benchAuth struct {
	authenticator *auth.Authenticator
	bearer        []string // principal → "Bearer <JWT>"
}

func newBenchAuth(ctx context.Context) (*benchAuth, error) {
	signer, err := auth.NewSigner(benchIssuer, benchAudience)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	dir, err := os.MkdirTemp("", "tributary-bench-auth-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // auth.New reads the file once
	cfg := auth.DefaultConfig()
	cfg.JWKSFile, cfg.Issuer, cfg.Audience = filepath.Join(dir, "jwks.json"), benchIssuer, benchAudience
	if err := os.WriteFile(cfg.JWKSFile, signer.JWKS(), 0o600); err != nil {
		return nil, err
	}
	b := &benchAuth{bearer: make([]string, benchPrincipals)}
	if b.authenticator, err = auth.New(ctx, cfg); err != nil {
		return nil, err
	}
	for p := range b.bearer {
		token, err := signer.Token(fmt.Sprintf("bench-owner-%02d", p), nil, benchTokenLifetime)
		if err != nil {
			return nil, fmt.Errorf("auth: token: %w", err)
		}
		b.bearer[p] = "Bearer " + token
	}
	return b, nil
}

// authMethod says in the reports how requests authenticate.
var authMethod = fmt.Sprintf("every command and query carries a bearer JWT (EdDSA) of its account's owner, one of %d principals;\n"+
	"            the writer and the reader verify it as AUTH_MODE=jwt with a JWKS file does, and check the owner", benchPrincipals)

// owner returns the Authorization header of account i's owner.
func (b *benchAuth) owner(i int) string { return b.bearer[i%len(b.bearer)] }
