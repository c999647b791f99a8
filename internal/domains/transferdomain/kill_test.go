package transferdomain_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains/banktest"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/transfers"
	"github.com/tributary-es/tributary/schemas"
)

// Issue 8, acceptance 1, with real processes: 'writer processes', the
// writer binary built from this module, is killed with SIGKILL three times
// while 600 transfers run (another writer process serves and relays them),
// and a last one finishes the work: every transfer ends,
// money is conserved, no account is negative, and each transfer moved its
// money at most once.
func TestTransfersSurviveAKilledProcessManager(t *testing.T) {
	t.Parallel() // its own database and Kafka: the other tests run meanwhile (it waits out session timeouts)
	dbURL := testenv.PostgresURL(t)
	cluster := testenv.Kafka(t)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	// The API and the relay run in one writer process; the process manager
	// in others, killed and started again.
	writerBin := buildWriter(t)
	servingLog := startServing(t, writerBin, "--migrate", "--processes=false", "--database-url", dbURL, "--kafka-brokers", brokers, "--kafka-partitions", "8")
	pool := testenv.PostgresPool(t, dbURL)
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool, banktest.Registry().Upcasters())
	accounts := aggregate.NewHandler(account.Aggregate(), store, sch, aggregate.Options{})
	transferHandler := aggregate.NewHandler(transfer.Aggregate(), store, sch, aggregate.Options{})
	ctx := context.Background()
	meta := log.Metadata{CorrelationID: "setup", CausationID: "setup", Principal: "test"}
	var ids []string
	var total int64
	for i := range 30 {
		id := fmt.Sprintf("k-%02d", i)
		deposit := int64(10_000 + 500*i)
		for _, c := range []account.Command{account.OpenAccount{ID: id, Owner: "o", Currency: "EUR", InitialDeposit: deposit}, account.ActivateAccount{}} {
			if i%6 == 5 && c == (account.ActivateAccount{}) {
				continue // pending: refuses deposits, so some transfers are refunded
			}
			if _, err := accounts.Handle(ctx, aggregate.Request[account.Command]{AggregateID: id, Command: c, Metadata: meta}); err != nil {
				t.Fatal(err)
			}
		}
		ids, total = append(ids, id), total+deposit
	}

	args := []string{"processes", "--database-url", dbURL, "--kafka-brokers", brokers, "--kafka-partitions", "8",
		"--http-addr", "127.0.0.1:0", "--log-level", "warn"}
	rng := rand.New(rand.NewPCG(3, 4))
	var started []string
	for round := range 4 {
		// Ended before this round's manager starts: by the earlier ones,
		// all dead by now. (Counted after this round's requests, a fast
		// manager could have ended all of them already, leaving "some by
		// this manager" nothing to wait for.)
		byEarlier := ended(t, transferHandler, started)
		child, managerLog := startManager(t, writerBin, args)
		for range 150 {
			from, to := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
			if from == to {
				continue
			}
			id := uuid.NewString()
			if _, err := transferHandler.Handle(ctx, aggregate.Request[transfer.Command]{AggregateID: id,
				Command:  transfer.RequestTransfer{From: from, To: to, Amount: int64(1 + rng.IntN(6000)), Currency: "EUR", Reference: "k"},
				Metadata: log.Metadata{CorrelationID: id, CausationID: id, Principal: "test"}}); err != nil {
				t.Fatal(err)
			}
			started = append(started, id)
		}
		if round < 3 {
			// Let it get somewhere — a third of the transfers so far ended,
			// and some by this manager — then kill it mid-work.
			//
			// "Some by this manager" makes sure it is in the consumer group
			// with its partitions before it dies. The earlier managers may
			// have ended a third already; killed while its JoinGroup waits
			// for the rebalance, it would stay in kfake's group for good:
			// kfake starts a member's session timer only once a response
			// reached it, and the pending-sync timer stops when the leader
			// syncs, so the dead member keeps its share of the partitions
			// and the last manager never gets them (real Kafka expires it
			// after the session timeout).
			deadline := time.Now().Add(2 * time.Minute)
			for n := ended(t, transferHandler, started); n < len(started)/3 || n == byEarlier; n = ended(t, transferHandler, started) {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the manager made no progress (%d of %d transfers ended, %d before it)\nits log:\n%s\nthe serving writer's log:\n%s",
						round, n, len(started), byEarlier, tail(managerLog()), tail(servingLog()))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = child.Wait()
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for _, id := range started {
		for {
			st, _, err := transferHandler.Load(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != transfer.StatusRequested {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("transfer %s still running after the last manager had 3 minutes", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var sum int64
	moved := make(map[string]int)
	for _, id := range ids {
		evs, err := store.ReadStream(ctx, postgres.StreamQuery{AggregateType: account.AggregateType, AggregateID: id})
		if err != nil {
			t.Fatal(err)
		}
		var s account.State
		for _, ev := range evs {
			a, err := account.DecodeEvent(ev.Type, ev.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if s = account.Evolve(s, a); s.Balance < 0 {
				t.Fatalf("%s went negative at v%d", id, ev.Version)
			}
			if tid, ok := transfers.TransferOf(ev); ok {
				moved[tid+"/"+ev.Type]++
			}
		}
		sum += s.Balance
	}
	if sum != total {
		t.Fatalf("balances sum to %d, %d went in", sum, total)
	}
	for key, n := range moved {
		if n != 1 {
			t.Errorf("%s happened %d times", key, n)
		}
	}
	t.Logf("%d transfers through 3 SIGKILLs of the process manager; %d money movements, each once", len(started), len(moved))
}

// ended counts the transfers that completed or failed.
func ended(t *testing.T, h *aggregate.Handler[transfer.State, transfer.Command, transfer.Event], ids []string) int {
	n := 0
	for _, id := range ids {
		st, _, err := h.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != transfer.StatusRequested {
			n++
		}
	}
	return n
}

// buildWriter builds the writer binary from this module into a temporary
// directory of t's.
func buildWriter(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "writer")
	// -trimpath, as make test and cmd/chaos build: one cache entry
	// whichever clone builds it.
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/writer")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/writer: %v\n%s", err, out)
	}
	return bin
}

// tail is the end of a log, at most 4 KiB.
func tail(log string) string { return log[max(0, len(log)-4096):] }

// startServing starts 'writer serve' with args (authentication off: the
// test sends no request to its API) and waits until it is ready. It returns
// what the process has logged so far, on each call.
func startServing(t *testing.T, bin string, args ...string) func() string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--http-addr", addr, "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), "AUTH_MODE=off")
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return out.String
			}
		}
		select {
		case <-exited:
			t.Fatalf("the writer stopped before it was ready:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer was not ready within a minute")
		}
	}
}

// startManager starts 'writer processes' as a child process. It returns
// the process and what it has logged so far, on each call.
func startManager(t *testing.T, bin string, args []string) (*exec.Cmd, func() string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("manager-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, func() string {
		b, err := os.ReadFile(logf.Name())
		if err != nil {
			return err.Error()
		}
		return string(b)
	}
}
