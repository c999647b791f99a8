package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tributary-es/tributary/internal/auth"
)

// Test token issuer and audience.
const (
	AuthIssuer   = "https://issuer.tributary.test"
	AuthAudience = "tributary-test"
)

// Auth returns a signer with a fresh key and an authenticator that verifies
// its tokens (from a JWKS file in t's temporary directory), as a server of a
// test is configured.
func Auth(t testing.TB) (*auth.Signer, *auth.Authenticator) {
	t.Helper()
	signer, err := auth.NewSigner(AuthIssuer, AuthAudience)
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.JWKSFile, cfg.Issuer, cfg.Audience = JWKSFile(t, signer), AuthIssuer, AuthAudience
	a, err := auth.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return signer, a
}

// JWKSFile writes signer's key set to a file in t's temporary directory.
func JWKSFile(t testing.TB, signer *auth.Signer) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, signer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// AuthEnv is the environment (name, value pairs, for Getenv) that makes a
// writer or reader process verify signer's tokens.
func AuthEnv(t testing.TB, signer *auth.Signer) []string {
	t.Helper()
	return []string{"AUTH_JWKS_FILE", JWKSFile(t, signer), "AUTH_ISSUER", signer.Issuer, "AUTH_AUDIENCE", signer.Audience}
}
