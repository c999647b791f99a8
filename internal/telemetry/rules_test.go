package telemetry_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// The alert rules are valid and behave as their unit tests say (promtool
// check rules, promtool test rules).
func TestAlertRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	dir := filepath.Join(filesDir, "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "rules.yml"},
		{"test", "rules", "rules_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}
