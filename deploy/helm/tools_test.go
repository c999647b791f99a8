package helm

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The tools the chart is checked with, pinned in ../../tools/go.mod (a module
// of its own, so their dependencies stay out of the root go.mod), and the
// sources of the Kubernetes schemas. Built and generated once into the user's
// cache directory, keyed by what they are made from, so reruns take
// milliseconds.
const (
	kubernetesModule = "k8s.io/kubernetes@v1.37.2"
	operatorModule   = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	schemaVersion    = "2" // bump when the converter changes
)

// operatorCRDs are the Prometheus Operator kinds the chart renders.
var operatorCRDs = []string{
	"example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
	"example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
}

type toolset struct {
	helm, kubeconform string
	schemaDir         string
	err               error
}

var (
	toolsOnce sync.Once
	tools     toolset
)

// needTools returns the built tools and the schema directory, or fails the
// test with the reason they could not be made: never a silent skip.
func needTools(t *testing.T) toolset {
	t.Helper()
	toolsOnce.Do(func() { tools = makeTools() })
	if tools.err != nil {
		t.Fatalf("chart tools: %v", tools.err)
	}
	return tools
}

func makeTools() toolset {
	root, err := filepath.Abs("../..")
	if err != nil {
		return toolset{err: err}
	}
	toolsDir := filepath.Join(root, "tools")
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir() // no HOME nor XDG_CACHE_HOME
	}
	cache = filepath.Join(cache, "tributary-tools")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return toolset{err: fmt.Errorf("tools cache: %w", err)}
	}

	key, err := fileKey(runtime.Version(), filepath.Join(toolsDir, "go.mod"), filepath.Join(toolsDir, "go.sum"))
	if err != nil {
		return toolset{err: err}
	}
	bin := filepath.Join(cache, "bin-"+key)
	ts := toolset{helm: filepath.Join(bin, "helm"), kubeconform: filepath.Join(bin, "kubeconform")}
	if !exists(ts.helm) || !exists(ts.kubeconform) {
		tmp, err := os.MkdirTemp(cache, "building-")
		if err != nil {
			return toolset{err: err}
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp+string(filepath.Separator),
			"helm.sh/helm/v3/cmd/helm", "github.com/yannh/kubeconform/cmd/kubeconform")
		cmd.Dir = toolsDir
		cmd.Env = goEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			return toolset{err: fmt.Errorf("go build of helm and kubeconform in %s: %v\n%s", toolsDir, err, out)}
		}
		if err := publish(tmp, bin); err != nil {
			return toolset{err: err}
		}
	}

	ts.schemaDir = filepath.Join(cache, "schemas-"+kubernetesModule[strings.LastIndex(kubernetesModule, "@")+1:]+"-"+schemaVersion)
	if !exists(filepath.Join(ts.schemaDir, "deployment-apps-v1.json")) || !exists(filepath.Join(ts.schemaDir, "networkpolicy-networking-v1.json")) ||
		!exists(filepath.Join(ts.schemaDir, "servicemonitor-monitoring-v1.json")) {
		if err := generateSchemas(ts.schemaDir); err != nil {
			return toolset{err: fmt.Errorf("kubeconform schemas: %w", err)}
		}
	}
	return ts
}

// generateSchemas fetches the two modules through the module proxy (or the
// module cache) and converts their schemas into dir.
func generateSchemas(dir string) error {
	// Outside any module, so the root go.mod is not touched.
	cmd := exec.Command("go", "mod", "download", "-json", kubernetesModule, operatorModule)
	cmd.Dir = os.TempDir()
	cmd.Env = append(goEnv(), "GO111MODULE=on")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go mod download %s %s: %v\n%s", kubernetesModule, operatorModule, err, out)
	}
	mods := map[string]struct{ Zip, Dir, Error string }{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m struct{ Path, Version, Zip, Dir, Error string }
		if err := dec.Decode(&m); err != nil {
			return err
		}
		if m.Error != "" {
			return fmt.Errorf("go mod download %s: %s", m.Path, m.Error)
		}
		mods[m.Path+"@"+m.Version] = struct{ Zip, Dir, Error string }{m.Zip, m.Dir, m.Error}
	}

	tmp, err := os.MkdirTemp(filepath.Dir(dir), "generating-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	swagger, err := readModuleFile(mods[kubernetesModule].Zip, kubernetesModule, "api/openapi-spec/swagger.json")
	if err != nil {
		return err
	}
	n, err := writeKubernetesSchemas(swagger, tmp)
	if err != nil {
		return err
	}
	if n < 50 {
		return fmt.Errorf("only %d Kubernetes kinds in swagger.json", n)
	}
	for _, f := range operatorCRDs {
		crd, err := readModuleFile(mods[operatorModule].Zip, operatorModule, f)
		if err != nil {
			return err
		}
		if _, err := writeCRDSchemas(crd, tmp); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return publish(tmp, dir)
}

// publish renames the finished directory tmp to dir. When another test
// process got there first, its copy, made from the same sources, is kept.
func publish(tmp, dir string) error {
	if err := os.Rename(tmp, dir); err != nil && !exists(dir) {
		return err
	}
	return nil
}

// readModuleFile reads one file out of a module zip.
func readModuleFile(zipPath, module, name string) ([]byte, error) {
	if zipPath == "" {
		return nil, fmt.Errorf("go mod download gave no zip for %s", module)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	f, err := zr.Open(module + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, zipPath, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// goEnv is the environment of the go commands the tests run: the caller's,
// with the workspace and vendoring settings that would change the build off.
func goEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOWORK=") && !strings.HasPrefix(e, "GOFLAGS=") {
			env = append(env, e)
		}
	}
	return append(env, "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
}

// fileKey hashes the given strings and file contents into a short key.
func fileKey(version string, files ...string) (string, error) {
	h := sha256.New()
	io.WriteString(h, version)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
