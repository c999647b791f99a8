package readertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/testenv"
)

// The principals of the tests: the owner writes and reads its own
// aggregates (every event a Pipeline writes is the owner's unless a test
// says otherwise), the stranger owns nothing, the operator may read
// everything.
const (
	Owner    = "ada"
	Stranger = "mallory"
	Operator = "olga"
)

// Caller is who sends a request.
type Caller int

// The callers.
const (
	AsOwner Caller = iota
	AsStranger
	AsOperator
	Anonymous // no Authorization header
	Forged    // a token signed with a key the servers do not trust
)

func (c Caller) String() string {
	return [...]string{"owner", "stranger", "operator", "anonymous", "forged"}[c]
}

// Issuer is the tests' identity provider: a signer whose key set the
// servers' authenticator (Authn) trusts, another whose it does not, and
// tokens for the test principals.
type Issuer struct {
	Signer, Other *auth.Signer
	Authn         *auth.Authenticator
	mu            sync.Mutex
	tokens        map[Caller]string
}

// NewIssuer makes an Issuer with fresh keys.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	signer, err := auth.NewSigner("test-issuer", "test-audience")
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewSigner("test-issuer", "test-audience")
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.Mode, cfg.JWKSFile, cfg.Issuer, cfg.Audience = auth.ModeJWT, testenv.JWKSFile(t, signer), "test-issuer", "test-audience"
	authn, err := auth.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{Signer: signer, Other: other, Authn: authn, tokens: make(map[Caller]string)}
}

// Authorization is the Authorization header value c sends; "" for none.
func (is *Issuer) Authorization(t testing.TB, c Caller) string {
	t.Helper()
	if c == Anonymous {
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
	case AsOwner:
		tok, err = is.Signer.Token(Owner, nil, time.Hour)
	case AsStranger:
		tok, err = is.Signer.Token(Stranger, []string{"customer"}, time.Hour)
	case AsOperator:
		tok, err = is.Signer.Token(Operator, []string{"operator"}, time.Hour)
	case Forged:
		tok, err = is.Other.Token(Operator, []string{"operator"}, time.Hour)
	}
	if err != nil {
		t.Fatal(err)
	}
	is.tokens[c] = tok
	return "Bearer " + tok
}
