// Command writer serves the command API: HTTP commands become events appended
// to the Postgres event store.
//
//	writer [serve] [flags]   serve the API (default)
//	writer migrate [flags]   apply database migrations and exit
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
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(config.ExitCode(err))
	}
}
