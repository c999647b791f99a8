package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v4"
)

// helmCmd runs helm with its homes in a temporary directory; it returns
// stdout, and stderr in the error.
func helmCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ts := needTools(t)
	home := t.TempDir()
	cmd := exec.Command(ts.helm, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// render runs helm template and parses the manifests.
func render(t *testing.T, args ...string) (string, []object) {
	t.Helper()
	out, err := helmCmd(t, append([]string{"template", release, chartDir, "--namespace", "tributary"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out, parseManifests(t, out)
}

// object is one rendered manifest.
type object map[string]any

func (o object) kind() string { return str(o, "kind") }
func (o object) name() string { return str(o, "metadata", "name") }
func (o object) String() string {
	return o.kind() + "/" + o.name()
}

func parseManifests(t *testing.T, out string) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered manifests are not YAML: %v", err)
		}
		if o != nil {
			objs = append(objs, object(o))
		}
	}
	if len(objs) == 0 {
		t.Fatal("helm template rendered nothing")
	}
	return objs
}

// get walks maps and list indexes ("0") down path.
func get(v any, path ...string) any {
	for _, p := range path {
		switch c := v.(type) {
		case object:
			v = c[p]
		case map[string]any:
			v = c[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...string) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func num(v any, path ...string) (int, bool) {
	switch n := get(v, path...).(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), true
	}
	return 0, false
}

func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	return nil
}

func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// containerEnv returns the first container's environment: plain values as
// they are, Secret references as "secret:<name>/<key>".
func containerEnv(o object) map[string]string {
	env := map[string]string{}
	for _, e := range list(get(o, "spec", "template", "spec", "containers", "0"), "env") {
		name := str(e, "name")
		if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
			env[name] = "secret:" + str(ref, "name") + "/" + str(ref, "key")
			continue
		}
		env[name] = str(e, "value")
	}
	return env
}
