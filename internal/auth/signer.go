package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer issues tokens with an Ed25519 key: the development issuer of
// `make run`, and the tests'. Production tokens come from a real identity
// provider; the platform only verifies them.
type Signer struct {
	key      ed25519.PrivateKey
	kid      string
	Issuer   string
	Audience string
}

// NewSigner returns a signer with a new random key.
func NewSigner(issuer, audience string) (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return newSigner(key, issuer, audience), nil
}

func newSigner(key ed25519.PrivateKey, issuer, audience string) *Signer {
	sum := sha256.Sum256(key.Public().(ed25519.PublicKey))
	return &Signer{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:12]), Issuer: issuer, Audience: audience}
}

// LoadOrCreateSigner reads the signer's key from keyFile, creating the file
// (mode 0600) with a new key when it does not exist.
func LoadOrCreateSigner(keyFile, issuer, audience string) (*Signer, error) {
	raw, err := os.ReadFile(keyFile)
	if errors.Is(err, os.ErrNotExist) {
		s, err := NewSigner(issuer, audience)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
			return nil, err
		}
		seed := base64.RawURLEncoding.EncodeToString(s.key.Seed())
		return s, os.WriteFile(keyFile, []byte(seed+"\n"), 0o600)
	}
	if err != nil {
		return nil, err
	}
	seed, err := base64.RawURLEncoding.DecodeString(string(trimNewline(raw)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s does not hold an Ed25519 seed (base64url)", keyFile)
	}
	return newSigner(ed25519.NewKeyFromSeed(seed), issuer, audience), nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// JWKS returns the public key set (RFC 7517) verifiers need.
func (s *Signer) JWKS() []byte {
	pub := s.key.Public().(ed25519.PublicKey)
	set := map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": s.kid,
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}}
	b, _ := json.Marshal(set)
	return b
}

// Token issues a token for subject with roles, valid for ttl from now.
func (s *Signer) Token(subject string, roles []string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": s.Issuer, "aud": s.Audience, "sub": subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	if len(roles) > 0 {
		claims["roles"] = roles
	}
	return s.Sign(claims)
}

// Sign signs arbitrary claims (tests use it for tokens that must fail).
func (s *Signer) Sign(claims jwt.MapClaims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = s.kid
	return t.SignedString(s.key)
}
