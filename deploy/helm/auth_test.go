package helm

import (
	"flag"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/config"
)

// The auth values become the AUTH_* settings of the writer and the reader
// (internal/config/auth.go); a key set given by reference is mounted
// read-only and AUTH_JWKS_FILE names it.

// authSettings checks the rendered AUTH_* settings of a component the way
// the binary does, and returns what it would run with.
func authSettings(t *testing.T, objs []object, component string) (auth.Config, map[string]string) {
	t.Helper()
	data, _ := get(find(objs, "ConfigMap", release+"-"+component), "data").(map[string]any)
	settings := map[string]string{}
	for k, v := range data {
		if strings.HasPrefix(k, "AUTH_") {
			settings[k] = fmt.Sprint(v)
		}
	}
	var a config.Auth
	fs := config.New(component, io.Discard)
	a.Register(fs)
	if err := fs.Parse(nil, func(k string) string { return settings[k] }); err != nil {
		t.Fatalf("%s: the rendered settings do not parse: %v", component, err)
	}
	if err := a.Check(fs); err != nil {
		t.Fatalf("%s: the %s would refuse its rendered settings: %v", component, component, err)
	}
	return a.Config(), settings
}

// jwksVolume returns a Deployment's volume and mount of a referenced key set.
func jwksVolume(d object) (volume, mount any) {
	pod := get(d, "spec", "template", "spec")
	for _, v := range list(pod, "volumes") {
		if get(v, "configMap") == nil && get(v, "secret") == nil {
			continue
		}
		for _, m := range list(pod, "containers", "0", "volumeMounts") {
			if str(m, "name") == str(v, "name") && strings.HasPrefix(str(m, "mountPath"), "/etc/tributary/auth") {
				return v, m
			}
		}
	}
	return nil, nil
}

