// Command devtoken is the development token issuer of `make run` and the
// compose stack: it makes an Ed25519 signing key and the JWKS the writer and
// the reader verify tokens with, and issues tokens for any subject. It is
// for development only: production tokens come from a real identity
// provider, whose JWKS URL the platform is configured with.
//
//	devtoken init  --dir DIR [--issuer tributary-dev] [--audience tributary]
//	devtoken token --dir DIR --subject NAME [--roles r1,r2] [--ttl 12h]
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
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(config.ExitCode(err))
	}
}
