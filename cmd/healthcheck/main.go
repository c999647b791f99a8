// Command healthcheck is the containers' health probe: the images have no
// shell and no curl, so compose runs this instead. It GETs each URL and
// exits 0 when every one answers 2xx within the timeout, 1 otherwise.
//
//	healthcheck [-timeout 2s] http://127.0.0.1:8080/readyz ...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long each URL may take to answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: healthcheck [-timeout 2s] URL...")
	}
	client := &http.Client{Timeout: *timeout}
	for _, url := range fs.Args() {
		if err := check(ctx, client, url); err != nil {
			return err
		}
	}
	return nil
}

func check(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return nil
}
