package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDockerfileBuildsStaticNonRootImage(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/writer", "./cmd/projector", "./cmd/reader", "./cmd/healthcheck", "./cmd/devtoken"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	stages := strings.Count(df, "\nFROM ")
	if stages < 2 {
		t.Errorf("Dockerfile has %d stages, want a build stage and a small final one", stages)
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	var user string
	for _, line := range strings.Split(final, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "USER" {
			user = f[1]
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0:") || user == "0" {
		t.Errorf("the final stage runs as %q, want a non-root USER", user)
	}
	if !strings.Contains(final, "FROM gcr.io/distroless/") {
		t.Errorf("the final stage is not distroless:%s", final)
	}
	if !fileExists(filepath.Join(root, ".dockerignore")) {
		t.Error("no .dockerignore")
	}
	for _, dir := range []string{"writer", "projector", "reader", "healthcheck", "devtoken"} {
		if !fileExists(filepath.Join(root, "cmd", dir)) {
			t.Errorf("the Dockerfile builds ./cmd/%s, which does not exist", dir)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
