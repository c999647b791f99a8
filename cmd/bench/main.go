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
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tributary-es/tributary/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(config.ExitCode(err))
	}
}
