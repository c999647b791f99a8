// Command bench measures Tributary's components under load on this machine.
//
//	bench writer [flags]   the writer's command throughput over real HTTP,
//	                       next to the raw single-row INSERT rate of the same
//	                       Postgres, measured in the same run
//	bench projector [flags] events/s the projector applies to Redis from a
//	                       pre-filled topic (in-process kfake), next to
//	                       redis-benchmark's pipelined EVALSHA rate on the
//	                       same Redis, measured in the same run
//	bench pipeline [flags] the whole platform in this process (writer API,
//	                       relay, transfers process manager, every
//	                       projection, reader API; Kafka in-process) under
//	                       a mix of deposits, withdrawals, transfers and
//	                       read-your-writes queries: commands/s, command
//	                       and end-to-end latency (writer's answer to
//	                       visible in the reader), relay, projector and
//	                       reader rates, each beside a ceiling of the
//	                       machine measured in the same run (raw INSERTs,
//	                       pipelined Redis, a bare HTTP handler)
//
// The writer and pipeline benchmarks work in a fresh database that they
// create on the Postgres server and drop when they end, also on error or
// Ctrl-C; the projector and pipeline benchmarks write under a Redis key
// prefix of their own and delete its keys (SCAN and UNLINK) at the end.
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
