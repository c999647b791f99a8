package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
	"github.com/tributary-es/tributary/internal/transfers"
	"github.com/tributary-es/tributary/schemas"
)

// childEnv makes the test binary run the writer's main instead of the
// tests: a real process that can be killed without a chance to clean up.
const childEnv = "TRIBUTARY_WRITER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Issue 8, acceptance 1, with real processes: 'writer processes' is killed
// with SIGKILL three times while 600 transfers run (this test's own writer
// relays them), and a last one finishes the work: every transfer ends,
// money is conserved, no account is negative, and each transfer moved its
// money at most once.
func TestTransfersSurviveAKilledProcessManager(t *testing.T) {
	t.Parallel() // its own database and Kafka: the other tests run meanwhile (it waits out session timeouts)
	dbURL := testenv.PostgresURL(t)
	cluster := testenv.Kafka(t)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	// The API and the relay run here; the process manager in children.
	startWriter(t, []string{"--processes=false", "--kafka-partitions", "8"}, testenv.Getenv("DATABASE_URL", dbURL, "KAFKA_BROKERS", brokers))
	pool := testenv.PostgresPool(t, dbURL)
	sch, err := log.LoadSchemas(schemas.Events)
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool, registered.Upcasters())
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
		child := startManager(t, args)
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
			byEarlier := ended(t, transferHandler, started)
			deadline := time.Now().Add(2 * time.Minute)
			for n := ended(t, transferHandler, started); n < len(started)/3 || n == byEarlier; n = ended(t, transferHandler, started) {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the manager made no progress", round)
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

// startManager starts 'writer processes' as a child process.
func startManager(t *testing.T, args []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	logf, err := os.Create(fmt.Sprintf("%s/manager-%d.log", os.TempDir(), time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// registered is this build's registry of domains, made once for the
// package's tests (each make costs the schemas' and documents' assembly).
var registered = domains.Must()
