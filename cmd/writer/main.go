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
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(config.ExitCode(err))
	}
}