func TestAuthSettings(t *testing.T) {
	defaults := auth.DefaultConfig()
	for _, tc := range []struct {
		name   string
		args   []string
		mode   auth.Mode
		source string // "url", "configMap" or "secret" in jwt mode
		key    string
	}{
		{"JWKS URL", minimal, auth.ModeJWT, "url", ""},
		{"key set from a ConfigMap", append(slices.Clone(minimal), "--set", "auth.jwksUrl=,auth.jwks.configMap=tributary-jwks"), auth.ModeJWT, "configMap", "jwks.json"},
		{"key set from a Secret", append(slices.Clone(minimal), "--set", "auth.jwksUrl=,auth.jwks.secret=tributary-jwks,auth.jwks.key=keys.json"), auth.ModeJWT, "secret", "keys.json"},
		{"proxy", []string{"--set", "auth.mode=proxy,auth.proxy.trustedProxies={10.0.0.0/8,192.168.1.7}"}, auth.ModeProxy, "", ""},
		{"off", []string{"--set", "auth.mode=off,auth.allowInsecureOff=true"}, auth.ModeOff, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, objs := render(t, tc.args...)
			checkCommon(t, objs)
			for _, c := range []string{"writer", "reader"} {
				cfg, settings := authSettings(t, objs, c)
				if cfg.Mode != tc.mode {
					t.Errorf("%s: AUTH_MODE %q, want %q", c, cfg.Mode, tc.mode)
				}
				d := find(objs, "Deployment", release+"-"+c)
				vol, mount := jwksVolume(d)
				switch tc.mode {
				case auth.ModeJWT:
					if cfg.Issuer != "https://login.example.com/realms/tributary" || cfg.Audience != "tributary" {
						t.Errorf("%s: issuer %q, audience %q", c, cfg.Issuer, cfg.Audience)
					}
					// The chart's defaults are the binaries'.
					if !slices.Equal(cfg.Algorithms, defaults.Algorithms) || cfg.ClockSkew != defaults.ClockSkew ||
						cfg.RolesClaim != defaults.RolesClaim || !slices.Equal(cfg.OperatorRoles, defaults.OperatorRoles) {
						t.Errorf("%s: the chart's default auth values %v differ from the binaries' defaults %+v", c, settings, defaults)
					}
				case auth.ModeProxy:
					if cfg.ProxyPrincipalHeader != defaults.ProxyPrincipalHeader || cfg.ProxyRolesHeader != defaults.ProxyRolesHeader {
						t.Errorf("%s: proxy headers %q, %q differ from the binaries' defaults", c, cfg.ProxyPrincipalHeader, cfg.ProxyRolesHeader)
					}
					if len(cfg.TrustedProxies) != 2 {
						t.Errorf("%s: trusted proxies %v", c, cfg.TrustedProxies)
					}
				}
				if tc.source == "url" && cfg.JWKSURL != "https://login.example.com/realms/tributary/protocol/openid-connect/certs" {
					t.Errorf("%s: AUTH_JWKS_URL %q", c, cfg.JWKSURL)
				}
				if tc.source != "configMap" && tc.source != "secret" {
					if vol != nil || cfg.JWKSFile != "" {
						t.Errorf("%s: a key set volume %v or AUTH_JWKS_FILE %q without auth.jwks", c, vol, cfg.JWKSFile)
					}
					continue
				}
				// A key set by reference: mounted read-only, its key as the file AUTH_JWKS_FILE names.
				if vol == nil {
					t.Fatalf("%s mounts no key set", c)
				}
				if ro, _ := get(mount, "readOnly").(bool); !ro {
					t.Errorf("%s mounts the key set writable", c)
				}
				ref := get(vol, tc.source)
				name := str(ref, "name")
				if tc.source == "secret" {
					name = str(ref, "secretName")
				}
				if name != "tributary-jwks" {
					t.Errorf("%s mounts %s %q, want tributary-jwks", c, tc.source, name)
				}
				items := list(ref, "items")
				if len(items) != 1 || str(items[0], "key") != tc.key {
					t.Fatalf("%s: key set items %v, want key %s", c, items, tc.key)
				}
				if file := path.Join(str(mount, "mountPath"), str(items[0], "path")); cfg.JWKSFile != file || cfg.JWKSURL != "" {
					t.Errorf("%s: AUTH_JWKS_FILE %q (AUTH_JWKS_URL %q), the key set is mounted at %s", c, cfg.JWKSFile, cfg.JWKSURL, file)
				}
			}
			// The projector serves no API: no AUTH_* settings, no key set.
			for k := range get(find(objs, "ConfigMap", release+"-projector"), "data").(map[string]any) {
				if strings.HasPrefix(k, "AUTH_") {
					t.Errorf("the projector's ConfigMap sets %s", k)
				}
			}
			if vol, _ := jwksVolume(find(objs, "Deployment", release+"-projector")); vol != nil {
				t.Errorf("the projector mounts a key set: %v", vol)
			}
		})
	}
}

// TestAuthCoversEverySetting: every AUTH_* variable of internal/config is
// set by the chart in one mode or another, so none can only be reached
// through <component>.env (which refuses AUTH_*).
func TestAuthCoversEverySetting(t *testing.T) {
	var a config.Auth
	fs := config.New("auth", io.Discard)
	a.Register(fs)
	want := map[string]bool{}
	env := regexp.MustCompile(`\(\$(AUTH_[A-Z_]+)\)`)
	fs.VisitAll(func(f *flag.Flag) {
		for _, m := range env.FindAllStringSubmatch(f.Usage, -1) {
			want[m[1]] = true
		}
	})
	if len(want) < 10 {
		t.Fatalf("found only %v in internal/config's auth flags", want)
	}
	rendered := map[string]bool{}
	for _, args := range [][]string{
		minimal,
		append(slices.Clone(minimal), "--set", "auth.jwksUrl=,auth.jwks.configMap=tributary-jwks"),
		{"--set", "auth.mode=proxy,auth.proxy.trustedProxies={10.0.0.0/8}"},
	} {
		_, objs := render(t, args...)
		for _, c := range []string{"writer", "reader"} {
			_, settings := authSettings(t, objs, c)
			for k := range settings {
				rendered[k] = true
			}
		}
	}
	for k := range want {
		if !rendered[k] {
			t.Errorf("%s (internal/config/auth.go) is set by no auth value of the chart", k)
		}
	}
	for k := range rendered {
		if !want[k] {
			t.Errorf("the chart sets %s, which the binaries do not read", k)
		}
	}
}
