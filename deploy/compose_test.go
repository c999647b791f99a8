package deploy

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the repository's root, where docker-compose.yml lives.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadCompose loads docker-compose.yml the way `docker compose config` does.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithOsEnv, cli.WithWorkingDirectory(root))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

// apps are the services that run Tributary's own binaries, with the binary
// and the port of its HTTP server (/healthz, /readyz, /metrics).
var apps = map[string]struct {
	binary string
	port   uint32
}{
	"writer":    {"writer", 8080},
	"projector": {"projector", 8081},
	"reader":    {"reader", 8082},
}

var infrastructure = []string{"postgres", "redis", "kafka"}

func TestComposeHasEveryServiceWithAnImage(t *testing.T) {
	p := loadCompose(t)
	if p.Name != "tributary" {
		t.Errorf("project name %q, want tributary (top-level name:)", p.Name)
	}
	want := []string{"auth-dev", "grafana", "jaeger", "kafka", "migrate", "otel-collector", "postgres", "projector", "prometheus", "reader", "redis", "writer"}
	if got := p.ServiceNames(); !slices.Equal(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}
	for name, s := range p.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if s.Image != "" && !strings.Contains(s.Image, ":") {
			t.Errorf("service %s: image %q has no tag", name, s.Image)
		}
	}
	// The app services (and migrate and auth-dev) share one image built from the Dockerfile.
	for _, name := range []string{"auth-dev", "migrate", "writer", "projector", "reader"} {
		s := service(t, p, name)
		if s.Build == nil {
			t.Errorf("service %s is not built from the repository", name)
			continue
		}
		if s.Build.Context != repoRoot(t) {
			t.Errorf("service %s builds from %s, want the repository root", name, s.Build.Context)
		}
		if df := filepath.Join(s.Build.Context, s.Build.Dockerfile); !fileExists(df) {
			t.Errorf("service %s: Dockerfile %s does not exist", name, df)
		}
		if s.Image != service(t, p, "writer").Image {
			t.Errorf("service %s: image %q, want the writer's %q (one image)", name, s.Image, service(t, p, "writer").Image)
		}
	}
	for name, app := range apps {
		if got, want := []string(service(t, p, name).Entrypoint), []string{"/usr/local/bin/" + app.binary}; !slices.Equal(got, want) {
			t.Errorf("service %s: entrypoint %q, want %q", name, got, want)
		}
	}
	if got := append([]string(service(t, p, "migrate").Entrypoint), service(t, p, "migrate").Command...); !slices.Equal(got, []string{"/usr/local/bin/writer", "migrate"}) {
		t.Errorf("service migrate runs %q, want writer migrate", got)
	}
	if got := append([]string(service(t, p, "auth-dev").Entrypoint), service(t, p, "auth-dev").Command...); len(got) < 2 || got[0] != "/usr/local/bin/devtoken" || got[1] != "init" {
		t.Errorf("service auth-dev runs %q, want devtoken init", got)
	}
	// The one-shot services run once: a restart policy would rerun them.
	for _, name := range []string{"auth-dev", "migrate"} {
		if r := service(t, p, name).Restart; r != "no" {
			t.Errorf("service %s: restart %q, want \"no\" (it runs once)", name, r)
		}
	}
	if r := service(t, p, "redis"); !strings.Contains(strings.Join(r.Command, " "), "--maxmemory-policy noeviction") {
		t.Errorf("redis runs %q, want --maxmemory-policy noeviction (an evicted read-model key corrupts a model)", r.Command)
	}
}

