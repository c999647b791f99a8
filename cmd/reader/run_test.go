package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/testenv"
)

// Bad configuration stops the reader with a message naming the setting and
// exit code 2.
func TestBadConfigurationNamesTheSetting(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string
	}{
		{"bad redis url", nil, testenv.Getenv("REDIS_URL", "mysql://x"), "--redis-url / REDIS_URL"},
		{"prefix with a brace", []string{"--redis-prefix", "a{b"}, testenv.Getenv(), "--redis-prefix / REDIS_PREFIX must be non-empty, without braces or spaces"},
		{"negative wait", nil, testenv.Getenv("READER_MAX_WAIT", "-1s"), "--max-wait / READER_MAX_WAIT must be from 0s to 1m"},
		{"wait not a duration", nil, testenv.Getenv("READER_MAX_WAIT", "2"), `invalid READER_MAX_WAIT="2" (flag --max-wait)`},
		{"negative waiting bound", []string{"--max-waiting", "-5"}, testenv.Getenv(), "--max-waiting / READER_MAX_WAITING must be 0 (no bound) or more"},
		{"view cache too long", []string{"--view-cache", "1m"}, testenv.Getenv(), "--view-cache / READER_VIEW_CACHE must be from 0s to 10s"},
		{"page too large", []string{"--max-page", "100000"}, testenv.Getenv(), "--max-page / READER_MAX_PAGE must be from 1 to 10000"},
		{"default above max", []string{"--default-page", "600"}, testenv.Getenv(), "--default-page / READER_DEFAULT_PAGE must be from 1 to --max-page"},
		{"correlation bound zero", nil, testenv.Getenv("READER_MAX_CORRELATION_EVENTS", "0"), "--max-correlation-events / READER_MAX_CORRELATION_EVENTS must be from 1 to 100000"},
		{"bad listen address", nil, testenv.Getenv("READER_HTTP_ADDR", "nowhere"), "--http-addr / READER_HTTP_ADDR"},
		{"unknown flag", []string{"--frobnicate"}, testenv.Getenv(), "flag provided but not defined: -frobnicate"},
		{"stray argument", []string{"serve"}, testenv.Getenv(), `unexpected argument "serve"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, tc.getenv, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if code := config.ExitCode(err); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
		})
	}
}

// authEnv is the environment that makes the reader verify signer's tokens:
// its key set in a file, its issuer and audience.
func authEnv(t *testing.T, signer *auth.Signer) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, signer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"AUTH_JWKS_FILE", file, "AUTH_ISSUER", signer.Issuer, "AUTH_AUDIENCE", signer.Audience}
}

func newSigner(t *testing.T) *auth.Signer {
	t.Helper()
	signer, err := auth.NewSigner("test-issuer", "test-audience")
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// The reader does not start without a way to authenticate its callers: no
// AUTH_* setting at all names the key set settings (and the explicit way
// out, AUTH_MODE=off); a key set that cannot be read names its setting.
func TestNoStartWithoutAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"no setting", nil, []string{"AUTH_JWKS_URL", "AUTH_JWKS_FILE", "AUTH_MODE=off"}},
		{"no issuer", []string{"AUTH_JWKS_FILE", "/nonexistent/jwks.json", "AUTH_AUDIENCE", "a"}, []string{"AUTH_ISSUER is required"}},
		{"a missing key set", []string{"AUTH_JWKS_FILE", "/nonexistent/jwks.json", "AUTH_ISSUER", "i", "AUTH_AUDIENCE", "a"}, []string{"AUTH_JWKS_FILE=/nonexistent/jwks.json"}},
		{"not a key set", []string{"AUTH_JWKS_FILE", writeFile(t, "not json"), "AUTH_ISSUER", "i", "AUTH_AUDIENCE", "a"}, []string{"AUTH_JWKS_FILE="}},
		{"an unknown mode", []string{"AUTH_MODE", "trust-me"}, []string{"AUTH_MODE must be jwt, proxy or off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Bounded: a reader that starts after all must not hang the test.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, nil, testenv.Getenv(append([]string{"READER_HTTP_ADDR", "127.0.0.1:0"}, tc.env...)...), &out)
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, want an error naming %q", err, want)
				}
			}
			if code := config.ExitCode(err); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// With AUTH_MODE=off, asked for explicitly, the reader starts and serves
// every caller as the operator "anonymous".
func TestStartsWithAuthenticationOff(t *testing.T) {
	_, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	var logs testenv.SyncBuffer
	stop := start(t, testenv.Getenv("REDIS_URL", "redis://"+testenv.RedisAddr()+"/0", "REDIS_PREFIX", prefix, "READER_HTTP_ADDR", addr,
		"AUTH_MODE", "off"), &logs)
	// Nothing is projected under this prefix: served, it is not ready yet.
	if status := get(t, "http://"+addr+"/v1/accounts/acc-1", ""); status != http.StatusServiceUnavailable {
		t.Fatalf("an account without a token with AUTH_MODE=off: %d, want 503 (served, not ready)", status)
	}
	if status := get(t, "http://"+addr+"/v1/accounts?status=active", ""); status != http.StatusServiceUnavailable {
		t.Fatalf("the directory without a token with AUTH_MODE=off: %d, want 503 (served, not ready)", status)
	}
	stop()
	if !strings.Contains(logs.String(), "AUTH_MODE=off") {
		t.Fatalf("no warning that authentication is off in the log:\n%s", logs.String())
	}
}

// An unreachable Redis stops the start naming the setting, without its
// password.
func TestUnreachableRedisIsNamed(t *testing.T) {
	var out bytes.Buffer
	env := append([]string{"REDIS_URL", "redis://:s3cret@127.0.0.1:1/0"}, authEnv(t, newSigner(t))...)
	err := run(context.Background(), []string{"--start-timeout", "500ms"}, testenv.Getenv(env...), &out)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL=redis://:xxxxx@127.0.0.1:1/0") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("got %v, want the unreachable REDIS_URL named, password masked", err)
	}
	if config.ExitCode(err) != 1 {
		t.Fatalf("exit code %d, want 1", config.ExitCode(err))
	}
}

// The reader serves until its context ends, then stops cleanly; it
// verifies bearer tokens against the key set in AUTH_JWKS_FILE.
func TestServeAndShutDownGracefully(t *testing.T) {
	_, prefix := testenv.Redis(t)
	signer := newSigner(t)
	addr := freeAddr(t)
	env := append([]string{"REDIS_URL", "redis://" + testenv.RedisAddr() + "/0", "REDIS_PREFIX", prefix, "READER_HTTP_ADDR", addr}, authEnv(t, signer)...)
	stop := start(t, testenv.Getenv(env...), io.Discard)
	token, err := signer.Token("ada", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := newSigner(t).Token("ada", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Without a token, or with one of another issuer's key: 401.
	for _, authorization := range []string{"", "Bearer " + other} {
		if status := get(t, "http://"+addr+"/v1/accounts/acc-1", authorization); status != http.StatusUnauthorized {
			t.Fatalf("an account with Authorization %.20q: %d, want 401", authorization, status)
		}
	}
	// Nothing is projected under this prefix: the read model is not ready,
	// and the reader says so instead of answering 404.
	if status := get(t, "http://"+addr+"/v1/accounts/acc-1", "Bearer "+token); status != http.StatusServiceUnavailable {
		t.Fatalf("an account before the model is built: %d, want 503", status)
	}
	stop()
}

// start runs the reader with getenv until the test stops it (or ends),
// once it is ready; stop waits for a clean exit.
func start(t *testing.T, getenv func(string) string, logs io.Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- run(ctx, nil, getenv, logs) }()
	addr := getenv("READER_HTTP_ADDR")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-stopped:
			cancel()
			t.Fatalf("reader stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("reader not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := false
	stop = func() {
		t.Helper()
		if done {
			return
		}
		done = true
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("run returned %v after a clean stop", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("reader did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// get sends a GET with the Authorization header (if any) and returns the
// status; every refusal or failure must be a problem document.
func get(t *testing.T, url, authorization string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("GET %s: %d as %q", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
