package main

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/testenv"
)

// The CI version of chaos (issue 9, acceptance 2): a few thousand commands
// and every kind of fault once; the release check is the same command at
// 50,000 commands and 20 faults (docs/CHAOS.md).
func TestShortChaosFindsNoViolation(t *testing.T) {
	t.Parallel()           // each run has its own database, Redis, Kafka and proxies
	testenv.PostgresURL(t) // the server must be up; chaos makes its own database
	var out, progress bytes.Buffer
	err := run(context.Background(), []string{"--seed", "7", "--commands", "3000", "--accounts", "50", "--faults", "9",
		"--settle", "2m"}, noEnv, &out, &progress)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("chaos: %v\n%s", err, progress.String())
	}
	report := out.String()
	for _, want := range []string{"PASS: no violation", "3000: ", faultKinds[0], faultKinds[len(faultKinds)-1]} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(report, "FAILED TO INJECT") {
		t.Error("a fault could not be injected")
	}
}

// Acceptance 3: the same short run with the relay built to move its
// checkpoint before Kafka acknowledged a batch must end in violations —
// proof that the checker can fail.
func TestChaosCatchesARelayThatCheckpointsBeforeTheAck(t *testing.T) {
	t.Parallel()
	testenv.PostgresURL(t)
	var out, progress bytes.Buffer
	// Eight faults are every kind but the 40 s stall, which this check does
	// not need: a relay killed while Kafka is out loses what it checkpointed.
	err := run(context.Background(), []string{"--seed", "7", "--commands", "1500", "--accounts", "50", "--faults", "8",
		"--settle", "20s", "--broken"}, noEnv, &out, &progress)
	t.Log("\n" + out.String())
	if !errors.Is(err, errViolations) {
		t.Fatalf("chaos with the broken relay: %v, want violations\n%s", err, progress.String())
	}
	if !strings.Contains(out.String(), "FAIL Kafka: every committed event") {
		t.Error("the report does not say that committed events are missing on Kafka")
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"--commands", "10"},
		{"--accounts", "1"},
		{"--principals", "1"},
		{"--principals", "300", "--accounts", "200"},
		{"--faults", "-1"},
		{"--session-timeout", "1s"},
		{"--database-url", "mysql://x"},
		{"--redis-server", "/nonexistent/redis-server"},
		{"extra"},
	} {
		var out bytes.Buffer
		start := time.Now()
		err := run(context.Background(), args, noEnv, &out, &out)
		if code := config.ExitCode(err); code != 2 || time.Since(start) > 5*time.Second {
			t.Errorf("chaos %v: exit code %d after %s (%v), want 2 at once", args, code, time.Since(start), err)
		}
	}
}

// TestFaultPlanIsTheSeeds: a seed fixes the plan, every kind comes once in
// nine faults, and the faults fall within the load.
func TestFaultPlanIsTheSeeds(t *testing.T) {
	a, b := planFaults(3, 20, 50_000), planFaults(3, 20, 50_000)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("fault %d differs for one seed: %+v vs %+v", i, a[i], b[i])
		}
		if a[i].At < 2_500 || a[i].At > 45_000 {
			t.Errorf("fault %d at command %d: outside 5%%–90%% of the load", i, a[i].At)
		}
	}
	kinds := make(map[string]int)
	for _, f := range planFaults(9, 9, 10_000) {
		kinds[f.Kind]++
	}
	if len(kinds) != len(faultKinds) {
		t.Errorf("9 faults cover %d kinds, want all %d: %v", len(kinds), len(faultKinds), kinds)
	}
	p := plan{seed: 5, accounts: 10, commands: 1000, principals: 3}
	if c1, c2 := p.command(500), p.command(500); !bytes.Equal(c1.body, c2.body) || c1.id != c2.id || c1.principal != c2.principal || c1.as != c2.as {
		t.Error("a seed's command differs between two calls")
	}
}

func noEnv(string) string { return "" }

// TestPlanSendsEachCommandAsItsPrincipal: accounts are spread over the
// principals, each opened by its owner; a transfer goes out of its
// sender's account (or the operator's request); some commands come from
// the operator and from trespassers of every kind.
func TestPlanSendsEachCommandAsItsPrincipal(t *testing.T) {
	p := plan{seed: 3, accounts: 40, commands: 10_000, principals: 8}
	owners := make(map[string]string)
	senders := make(map[sender]int)
	for i := range p.commands {
		c := p.command(i)
		senders[c.as]++
		switch {
		case c.kind == "open":
			owners[c.account] = c.principal
		case c.as == asOwner && c.principal != owners[c.account]:
			t.Errorf("%s (%s %s) sent by %q, the account's owner is %q", c.id, c.kind, c.account, c.principal, owners[c.account])
		case c.as == asStranger && (c.principal == owners[c.account] || c.principal == ""):
			t.Errorf("%s (%s %s): a stranger %q", c.id, c.kind, c.account, c.principal)
		case c.as == asOperator && c.principal != operator:
			t.Errorf("%s: the operator's command sent by %q", c.id, c.principal)
		}
	}
	if len(slices.Compact(slices.Sorted(maps.Values(owners)))) != p.principals {
		t.Errorf("the accounts belong to %d principals, want %d", len(slices.Compact(slices.Sorted(maps.Values(owners)))), p.principals)
	}
	for _, s := range []sender{asOwner, asOperator, asStranger, asAnonymous, asForger} {
		if senders[s] == 0 {
			t.Errorf("no command sent by %s: %v", s, senders)
		}
	}
}