func TestComposeStartOrder(t *testing.T) {
	p := loadCompose(t)
	tests := []struct {
		service, dependency, condition string
	}{
		{"migrate", "postgres", types.ServiceConditionHealthy},
		{"writer", "migrate", types.ServiceConditionCompletedSuccessfully},
		{"writer", "auth-dev", types.ServiceConditionCompletedSuccessfully},
		{"reader", "auth-dev", types.ServiceConditionCompletedSuccessfully},
		{"writer", "postgres", types.ServiceConditionHealthy},
		{"writer", "kafka", types.ServiceConditionHealthy},
		{"projector", "kafka", types.ServiceConditionHealthy},
		{"projector", "redis", types.ServiceConditionHealthy},
		{"projector", "writer", types.ServiceConditionHealthy},
		{"reader", "redis", types.ServiceConditionHealthy},
		{"reader", "projector", types.ServiceConditionHealthy},
		{"writer", "otel-collector", types.ServiceConditionStarted},
		{"projector", "otel-collector", types.ServiceConditionStarted},
		{"reader", "otel-collector", types.ServiceConditionStarted},
		{"otel-collector", "jaeger", types.ServiceConditionStarted},
		{"grafana", "prometheus", types.ServiceConditionHealthy},
	}
	for _, tt := range tests {
		dep, ok := service(t, p, tt.service).DependsOn[tt.dependency]
		switch {
		case !ok:
			t.Errorf("%s does not depend on %s", tt.service, tt.dependency)
		case dep.Condition != tt.condition:
			t.Errorf("%s depends on %s with condition %s, want %s", tt.service, tt.dependency, dep.Condition, tt.condition)
		}
	}
	// A service_healthy condition needs a healthcheck on the dependency.
	for name, s := range p.Services {
		for depName, dep := range s.DependsOn {
			if dep.Condition != types.ServiceConditionHealthy {
				continue
			}
			if hc := service(t, p, depName).HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, depName, depName)
			}
		}
	}
}

func TestComposeHealthchecks(t *testing.T) {
	p := loadCompose(t)
	for _, name := range append(slices.Clone(infrastructure), "prometheus") {
		hc := service(t, p, name).HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	// The images are distroless (no shell, no curl): the apps are probed with
	// the image's own healthcheck binary on their /readyz.
	for name, app := range apps {
		hc := service(t, p, name).HealthCheck
		if hc == nil || hc.Disable {
			t.Errorf("%s has no healthcheck", name)
			continue
		}
		want := []string{"CMD", "/usr/local/bin/healthcheck", "http://127.0.0.1:" + strconv.Itoa(int(app.port)) + "/readyz"}
		if !slices.Equal([]string(hc.Test), want) {
			t.Errorf("%s healthcheck %q, want %q", name, hc.Test, want)
		}
	}
}

func TestComposePublishesThePorts(t *testing.T) {
	p := loadCompose(t)
	tests := []struct {
		service string
		target  uint32
	}{
		{"writer", 8080}, {"projector", 8081}, {"reader", 8082},
		{"prometheus", 9090}, {"grafana", 3000}, {"jaeger", 16686}, {"kafka", 9094},
	}
	for _, tt := range tests {
		found := false
		for _, port := range service(t, p, tt.service).Ports {
			if port.Target == tt.target && port.Published != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s does not publish port %d", tt.service, tt.target)
		}
	}
	// Nothing is published beyond this machine: the stack has development
	// passwords, an anonymous Grafana admin and a development token issuer.
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.Published != "" && port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q, want 127.0.0.1 only", name, port.Target, port.HostIP)
			}
		}
	}
}

