package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tributary-es/tributary/internal/auth"
)

// Auth is how an HTTP API authenticates its callers: the settings the
// writer and the reader share.
type Auth struct {
	mode, algorithms, operatorRoles, trustedProxies string
	cfg                                             auth.Config
}

// Register adds the authentication flags and their environment variables to fs.
func (a *Auth) Register(fs *Set) {
	d := auth.DefaultConfig()
	a.cfg = d
	fs.StringVar(&a.mode, "auth-mode", string(d.Mode), "how callers authenticate: jwt (bearer tokens), proxy (headers from a trusted proxy) or off (everyone is the operator 'anonymous': local experiments only)")
	fs.Env("auth-mode", "AUTH_MODE")
	fs.StringVar(&a.cfg.JWKSURL, "auth-jwks-url", "", "URL of the token issuer's JSON Web Key Set (jwt mode; or --auth-jwks-file)")
	fs.Env("auth-jwks-url", "AUTH_JWKS_URL")
	fs.StringVar(&a.cfg.JWKSFile, "auth-jwks-file", "", "file holding the JSON Web Key Set tokens are verified with (jwt mode; or --auth-jwks-url)")
	fs.Env("auth-jwks-file", "AUTH_JWKS_FILE")
	fs.StringVar(&a.cfg.Issuer, "auth-issuer", "", "the iss claim every token must carry (jwt mode, required)")
	fs.Env("auth-issuer", "AUTH_ISSUER")
	fs.StringVar(&a.cfg.Audience, "auth-audience", "", "an aud value every token must carry (jwt mode, required)")
	fs.Env("auth-audience", "AUTH_AUDIENCE")
	fs.StringVar(&a.algorithms, "auth-algorithms", strings.Join(d.Algorithms, ","), "comma-separated signature algorithms accepted (jwt mode)")
	fs.Env("auth-algorithms", "AUTH_ALGORITHMS")
	fs.DurationVar(&a.cfg.ClockSkew, "auth-clock-skew", d.ClockSkew, "leeway for the exp, nbf and iat claims (jwt mode)")
	fs.Env("auth-clock-skew", "AUTH_CLOCK_SKEW")
	fs.StringVar(&a.cfg.RolesClaim, "auth-roles-claim", d.RolesClaim, "claim holding the caller's roles: an array or a space-separated string; dots reach into objects, e.g. realm_access.roles (jwt mode)")
	fs.Env("auth-roles-claim", "AUTH_ROLES_CLAIM")
	fs.StringVar(&a.operatorRoles, "auth-operator-roles", strings.Join(d.OperatorRoles, ","), "comma-separated roles that may act on and read every account and list them all")
	fs.Env("auth-operator-roles", "AUTH_OPERATOR_ROLES")
	fs.StringVar(&a.cfg.ProxyPrincipalHeader, "auth-proxy-principal-header", d.ProxyPrincipalHeader, "header the authenticating proxy sets to the caller's principal (proxy mode)")
	fs.Env("auth-proxy-principal-header", "AUTH_PROXY_PRINCIPAL_HEADER")
	fs.StringVar(&a.cfg.ProxyRolesHeader, "auth-proxy-roles-header", d.ProxyRolesHeader, "header the authenticating proxy sets to the caller's comma-separated roles (proxy mode)")
	fs.Env("auth-proxy-roles-header", "AUTH_PROXY_ROLES_HEADER")
	fs.StringVar(&a.trustedProxies, "auth-trusted-proxies", "", "comma-separated addresses or CIDR ranges of the authenticating proxies (proxy mode, required)")
	fs.Env("auth-trusted-proxies", "AUTH_TRUSTED_PROXIES")
}

// Check validates the settings after parsing; errors name the setting.
func (a *Auth) Check(fs *Set) error {
	a.cfg.Mode = auth.Mode(a.mode)
	a.cfg.Algorithms = splitList(a.algorithms)
	a.cfg.OperatorRoles = splitList(a.operatorRoles)
	a.cfg.TrustedProxies = nil
	for _, p := range splitList(a.trustedProxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return fmt.Errorf("%s: %q is neither an address nor a CIDR range", fs.Setting("auth-trusted-proxies"), p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		a.cfg.TrustedProxies = append(a.cfg.TrustedProxies, prefix.Masked())
	}
	switch a.cfg.Mode {
	case auth.ModeOff:
		return nil
	case auth.ModeProxy:
		if len(a.cfg.TrustedProxies) == 0 {
			return fmt.Errorf("%s is required with %s=proxy: the addresses the proxy's requests come from", fs.Setting("auth-trusted-proxies"), fs.Setting("auth-mode"))
		}
		if a.cfg.ProxyPrincipalHeader == "" {
			return fmt.Errorf("%s must not be empty with %s=proxy", fs.Setting("auth-proxy-principal-header"), fs.Setting("auth-mode"))
		}
		return nil
	case auth.ModeJWT:
	default:
		return fmt.Errorf("%s must be jwt, proxy or off, not %q", fs.Setting("auth-mode"), a.mode)
	}
	switch {
	case (a.cfg.JWKSURL == "") == (a.cfg.JWKSFile == ""):
		return fmt.Errorf("%s or %s (one of them) is required with %s=jwt; %s=off runs without authentication (local experiments only)",
			fs.Setting("auth-jwks-url"), fs.Setting("auth-jwks-file"), fs.Setting("auth-mode"), fs.Setting("auth-mode"))
	case a.cfg.Issuer == "":
		return fmt.Errorf("%s is required with %s=jwt", fs.Setting("auth-issuer"), fs.Setting("auth-mode"))
	case a.cfg.Audience == "":
		return fmt.Errorf("%s is required with %s=jwt", fs.Setting("auth-audience"), fs.Setting("auth-mode"))
	case len(a.cfg.Algorithms) == 0:
		return fmt.Errorf("%s must name at least one algorithm", fs.Setting("auth-algorithms"))
	case a.cfg.ClockSkew < 0 || a.cfg.ClockSkew > 10*60e9:
		return fmt.Errorf("%s must be from 0 to 10m", fs.Setting("auth-clock-skew"))
	}
	for _, alg := range a.cfg.Algorithms {
		if strings.EqualFold(alg, "none") || strings.HasPrefix(alg, "HS") {
			return fmt.Errorf("%s: %q is not accepted: only public-key signature algorithms verify against a key set", fs.Setting("auth-algorithms"), alg)
		}
	}
	if a.cfg.JWKSURL != "" && !strings.HasPrefix(a.cfg.JWKSURL, "https://") && !strings.HasPrefix(a.cfg.JWKSURL, "http://") {
		return fmt.Errorf("%s must be an http(s) URL", fs.Setting("auth-jwks-url"))
	}
	return nil
}

// Config returns the checked settings (call Check first).
func (a *Auth) Config() auth.Config { return a.cfg }

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
