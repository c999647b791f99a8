// Command reader serves queries over the Redis read models: account
// summaries, histories, the directory and causation trees, with
// read-your-writes for clients that name the version they must see.
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
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "reader:", err)
		os.Exit(config.ExitCode(err))
	}
}
