package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFlagsWinOverEnvironmentAndErrorsNameBoth(t *testing.T) {
	newSet := func() (*Set, *string, *time.Duration) {
		s := New("test", io.Discard)
		url := s.String("database-url", "", "usage")
		s.Env("database-url", "DATABASE_URL")
		d := s.Duration("timeout", time.Second, "usage")
		s.Env("timeout", "TIMEOUT")
		return s, url, d
	}
	env := map[string]string{"DATABASE_URL": "from-env", "TIMEOUT": "3s"}

	s, url, d := newSet()
	if err := s.Parse(nil, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *url != "from-env" || *d != 3*time.Second {
		t.Fatalf("environment not used: %q %v", *url, *d)
	}

	s, url, _ = newSet()
	if err := s.Parse([]string{"--database-url", "from-flag"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *url != "from-flag" {
		t.Fatalf("the flag must win over the environment, got %q", *url)
	}

	s, _, _ = newSet()
	err := s.Parse(nil, func(k string) string { return map[string]string{"TIMEOUT": "soon"}[k] })
	if err == nil || !strings.Contains(err.Error(), `invalid TIMEOUT="soon" (flag --timeout)`) {
		t.Fatalf("got %v", err)
	}
	if got := s.Setting("timeout"); got != "--timeout / TIMEOUT" {
		t.Fatalf("Setting = %q", got)
	}
	if u := s.Lookup("timeout").Usage; !strings.Contains(u, "($TIMEOUT)") {
		t.Fatalf("usage %q does not name the variable", u)
	}
}