func TestComposeEnvironmentIsWhatTheBinariesRead(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	required := map[string][]string{
		"migrate":   {"DATABASE_URL"},
		"writer":    {"DATABASE_URL", "KAFKA_BROKERS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "AUTH_MODE", "AUTH_JWKS_FILE", "AUTH_ISSUER", "AUTH_AUDIENCE"},
		"projector": {"KAFKA_BROKERS", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"},
		"reader":    {"REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "AUTH_MODE", "AUTH_JWKS_FILE", "AUTH_ISSUER", "AUTH_AUDIENCE"},
		"auth-dev":  {"DEVTOKEN_DIR", "AUTH_ISSUER", "AUTH_AUDIENCE"},
	}
	for name, names := range required {
		s := service(t, p, name)
		binary := strings.TrimPrefix(s.Entrypoint[0], "/usr/local/bin/")
		known := envNames(t, root, binary)
		if len(known) == 0 {
			t.Fatalf("found no settings of %s in its sources", binary)
		}
		for _, env := range names {
			if v := s.Environment[env]; v == nil || *v == "" {
				t.Errorf("%s: %s is not set", name, env)
			}
		}
		for env := range s.Environment {
			// OTEL_* are OpenTelemetry's standard variables (internal/telemetry).
			if !known[env] && !strings.HasPrefix(env, "OTEL_") {
				t.Errorf("%s sets %s, which %s does not read", name, env, binary)
			}
		}
		// Addresses name services of this file, on the ports they listen on.
		for env, v := range s.Environment {
			if v == nil {
				continue
			}
			switch env {
			case "DATABASE_URL":
				checkURLHost(t, p, name, env, *v, "postgres", "5432")
			case "REDIS_URL":
				checkURLHost(t, p, name, env, *v, "redis", "6379")
			case "OTEL_EXPORTER_OTLP_ENDPOINT":
				checkURLHost(t, p, name, env, *v, "otel-collector", "4318")
			case "KAFKA_BROKERS":
				for _, b := range strings.Split(*v, ",") {
					checkURLHost(t, p, name, env, "kafka://"+b, "kafka", "9092")
				}
			}
		}
	}
	names := map[string]string{}
	for name := range apps {
		s := service(t, p, name)
		svc := *s.Environment["OTEL_SERVICE_NAME"]
		if other, dup := names[svc]; dup {
			t.Errorf("%s and %s share OTEL_SERVICE_NAME %s", name, other, svc)
		}
		names[svc] = name
	}
}

func checkURLHost(t *testing.T, p *types.Project, svc, env, raw, wantHost, wantPort string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("%s: %s=%q does not parse: %v", svc, env, raw, err)
		return
	}
	if u.Hostname() != wantHost || u.Port() != wantPort {
		t.Errorf("%s: %s=%q, want host %s:%s", svc, env, raw, wantHost, wantPort)
	}
	if _, ok := p.Services[u.Hostname()]; !ok {
		t.Errorf("%s: %s names %s, which is no service", svc, env, u.Hostname())
	}
}

// envNames returns the environment variables a binary reads: the second
// argument of every config.Set.Env call in cmd/<binary>, and in
// internal/config's Kafka, Redis and Auth settings when the binary uses them.
func envNames(t *testing.T, root, binary string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	src := envCalls(t, filepath.Join(root, "cmd", binary), names)
	if strings.Contains(src, "config.Kafka") {
		envCalls(t, filepath.Join(root, "internal", "config", "kafka.go"), names)
	}
	if strings.Contains(src, "config.Redis") {
		envCalls(t, filepath.Join(root, "internal", "config", "redis.go"), names)
	}
	if strings.Contains(src, "config.Auth") {
		envCalls(t, filepath.Join(root, "internal", "config", "auth.go"), names)
	}
	return names
}

// envCalls adds the variables named by .Env("flag", "VAR") calls in the
// non-test Go files at path (a file or a directory) and returns their source.
func envCalls(t *testing.T, path string, names map[string]bool) string {
	t.Helper()
	files := []string{path}
	if st, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if st.IsDir() {
		files, _ = filepath.Glob(filepath.Join(path, "*.go"))
	}
	var all strings.Builder
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(src)
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Env" {
				return true
			}
			if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if v, err := strconv.Unquote(lit.Value); err == nil {
					names[v] = true
				}
			}
			return true
		})
	}
	return all.String()
}

func TestComposeMountsExist(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	// Written beside this file by another part of the work: inside the
	// repository is enough, they may not exist yet.
	helmFiles := filepath.Join(root, "deploy", "helm", "tributary", "files")
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			src := v.Source
			if !filepath.IsAbs(src) {
				src = filepath.Join(root, src)
			}
			rel, err := filepath.Rel(root, src)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s mounts %s, outside the repository", name, v.Source)
				continue
			}
			if !v.ReadOnly {
				t.Errorf("%s mounts %s read-write; the repository's files are mounted :ro", name, rel)
			}
			if strings.HasPrefix(src, helmFiles+string(filepath.Separator)) {
				continue
			}
			if !fileExists(src) {
				t.Errorf("%s mounts %s, which does not exist", name, rel)
			}
		}
	}
}
