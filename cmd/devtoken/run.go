package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tributary-es/tributary/internal/auth"
	"github.com/tributary-es/tributary/internal/config"
)

// Files in the key directory.
const (
	keyFile  = "signing-key"
	jwksFile = "jwks.json"
)

func run(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "init" && args[0] != "token") {
		return config.UsageError{Err: errors.New("usage: devtoken init --dir DIR | devtoken token --dir DIR --subject NAME [--roles r1,r2] [--ttl 12h]")}
	}
	cmd := args[0]
	fs := config.New("devtoken "+cmd, stderr)
	var dir, issuer, audience, subject, roles string
	var ttl time.Duration
	fs.StringVar(&dir, "dir", "", "directory of the development signing key and its JWKS (required)")
	fs.Env("dir", "DEVTOKEN_DIR")
	fs.StringVar(&issuer, "issuer", "tributary-dev", "the tokens' issuer (iss); the platform's AUTH_ISSUER")
	fs.Env("issuer", "AUTH_ISSUER")
	fs.StringVar(&audience, "audience", "tributary", "the tokens' audience (aud); the platform's AUTH_AUDIENCE")
	fs.Env("audience", "AUTH_AUDIENCE")
	if cmd == "token" {
		fs.StringVar(&subject, "subject", "", "the principal the token names (sub; required)")
		fs.StringVar(&roles, "roles", "", "comma-separated roles, e.g. operator")
		fs.DurationVar(&ttl, "ttl", 12*time.Hour, "how long the token is valid")
	}
	if err := fs.Parse(args[1:], getenv); err != nil {
		return config.UsageError{Err: err}
	}
	switch {
	case fs.NArg() > 0:
		return config.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case dir == "":
		return config.UsageError{Err: fmt.Errorf("%s is required", fs.Setting("dir"))}
	case cmd == "token" && subject == "":
		return config.UsageError{Err: errors.New("--subject is required")}
	case cmd == "token" && (ttl <= 0 || ttl > 30*24*time.Hour):
		return config.UsageError{Err: errors.New("--ttl must be from 1s to 720h")}
	}
	if cmd == "token" {
		if _, err := os.Stat(filepath.Join(dir, keyFile)); err != nil {
			return fmt.Errorf("no signing key in %s: run 'devtoken init --dir %s' first", dir, dir)
		}
	}
	signer, err := auth.LoadOrCreateSigner(filepath.Join(dir, keyFile), issuer, audience)
	if err != nil {
		return err
	}
	if cmd == "init" {
		if err := os.WriteFile(filepath.Join(dir, jwksFile), signer.JWKS(), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, filepath.Join(dir, jwksFile))
		return nil
	}
	var roleList []string
	for r := range strings.SplitSeq(roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roleList = append(roleList, r)
		}
	}
	token, err := signer.Token(subject, roleList, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}
