package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/tributary-es/tributary/internal/problem"
)

// Mode is how requests are authenticated.
type Mode string

// The modes.
const (
	// ModeJWT verifies a bearer JWT on every request (the default).
	ModeJWT Mode = "jwt"
	// ModeProxy trusts the principal (and roles) headers an authenticating
	// proxy sets, on requests from the proxy's addresses only.
	ModeProxy Mode = "proxy"
	// ModeOff authenticates nobody: every caller is the operator
	// "anonymous". For local experiments only; never the default.
	ModeOff Mode = "off"
)

// Config says how to authenticate requests.
type Config struct {
	Mode Mode
	// JWKSURL is where the issuer publishes its JSON Web Key Set; it is
	// fetched at start and refreshed in the background (and when a token
	// names a key id it does not know). JWKSFile is a static key set on
	// disk instead. ModeJWT needs exactly one of them.
	JWKSURL, JWKSFile string
	// JWKSRefreshUnknownKey bounds how often a token naming a key id the
	// set does not hold makes the set be fetched again (a key rotation).
	JWKSRefreshUnknownKey time.Duration
	// Issuer and Audience must be the token's "iss" and one of its "aud".
	Issuer, Audience string
	// Algorithms are the signature algorithms accepted (never "none").
	Algorithms []string
	// ClockSkew is the leeway for "exp", "nbf" and "iat".
	ClockSkew time.Duration
	// RolesClaim names the claim holding the caller's roles: an array of
	// strings or one space-separated string (as OAuth's "scope"); a dotted
	// name reaches into objects (e.g. "realm_access.roles").
	RolesClaim string
	// OperatorRoles are the roles that make a principal an operator.
	OperatorRoles []string
	// ProxyPrincipalHeader and ProxyRolesHeader are the headers the proxy
	// sets (ModeProxy); roles are comma-separated.
	ProxyPrincipalHeader, ProxyRolesHeader string
	// TrustedProxies are the addresses requests must come from (ModeProxy).
	TrustedProxies []netip.Prefix
}

// DefaultConfig is a Config with the defaults of every optional setting.
func DefaultConfig() Config {
	return Config{
		Mode: ModeJWT, ClockSkew: 30 * time.Second, RolesClaim: "roles", JWKSRefreshUnknownKey: 30 * time.Second,
		Algorithms:           []string{"EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
		OperatorRoles:        []string{"operator", "admin"},
		ProxyPrincipalHeader: "X-Principal", ProxyRolesHeader: "X-Roles",
	}
}

// reservedSubjects are principals the platform records for its own actors:
// no caller may take their name.
var reservedSubjects = []string{"anonymous", "process-manager"}

// Authenticator establishes the principal of each request.
type Authenticator struct {
	cfg     Config
	keys    jwt.Keyfunc
	parser  *jwt.Parser
	now     func() time.Time
	trusted []netip.Prefix
	// verified caches tokens whose signature and claims were checked, so a
	// client's next requests cost a map lookup, not a signature check; the
	// time claims are checked again on every use.
	verified *lru.Cache[string, verifiedToken]
}

type verifiedToken struct {
	principal Principal
	notBefore time.Time
	expires   time.Time
}

// New returns the authenticator cfg describes. For a JWKS URL it fetches the
// key set before it returns (bounded by ctx) and keeps it fresh until ctx
// ends.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, now: time.Now}
	switch cfg.Mode {
	case ModeOff:
		return a, nil
	case ModeProxy:
		if len(cfg.TrustedProxies) == 0 {
			return nil, errors.New("auth: proxy mode needs the trusted proxies' addresses")
		}
		if cfg.ProxyPrincipalHeader == "" {
			return nil, errors.New("auth: proxy mode needs the principal header's name")
		}
		a.trusted = cfg.TrustedProxies
		return a, nil
	case ModeJWT:
	default:
		return nil, fmt.Errorf("auth: unknown mode %q (jwt, proxy or off)", cfg.Mode)
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: jwt mode needs the issuer and the audience tokens must name")
	}
	if slices.ContainsFunc(cfg.Algorithms, func(alg string) bool { return strings.EqualFold(alg, "none") }) || len(cfg.Algorithms) == 0 {
		return nil, errors.New("auth: the accepted algorithms must be signature algorithms, not none")
	}
	var kf keyfunc.Keyfunc
	var err error
	switch {
	case (cfg.JWKSURL == "") == (cfg.JWKSFile == ""):
		return nil, errors.New("auth: jwt mode needs either a JWKS URL or a JWKS file, not both")
	case cfg.JWKSFile != "":
		raw, rerr := os.ReadFile(cfg.JWKSFile)
		if rerr != nil {
			return nil, fmt.Errorf("auth: read the JWKS file: %w", rerr)
		}
		if kf, err = keyfunc.NewJWKSetJSON(json.RawMessage(raw)); err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: %w", cfg.JWKSFile, err)
		}
	default:
		every := cfg.JWKSRefreshUnknownKey
		if every <= 0 {
			every = DefaultConfig().JWKSRefreshUnknownKey
		}
		// The first fetch must succeed: a verifier without keys would start
		// and refuse every caller.
		firstFetchMustSucceed := false
		override := keyfunc.Override{RefreshUnknownKID: rate.NewLimiter(rate.Every(every), 1), HTTPTimeout: 10 * time.Second,
			NoErrorReturnFirstHTTPReq: &firstFetchMustSucceed}
		if kf, err = keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, override); err != nil {
			return nil, fmt.Errorf("auth: JWKS %s: %w", cfg.JWKSURL, err)
		}
	}
	if set, err := kf.Storage().KeyReadAll(ctx); err != nil || len(set) == 0 {
		return nil, fmt.Errorf("auth: the key set holds no key to verify tokens with (%v)", err)
	}
	a.keys = kf.Keyfunc
	a.parser = jwt.NewParser(
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.ClockSkew),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	)
	a.verified, _ = lru.New[string, verifiedToken](10_000) // only fails for a size <= 0
	return a, nil
}

