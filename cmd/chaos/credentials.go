package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
)

// The chaos run's identity provider: the issuer and audience of its tokens,
// and the operator role it gives the operator.
const (
	chaosIssuer   = "https://chaos.tributary.invalid"
	chaosAudience = "tributary-chaos"
	operatorRole  = "operator"
	// tokenLifetime outlasts any run: a token that expires mid-run would
	// turn owners into strangers.
	tokenLifetime = 24 * time.Hour
)

// credentials are what the load's clients authenticate with: a bearer token
// for every principal of the plan and for the operator, signed by a key
// whose public half the writer trusts (its JWKS file); and, for the
// forgers, tokens in the owners' names signed by a key nobody trusts.
type credentials struct {
	jwksFile string
	bearer   map[string]string // principal → "Bearer <JWT>"
	forged   map[string]string // principal → "Bearer <JWT of an untrusted key>"
}

// newCredentials makes a signing key, writes its key set into dir and
// issues the plan's tokens.
func newCredentials(dir string, p plan) (*credentials, error) {
	signer, err := auth.NewSigner(chaosIssuer, chaosAudience)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	forger, err := auth.NewSigner(chaosIssuer, chaosAudience)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	c := &credentials{jwksFile: filepath.Join(dir, "jwks.json"), bearer: make(map[string]string), forged: make(map[string]string)}
	if err := os.WriteFile(c.jwksFile, signer.JWKS(), 0o600); err != nil {
		return nil, err
	}
	issue := func(s *auth.Signer, subject string, roles []string) (string, error) {
		token, err := s.Token(subject, roles, tokenLifetime)
		if err != nil {
			return "", fmt.Errorf("token for %s: %w", subject, err)
		}
		return "Bearer " + token, nil
	}
	if c.bearer[operator], err = issue(signer, operator, []string{operatorRole}); err != nil {
		return nil, err
	}
	for i := range p.principals {
		name := p.principal(i)
		if c.bearer[name], err = issue(signer, name, nil); err != nil {
			return nil, err
		}
		if c.forged[name], err = issue(forger, name, nil); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// writerArgs are the flags that make a writer verify the tokens (as flags,
// which win over any AUTH_* variable in chaos's own environment).
func (c *credentials) writerArgs() []string {
	return []string{"--auth-mode", "jwt", "--auth-jwks-file", c.jwksFile, "--auth-jwks-url", "",
		"--auth-issuer", chaosIssuer, "--auth-audience", chaosAudience,
		"--auth-roles-claim", "roles", "--auth-operator-roles", operatorRole}
}

// authorization is the Authorization header command c goes out with; ""
// for none.
func (c *credentials) authorization(cmd command) string {
	switch cmd.as {
	case asAnonymous:
		return ""
	case asForger:
		return c.forged[cmd.principal]
	}
	return c.bearer[cmd.principal]
}
