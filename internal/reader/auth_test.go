package reader_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
)

// The principals of the tests: the owner writes and reads its own accounts
// (every event the pipeline writes is the owner's), the stranger owns
// nothing, the operator may read everything.
const (
	owner    = "ada"
	stranger = "mallory"
	operator = "olga"
)

// caller is who sends a request to the reader.
type caller int

const (
	asOwner caller = iota
	asStranger
	asOperator
	anonymous // no Authorization header
	forged    // a token signed with a key the reader does not trust
)

func (c caller) String() string {
	return [...]string{"owner", "stranger", "operator", "anonymous", "forged"}[c]
}

// issuer is the tests' identity provider: a signer whose key set the
// reader's (and the writer's) authenticator trusts, and tokens for the
// test principals.
type issuer struct {
	signer, other *auth.Signer
	authn         *auth.Authenticator
	mu            sync.Mutex
	tokens        map[caller]string
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	signer, err := auth.NewSigner("test-issuer", "test-audience")
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewSigner("test-issuer", "test-audience")
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(context.Background(), authConfig(jwksFile(t, signer)))
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{signer: signer, other: other, authn: authn, tokens: make(map[caller]string)}
}

// authConfig is the authenticator configuration that trusts the key set in
// file for the tests' issuer and audience.
func authConfig(file string) auth.Config {
	cfg := auth.DefaultConfig()
	cfg.Mode, cfg.JWKSFile, cfg.Issuer, cfg.Audience = auth.ModeJWT, file, "test-issuer", "test-audience"
	return cfg
}

// jwksFile writes signer's public key set to a file of the test's own.
func jwksFile(t testing.TB, signer *auth.Signer) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, signer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// authorization is the Authorization header value c sends; "" for none.
func (is *issuer) authorization(t testing.TB, c caller) string {
	t.Helper()
	if c == anonymous {
		return ""
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if tok, ok := is.tokens[c]; ok {
		return "Bearer " + tok
	}
	var tok string
	var err error
	switch c {
	case asOwner:
		tok, err = is.signer.Token(owner, nil, time.Hour)
	case asStranger:
		tok, err = is.signer.Token(stranger, []string{"customer"}, time.Hour)
	case asOperator:
		tok, err = is.signer.Token(operator, []string{"operator"}, time.Hour)
	case forged:
		tok, err = is.other.Token(operator, []string{"operator"}, time.Hour)
	}
	if err != nil {
		t.Fatal(err)
	}
	is.tokens[c] = tok
	return "Bearer " + tok
}
