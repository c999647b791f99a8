package deploy

import (
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tributary-es/tributary/internal/config"
)

// The compose stack authenticates like production, with a development key
// set: auth-dev (devtoken init) writes a signing key and its JWKS into a
// volume once, and the writer and the reader verify tokens against that
// JWKS, mounted read-only.

// volumeAt returns the mount of service svc whose target is dir or holds it.
func volumeAt(t *testing.T, p *types.Project, svc, dir string) (types.ServiceVolumeConfig, bool) {
	t.Helper()
	for _, v := range service(t, p, svc).Volumes {
		if rel, err := filepath.Rel(v.Target, dir); err == nil && !strings.HasPrefix(rel, "..") {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func TestComposeAuthenticatesAgainstTheDevelopmentKeySet(t *testing.T) {
	p := loadCompose(t)
	dev := service(t, p, "auth-dev")
	dir := env(dev, "DEVTOKEN_DIR")
	for i, arg := range dev.Command { // --dir on the command line wins
		if arg == "--dir" && i+1 < len(dev.Command) {
			dir = dev.Command[i+1]
		} else if v, ok := strings.CutPrefix(arg, "--dir="); ok {
			dir = v
		}
	}
	if dir == "" {
		t.Fatal("auth-dev names no key directory (DEVTOKEN_DIR or --dir)")
	}
	keys, ok := volumeAt(t, p, "auth-dev", dir)
	switch {
	case !ok:
		t.Fatalf("auth-dev writes its keys to %s, which is in no volume", dir)
	case keys.Type != types.VolumeTypeVolume:
		t.Errorf("auth-dev keeps its keys in a %s mount, want a named volume", keys.Type)
	case keys.ReadOnly:
		t.Errorf("auth-dev mounts %s read-only: devtoken init cannot write", keys.Source)
	}
	if _, declared := p.Volumes[keys.Source]; !declared {
		t.Errorf("volume %q is not declared under the top-level volumes:", keys.Source)
	}

	for _, name := range []string{"writer", "reader"} {
		s := service(t, p, name)
		if got := env(s, "AUTH_MODE"); got != "jwt" {
			t.Errorf("%s: AUTH_MODE=%q, want jwt", name, got)
		}
		file := env(s, "AUTH_JWKS_FILE")
		v, ok := volumeAt(t, p, name, path.Dir(file))
		switch {
		case !ok:
			t.Errorf("%s: AUTH_JWKS_FILE=%q is in no volume", name, file)
			continue
		case v.Source != keys.Source:
			t.Errorf("%s reads its key set from volume %q, auth-dev writes to %q", name, v.Source, keys.Source)
		case !v.ReadOnly:
			t.Errorf("%s mounts the key volume read-write; it only reads the JWKS (and the signing key is in it)", name)
		}
		// The same file auth-dev writes, <dir>/jwks.json, seen through each mount.
		mine, _ := filepath.Rel(v.Target, file)
		theirs, _ := filepath.Rel(keys.Target, path.Join(dir, "jwks.json"))
		if mine != theirs {
			t.Errorf("%s: AUTH_JWKS_FILE=%q is not the jwks.json auth-dev writes in %s", name, file, dir)
		}
		for _, claim := range []string{"AUTH_ISSUER", "AUTH_AUDIENCE"} {
			if got, want := env(s, claim), env(dev, claim); got == "" || got != want {
				t.Errorf("%s: %s=%q, but auth-dev issues tokens with %q", name, claim, got, want)
			}
		}
		// The settings pass the binaries' own checks.
		var a config.Auth
		fs := config.New(name, io.Discard)
		a.Register(fs)
		if err := fs.Parse(nil, func(k string) string { return env(s, k) }); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if err := a.Check(fs); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for k := range service(t, p, "projector").Environment {
		if strings.HasPrefix(k, "AUTH_") {
			t.Errorf("projector sets %s: it serves no API", k)
		}
	}

	// A new volume takes the owner of the image's directory it is mounted
	// on: the final stage must make it, owned by the user the image runs
	// as, or devtoken init (non-root) cannot write to it.
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	final := string(b)[strings.LastIndex(string(b), "\nFROM "):]
	var user, owner string
	for _, line := range strings.Split(final, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "USER" {
			user = f[1]
		}
		if len(f) > 2 && f[0] == "COPY" && strings.TrimSuffix(f[len(f)-1], "/") == keys.Target {
			for _, opt := range f[1 : len(f)-1] {
				if o, ok := strings.CutPrefix(opt, "--chown="); ok {
					owner = o
				}
			}
		}
	}
	if owner == "" || owner != user {
		t.Errorf("the Dockerfile's final stage does not make %s owned by its USER %s (COPY --chown=%s ... %s)", keys.Target, user, user, keys.Target)
	}
}
