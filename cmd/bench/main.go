// Command bench measures Tributary's components under load on this machine.
//
//	bench writer [flags]   the writer's command throughput over real HTTP,
//	                       next to the raw single-row INSERT rate of the same
//	                       Postgres, measured in the same run
//	bench projector [flags] events/s the projector applies to Redis from a
//	                       pre-filled topic (in-process kfake), next to
//	                       redis-benchmark's pipelined EVALSHA rate on the
//	                       same Redis, measured in the same run
//
// The writer benchmark works in a fresh database that it creates on the
// Postgres server and drops when it ends, also on error or Ctrl-C; the
// projector benchmark writes under a Redis key prefix of its own and
// deletes its keys (SCAN and UNLINK) after each measurement and at the end.
// Exit codes: 0 success, 1 failure (including a benchmark in which requests
// failed or events were not applied), 2 bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(exitCode(err))
	}
}

// usageError is a bad command line or setting: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}
