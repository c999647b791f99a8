// Command chaos runs the whole platform as separate processes, drives load
// through the writer's HTTP API while it injects faults, and then checks
// every promise the platform makes (docs/CHAOS.md).
//
//	chaos [flags]
//
// It builds the writer and projector binaries, creates a database of its own
// on the Postgres server (reached through a proxy of its own, so that it can
// pause every connection), starts a Redis server of its own (no persistence:
// a restart loses everything) and an in-process Kafka cluster (kfake with a
// data directory), then starts the writer's API, the relay, the transfers
// process manager and the projector; the writer verifies bearer tokens
// against a key chaos makes, and every command carries the token of the
// principal that sends it. While --commands commands run, it
// injects --faults faults at random moments: kill -9 of a random process
// (restarted after a pause), a Redis restart, a Postgres pause, a Kafka stop
// and start. Then it waits for the pipeline to settle and verifies:
//
//   - every committed event is on Kafka, in its key's partition, in order;
//   - every read model equals the fold of the event store, owners included;
//   - no accepted command is lost, and no refused command left an event;
//   - a command by someone who may not act on its stream was refused (403,
//     or 401 without a valid token), and none by its owner or the operator;
//   - every stream belongs to the principal that was to own it, and every
//     event records who asked: its command's sender, or the process
//     manager on behalf of the transfer's requester;
//   - money is conserved and no balance was ever negative;
//   - every transfer ended.
//
// The seed fixes the commands and the faults (kinds, moments, targets,
// pauses); timing still varies, so replaying a seed replays the same plan.
// Exit codes: 0 no violation, 1 violations or a failed run, 2 bad flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tributary-es/tributary/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		stop()
		os.Exit(config.ExitCode(err))
	}
}
