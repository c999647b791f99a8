package telemetry_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// filesDir is where the Helm chart keeps the dashboards and rules.
var filesDir = filepath.Join("..", "..", "deploy", "helm", "tributary", "files")

// requireTool returns the path of Debian's prometheus package's binary name
// (prometheus or promtool). When it is missing, CI (CI=true, as root)
// installs the package with apt-get; anywhere else the test fails saying how
// to install it. It never skips.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" && os.Getuid() == 0 {
		if out, err := exec.Command("apt-get", "install", "-y", "prometheus").CombinedOutput(); err != nil {
			t.Logf("apt-get install prometheus: %v\n%s\n(retrying after apt-get update)", err, out)
			if out, err := exec.Command("sh", "-c", "apt-get update && apt-get install -y prometheus").CombinedOutput(); err != nil {
				t.Logf("apt-get update && apt-get install -y prometheus: %v\n%s", err, out)
			}
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatalf("%s is not installed: install Debian's prometheus package (apt-get install -y prometheus), "+
		"which brings prometheus and promtool; in CI (CI=true, as root) this test installs it itself", name)
	return ""
}
