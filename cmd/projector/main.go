// Command projector keeps the Redis read models up to date from the Kafka
// event topics, and manages them.
//
//	projector [run] [flags]                      consume and project (default)
//	projector rebuild <projection> [flags]       build a new generation from offset 0 and switch to it
//	projector dlq list <projection> [flags]      show the events parked on the dead-letter topic
//	projector dlq replay <projection> [flags]    apply the parked events again, in order
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tributary-es/tributary/internal/config"
	"github.com/tributary-es/tributary/internal/domains"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg, err := domains.All()
	if err == nil {
		err = run(ctx, reg, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(config.ExitCode(err))
	}
}
