package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/domains/domaintest"
	"github.com/tributary-es/tributary/internal/testenv"
)

// withoutAuth runs the writer with AUTH_MODE=off unless getenv sets it: the
// other tests of this package are about Postgres, Kafka and shutdown; the
// API's authentication is TestAPIAuthenticatesWithTheConfiguredKeySet's
// (and internal/writer's, route by route).
func withoutAuth(getenv func(string) string) func(string) string {
	return func(name string) string {
		if v := getenv(name); v != "" || name != "AUTH_MODE" {
			return v
		}
		return "off"
	}
}

// The writer started with a JWKS file verifies bearer tokens: none is a
// 401, a token of the key set's signer acts.
func TestAPIAuthenticatesWithTheConfiguredKeySet(t *testing.T) {
	signer, _ := testenv.Auth(t)
	env := append([]string{"DATABASE_URL", testenv.PostgresURL(t), "AUTH_MODE", "jwt"}, testenv.AuthEnv(t, signer)...)
	getenv := testenv.Getenv(env...)
	base, _ := startWriter(t, []string{"--migrate", "--relay=false", "--processes=false"}, getenv)
	open := `{"id":"a1","owner":"Ada","unit":"items"}`
	if s := post(t, base+"/v1/counters", open); s != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", s)
	}
	tok, err := signer.Token("alice", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if s := post(t, base+"/v1/counters", open, "Authorization", "Bearer "+tok); s != http.StatusCreated {
		t.Fatalf("with a token: %d, want 201", s)
	}
	other, _ := testenv.Auth(t) // another issuer's key
	tok, err = other.Token("alice", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if s := post(t, base+"/v1/counters", `{"id":"a2","owner":"Ada","unit":"items"}`, "Authorization", "Bearer "+tok); s != http.StatusUnauthorized {
		t.Fatalf("with a token of another key: %d, want 401", s)
	}
}

// Authentication is on unless turned off explicitly: a writer without a key
// set refuses to start, naming the settings; bad settings are named too.
func TestAuthSettingsAreChecked(t *testing.T) {
	base := []string{"DATABASE_URL", "postgres://x/y", "WRITER_RELAY", "false", "WRITER_PROCESSES", "false"}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"nothing set", nil, "--auth-jwks-url / AUTH_JWKS_URL or --auth-jwks-file / AUTH_JWKS_FILE (one of them) is required"},
		{"no issuer", []string{"AUTH_JWKS_URL", "https://idp.example/jwks"}, "--auth-issuer / AUTH_ISSUER is required"},
		{"no audience", []string{"AUTH_JWKS_URL", "https://idp.example/jwks", "AUTH_ISSUER", "https://idp.example"}, "--auth-audience / AUTH_AUDIENCE is required"},
		{"both key sets", []string{"AUTH_JWKS_URL", "https://idp.example/jwks", "AUTH_JWKS_FILE", "/x"}, "(one of them) is required"},
		{"symmetric algorithm", []string{"AUTH_JWKS_FILE", "/x", "AUTH_ISSUER", "i", "AUTH_AUDIENCE", "a", "AUTH_ALGORITHMS", "RS256,HS256"}, `"HS256" is not accepted`},
		{"alg none", []string{"AUTH_JWKS_FILE", "/x", "AUTH_ISSUER", "i", "AUTH_AUDIENCE", "a", "AUTH_ALGORITHMS", "none"}, `"none" is not accepted`},
		{"unknown mode", []string{"AUTH_MODE", "trust-me"}, "--auth-mode / AUTH_MODE must be jwt, proxy or off"},
		{"proxy without its addresses", []string{"AUTH_MODE", "proxy"}, "--auth-trusted-proxies / AUTH_TRUSTED_PROXIES is required with --auth-mode / AUTH_MODE=proxy"},
		{"proxy address garbage", []string{"AUTH_MODE", "proxy", "AUTH_TRUSTED_PROXIES", "10.0.0.0/8,gateway"}, `"gateway" is neither an address nor a CIDR range`},
		{"missing key set file", []string{"AUTH_JWKS_FILE", "/nonexistent/jwks.json", "AUTH_ISSUER", "i", "AUTH_AUDIENCE", "a"}, "auth: read the JWKS file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			env := append(append([]string{}, base...), tc.env...)
			if strings.Contains(tc.name, "missing key set") {
				env = append(env, "DATABASE_URL", testenv.PostgresURL(t))
			}
			err := run(ctx, fixture, []string{"--http-addr", "127.0.0.1:0"}, testenv.Getenv(env...), &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The writer's tests run it on the platform's fixture domain (package
// domaintest): counters. The domains a build ships are tested in their own
// packages (a process manager killed mid-work too, with the writer binary
// built from the module).
var fixture = domaintest.Registry()