// Mode returns the authenticator's mode.
func (a *Authenticator) Mode() Mode { return a.cfg.Mode }

// Middleware authenticates every request to next but those for the public
// paths (probes, metrics, API documents: no data of anyone's). A request
// without valid credentials is answered 401 problem+json; an authenticated
// one reaches next with its Principal in the context (FromContext).
func (a *Authenticator) Middleware(next http.Handler, public ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(public, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		p, prob := a.Authenticate(r)
		if prob != nil {
			if a.cfg.Mode == ModeJWT {
				challenge := `Bearer realm="tributary"`
				if r.Header.Get("Authorization") != "" {
					challenge += `, error="invalid_token"`
				}
				w.Header().Set("WWW-Authenticate", challenge)
			}
			problem.Write(w, r, prob)
			return
		}
		authenticated := r.WithContext(NewContext(r.Context(), p))
		next.ServeHTTP(w, authenticated)
		// The ServeMux records the route that matched on the request it was
		// given; middleware outside this one (latency by route) reads it.
		r.Pattern = authenticated.Pattern
	})
}

// Require authenticates every request to next with a, but those for the
// public paths; with a nil a it refuses them all with 401 (fails closed: a
// server built without an authenticator serves no one's data).
func Require(a *Authenticator, next http.Handler, public ...string) http.Handler {
	if a != nil {
		return a.Middleware(next, public...)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(public, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="tributary"`)
		problem.Write(w, r, Unauthorized("no authenticator is configured: this server serves no one"))
	})
}

// Authenticate establishes r's principal, or says why it cannot (a 401
// problem).
func (a *Authenticator) Authenticate(r *http.Request) (Principal, *problem.Problem) {
	switch a.cfg.Mode {
	case ModeOff:
		return Principal{Subject: "anonymous", Operator: true}, nil
	case ModeProxy:
		return a.fromProxy(r)
	}
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return Principal{}, Unauthorized("send a bearer token: Authorization: Bearer <JWT>")
	}
	if len(values) > 1 {
		return Principal{}, Unauthorized("send one Authorization header, not several")
	}
	scheme, raw, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" || strings.ContainsAny(raw, " \t") {
		return Principal{}, Unauthorized("the Authorization header must be: Bearer <JWT>")
	}
	p, err := a.verify(raw)
	if err != nil {
		return Principal{}, Unauthorized("the bearer token is not accepted: " + err.Error())
	}
	return p, nil
}

// verify checks a JWT's signature and claims and returns its principal.
func (a *Authenticator) verify(raw string) (Principal, error) {
	now := a.now()
	if v, ok := a.verified.Get(raw); ok {
		switch {
		case now.After(v.expires.Add(a.cfg.ClockSkew)):
			a.verified.Remove(raw)
			return Principal{}, jwt.ErrTokenExpired
		case now.Add(a.cfg.ClockSkew).Before(v.notBefore):
			return Principal{}, jwt.ErrTokenNotValidYet
		}
		return v.principal, nil
	}
	claims := jwt.MapClaims{}
	if _, err := a.parser.ParseWithClaims(raw, claims, a.keys); err != nil {
		return Principal{}, err
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return Principal{}, errors.New("the token has no subject (sub)")
	}
	if !validSubject(sub) {
		return Principal{}, errors.New("the token's subject is not a principal name this platform accepts (1 to 128 printable ASCII characters, not a reserved name)")
	}
	roles, err := rolesAt(claims, a.cfg.RolesClaim)
	if err != nil {
		return Principal{}, err
	}
	p := a.principal(sub, roles)
	exp, _ := claims.GetExpirationTime() // required by the parser
	v := verifiedToken{principal: p, expires: exp.Time}
	if nbf, _ := claims.GetNotBefore(); nbf != nil {
		v.notBefore = nbf.Time
	}
	a.verified.Add(raw, v)
	return p, nil
}

func (a *Authenticator) principal(sub string, roles []string) Principal {
	p := Principal{Subject: sub, Roles: roles}
	for _, role := range roles {
		if slices.Contains(a.cfg.OperatorRoles, role) {
			p.Operator = true
		}
	}
	return p
}

// fromProxy reads the principal an authenticating proxy set, on a request
// that comes from one of the trusted addresses.
func (a *Authenticator) fromProxy(r *http.Request) (Principal, *problem.Problem) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !slices.ContainsFunc(a.trusted, func(p netip.Prefix) bool { return p.Contains(addr.Unmap()) }) {
		return Principal{}, Unauthorized("requests must come through the authenticating proxy")
	}
	subjects := r.Header.Values(a.cfg.ProxyPrincipalHeader)
	if len(subjects) != 1 || !validSubject(subjects[0]) {
		return Principal{}, Unauthorized("the proxy must set exactly one " + a.cfg.ProxyPrincipalHeader +
			" header: 1 to 128 printable ASCII characters, not a reserved name")
	}
	var roles []string
	if a.cfg.ProxyRolesHeader != "" {
		for _, v := range r.Header.Values(a.cfg.ProxyRolesHeader) {
			for role := range strings.SplitSeq(v, ",") {
				if role = strings.TrimSpace(role); role != "" {
					roles = append(roles, role)
				}
			}
		}
	}
	return a.principal(subjects[0], roles), nil
}

// validSubject: printable ASCII without spaces, 1 to 128 characters, and
// none of the names the platform records for its own actors.
func validSubject(s string) bool {
	if len(s) == 0 || len(s) > 128 || slices.Contains(reservedSubjects, s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// rolesAt reads the roles at a dotted claim path: an array of strings, or a
// space-separated string. A missing claim is no roles.
func rolesAt(claims jwt.MapClaims, path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	var v any = map[string]any(claims)
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, nil
		}
		if v, ok = obj[part]; !ok {
			return nil, nil
		}
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		roles := make([]string, 0, len(v))
		for _, r := range v {
			s, ok := r.(string)
			if !ok {
				return nil, fmt.Errorf("the %s claim must hold strings", path)
			}
			roles = append(roles, s)
		}
		return roles, nil
	}
	return nil, fmt.Errorf("the %s claim must be an array of strings or a space-separated string", path)
}
