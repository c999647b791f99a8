package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "tributary-api"
)

// jwtAuthenticator verifies tokens of signer, from a JWKS file.
func jwtAuthenticator(t *testing.T, signer *Signer, mutate ...func(*Config)) *Authenticator {
	t.Helper()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, signer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.JWKSFile, cfg.Issuer, cfg.Audience = file, testIssuer, testAudience
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newTestSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner(testIssuer, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claims are valid claims for subject, to be changed by a test.
func claims(subject string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func sign(t *testing.T, s *Signer, c jwt.MapClaims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authenticate runs a request with the given Authorization header values
// through a's middleware; it returns the status and the principal next saw.
func authenticate(t *testing.T, a *Authenticator, authorization ...string) (int, Principal, http.Header, string) {
	t.Helper()
	var seen Principal
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			t.Error("the handler ran without a principal in its context")
		}
		seen = p
	}), "/healthz")
	req := httptest.NewRequest(http.MethodGet, "/v1/things", nil)
	for _, v := range authorization {
		req.Header.Add("Authorization", v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, seen, rec.Header(), rec.Body.String()
}

func TestValidTokenNamesThePrincipal(t *testing.T) {
	s := newTestSigner(t)
	a := jwtAuthenticator(t, s)
	c := claims("alice")
	c["roles"] = []string{"reader", "operator"}
	code, p, _, body := authenticate(t, a, "Bearer "+sign(t, s, c))
	if code != http.StatusOK || p.Subject != "alice" || !p.Operator || !p.HasRole("reader") {
		t.Fatalf("status %d, principal %+v: %s", code, p, body)
	}
	// Again: served from the cache of verified tokens, same principal.
	if code, p2, _, _ := authenticate(t, a, "bearer "+sign(t, s, c)); code != http.StatusOK || p2.Subject != "alice" {
		t.Fatalf("second use: %d %+v", code, p2)
	}
	tok, err := s.Token("bob", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, p, _, _ := authenticate(t, a, "Bearer "+tok); code != http.StatusOK || p.Subject != "bob" || p.Operator || len(p.Roles) != 0 {
		t.Fatalf("bob: %d %+v", code, p)
	}
}

// TestBadTokensAreRefused: every way a token can be wrong is a 401
// problem+json with a Bearer challenge, and the handler never runs.
func TestBadTokensAreRefused(t *testing.T) {
	s := newTestSigner(t)
	a := jwtAuthenticator(t, s)
	other := newTestSigner(t) // a key the JWKS does not hold
	valid := sign(t, s, claims("alice"))
	parts := strings.Split(valid, ".")

	with := func(change func(jwt.MapClaims)) string {
		c := claims("alice")
		change(c)
		return sign(t, s, c)
	}
	// alg none: an unsigned token with a valid payload.
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + s.kid + `"}`))
	algNone := noneHeader + "." + parts[1] + "."
	// HS256 keyed with the public key's bytes (algorithm confusion).
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("alice"))
	hs.Header["kid"] = s.kid
	confused, err := hs.SignedString([]byte(s.key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	// A forged payload under the original signature.
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + testIssuer + `","aud":"` + testAudience +
		`","sub":"mallory","roles":["operator"],"exp":` + jsonNumber(time.Now().Add(time.Hour).Unix()) + `}`))

	cases := []struct {
		name, authorization string
	}{
		{"no token", ""},
		{"not bearer", "Basic YWxpY2U6c2VjcmV0"},
		{"bearer without token", "Bearer "},
		{"garbage", "Bearer not.a.jwt"},
		{"forged payload", "Bearer " + parts[0] + "." + forgedPayload + "." + parts[2]},
		{"tampered signature", "Bearer " + parts[0] + "." + parts[1] + "." + flip(parts[2])},
		{"alg none", "Bearer " + algNone},
		{"HS256 with the public key", "Bearer " + confused},
		{"key not in the JWKS", "Bearer " + sign(t, other, claims("alice"))},
		{"expired", "Bearer " + with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })},
		{"no expiry", "Bearer " + with(func(c jwt.MapClaims) { delete(c, "exp") })},
		{"not yet valid", "Bearer " + with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() })},
		{"issued in the future", "Bearer " + with(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(5 * time.Minute).Unix() })},
		{"wrong audience", "Bearer " + with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })},
		{"no audience", "Bearer " + with(func(c jwt.MapClaims) { delete(c, "aud") })},
		{"wrong issuer", "Bearer " + with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })},
		{"no subject", "Bearer " + with(func(c jwt.MapClaims) { delete(c, "sub") })},
		{"subject with a space", "Bearer " + with(func(c jwt.MapClaims) { c["sub"] = "alice smith" })},
		{"reserved subject", "Bearer " + with(func(c jwt.MapClaims) { c["sub"] = "process-manager" })},
		{"roles of the wrong type", "Bearer " + with(func(c jwt.MapClaims) { c["roles"] = 7 })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.authorization != "" {
				headers = []string{tc.authorization}
			}
			code, p, h, body := authenticate(t, a, headers...)
			if code != http.StatusUnauthorized {
				t.Fatalf("status %d (principal %+v), want 401: %s", code, p, body)
			}
			if h.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, `"status":401`) {
				t.Fatalf("not a problem document: %s %s", h.Get("Content-Type"), body)
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="tributary"`) {
				t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("two Authorization headers", func(t *testing.T) {
		if code, _, _, _ := authenticate(t, a, "Bearer "+valid, "Bearer "+valid); code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", code)
		}
	})
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// flip changes the signature's first character.
func flip(sig string) string {
	c := byte('A')
	if sig[0] == 'A' {
		c = 'B'
	}
	return string(c) + sig[1:]
}

func TestClockSkewIsAllowedAndCachedTokensExpire(t *testing.T) {
	s := newTestSigner(t)
	a := jwtAuthenticator(t, s, func(c *Config) { c.ClockSkew = time.Minute })
	now := time.Now()
	a.now = func() time.Time { return now }
	c := claims("alice")
	c["exp"] = now.Add(-30 * time.Second).Unix() // expired, but within the skew
	c["nbf"] = now.Add(30 * time.Second).Unix()  // not valid yet, but within the skew
	tok := sign(t, s, c)
	if code, _, _, body := authenticate(t, a, "Bearer "+tok); code != http.StatusOK {
		t.Fatalf("within the skew: status %d: %s", code, body)
	}
	// The cached token expires like any other.
	now = now.Add(2 * time.Minute)
	if code, _, _, _ := authenticate(t, a, "Bearer "+tok); code != http.StatusUnauthorized {
		t.Fatalf("past the skew from the cache: status %d, want 401", code)
	}
}

func TestRolesClaimIsConfigurable(t *testing.T) {
	s := newTestSigner(t)
	nested := jwtAuthenticator(t, s, func(c *Config) { c.RolesClaim = "realm_access.roles"; c.OperatorRoles = []string{"tributary-admin"} })
	c := claims("alice")
	c["realm_access"] = map[string]any{"roles": []string{"tributary-admin"}}
	c["roles"] = []string{"operator"} // not the configured claim: no operator
	if code, p, _, _ := authenticate(t, nested, "Bearer "+sign(t, s, c)); code != http.StatusOK || !p.Operator || p.HasRole("operator") {
		t.Fatalf("nested claim: %d %+v", code, p)
	}
	scoped := jwtAuthenticator(t, s, func(c *Config) { c.RolesClaim = "scope" })
	c = claims("bob")
	c["scope"] = "accounts:read operator"
	if code, p, _, _ := authenticate(t, scoped, "Bearer "+sign(t, s, c)); code != http.StatusOK || !p.Operator || !p.HasRole("accounts:read") {
		t.Fatalf("scope string: %d %+v", code, p)
	}
}

// TestJWKSURLIsFetchedAndRefreshedForNewKeys: a key set served over HTTP is
// used, and a token signed with a key the issuer added later is accepted
// once the set is fetched again for its unknown key id.
func TestJWKSURLIsFetchedAndRefreshedForNewKeys(t *testing.T) {
	first, second := newTestSigner(t), newTestSigner(t)
	var served atomic.Pointer[[]byte]
	jwks := first.JWKS()
	served.Store(&jwks)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*served.Load())
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.JWKSURL, cfg.Issuer, cfg.Audience = srv.URL, testIssuer, testAudience
	cfg.JWKSRefreshUnknownKey = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _, body := authenticate(t, a, "Bearer "+sign(t, first, claims("alice"))); code != http.StatusOK {
		t.Fatalf("first key: %d %s", code, body)
	}
	if code, _, _, _ := authenticate(t, a, "Bearer "+sign(t, second, claims("alice"))); code != http.StatusUnauthorized {
		t.Fatalf("unknown key before rotation: %d, want 401", code)
	}
	both := mergeJWKS(t, first.JWKS(), second.JWKS())
	served.Store(&both)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _, _ := authenticate(t, a, "Bearer "+sign(t, second, claims("alice")))
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated key was never accepted (%d fetches)", fetches.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mergeJWKS(t *testing.T, sets ...[]byte) []byte {
	t.Helper()
	var all []json.RawMessage
	for _, s := range sets {
		var set struct{ Keys []json.RawMessage }
		if err := json.Unmarshal(s, &set); err != nil {
			t.Fatal(err)
		}
		all = append(all, set.Keys...)
	}
	b, _ := json.Marshal(map[string]any{"keys": all})
	return b
}

// TestRSAKeysFromAJWKSFile: the usual identity providers sign with RS256.
func TestRSAKeysFromAJWKSFile(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(*rsa.PublicKey)
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "rsa-1",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString([]byte{1, 0, 1}),
	}}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.JWKSFile, cfg.Issuer, cfg.Audience = file, testIssuer, testAudience
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("carol"))
	tok.Header["kid"] = "rsa-1"
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	if code, p, _, body := authenticate(t, a, "Bearer "+raw); code != http.StatusOK || p.Subject != "carol" {
		t.Fatalf("RS256: %d %+v %s", code, p, body)
	}
}

func TestPublicPathsNeedNoToken(t *testing.T) {
	a := jwtAuthenticator(t, newTestSigner(t))
	ran := false
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true }), "/healthz")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if !ran || rec.Code != http.StatusOK {
		t.Fatalf("public path: ran %v, status %d", ran, rec.Code)
	}
}

func TestProxyModeTrustsOnlyItsProxies(t *testing.T) {
	a, err := New(context.Background(), Config{Mode: ModeProxy, ProxyPrincipalHeader: "X-Principal", ProxyRolesHeader: "X-Roles",
		OperatorRoles: []string{"operator"}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	try := func(remote string, headers ...string) (int, Principal) {
		var seen Principal
		h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen, _ = FromContext(r.Context()) }))
		req := httptest.NewRequest(http.MethodGet, "/v1/things", nil)
		req.RemoteAddr = remote
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Add(headers[i], headers[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, seen
	}
	if code, p := try("10.1.2.3:4000", "X-Principal", "alice", "X-Roles", "operator, auditor"); code != http.StatusOK || p.Subject != "alice" || !p.Operator || !p.HasRole("auditor") {
		t.Fatalf("from the proxy: %d %+v", code, p)
	}
	if code, _ := try("[::ffff:10.1.2.3]:4000", "X-Principal", "alice"); code != http.StatusOK {
		t.Fatalf("from the proxy over IPv4-mapped IPv6: %d", code)
	}
	for name, tc := range map[string][]string{
		"from elsewhere":    {"192.168.1.1:4000", "X-Principal", "alice"},
		"no principal":      {"10.1.2.3:4000"},
		"two principals":    {"10.1.2.3:4000", "X-Principal", "alice", "X-Principal", "bob"},
		"reserved":          {"10.1.2.3:4000", "X-Principal", "process-manager"},
		"non-ASCII subject": {"10.1.2.3:4000", "X-Principal", "ålice"},
	} {
		if code, p := try(tc[0], tc[1:]...); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %+v, want 401", name, code, p)
		}
	}
}

func TestOffModeIsTheAnonymousOperator(t *testing.T) {
	a, err := New(context.Background(), Config{Mode: ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	if code, p, _, _ := authenticate(t, a); code != http.StatusOK || p.Subject != "anonymous" || !p.Operator {
		t.Fatalf("off: %d %+v", code, p)
	}
}

func TestNewRefusesIncompleteSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, newTestSigner(t).JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	base := DefaultConfig()
	base.JWKSFile, base.Issuer, base.Audience = file, testIssuer, testAudience
	for name, change := range map[string]func(*Config){
		"unknown mode":    func(c *Config) { c.Mode = "maybe" },
		"no issuer":       func(c *Config) { c.Issuer = "" },
		"no audience":     func(c *Config) { c.Audience = "" },
		"no key set":      func(c *Config) { c.JWKSFile = "" },
		"both key sets":   func(c *Config) { c.JWKSURL = "https://idp.test/jwks" },
		"alg none":        func(c *Config) { c.Algorithms = []string{"none"} },
		"missing file":    func(c *Config) { c.JWKSFile = filepath.Join(t.TempDir(), "nothing") },
		"empty key set":   func(c *Config) { c.JWKSFile = writeFile(t, `{"keys":[]}`) },
		"not a key set":   func(c *Config) { c.JWKSFile = writeFile(t, `{}`) },
		"unreachable URL": func(c *Config) { c.JWKSFile, c.JWKSURL = "", "http://127.0.0.1:1/jwks.json" },
		"proxy, no peers": func(c *Config) { c.Mode = ModeProxy },
	} {
		cfg := base
		change(&cfg)
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestPolicy(t *testing.T) {
	alice, op := Principal{Subject: "alice"}, Principal{Subject: "root", Operator: true}
	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"owner may access", alice.MayAccess("alice"), true},
		{"stranger may not", alice.MayAccess("bob"), false},
		{"nobody's stream is the operators'", alice.MayAccess(""), false},
		{"operator may access", op.MayAccess("bob"), true},
		{"only operators list", alice.MayList(), false},
		{"operator lists", op.MayList(), true},
		{"sees own events", alice.MaySee("alice", ""), true},
		{"sees what is done on her behalf", alice.MaySee("process-manager", "alice"), true},
		{"not what is done on another's", alice.MaySee("process-manager", "bob"), false},
		{"not another's events", alice.MaySee("bob", ""), false},
		{"operator sees all", op.MaySee("bob", ""), true},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
