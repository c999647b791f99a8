package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The measured mix: 70% deposits, 30% withdrawals. Deposits outweigh
// withdrawals, so no account ever runs short of funds.
const depositShare = 0.7

var (
	depositBody  = []byte(`{"amount":100,"currency":"EUR","source":"bench"}`)
	withdrawBody = []byte(`{"amount":50,"currency":"EUR","reason":"bench"}`)
)

// setupClients is how many requests open accounts at once.
const setupClients = 16

// commandClient sends commands to the writer over keep-alive connections, at
// most one per concurrent client.
type commandClient struct {
	http      *http.Client
	transport *http.Transport
	// deposits and withdrawals are the URLs of each account's commands, and
	// authorization its owner's Authorization header, built once so the load
	// generator spends its CPU on requests.
	deposits, withdrawals, authorization []string
}

func newCommandClient(baseURL string, clients, accounts int, a *benchAuth) *commandClient {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	c := &commandClient{
		http:          &http.Client{Transport: t, Timeout: 30 * time.Second},
		transport:     t,
		deposits:      make([]string, accounts),
		withdrawals:   make([]string, accounts),
		authorization: make([]string, accounts),
	}
	for i := range accounts {
		c.deposits[i] = baseURL + "/v1/accounts/" + accountID(i) + "/deposits"
		c.withdrawals[i] = baseURL + "/v1/accounts/" + accountID(i) + "/withdrawals"
		c.authorization[i] = a.owner(i)
	}
	return c
}

func accountID(i int) string { return fmt.Sprintf("acc-%d", i+1) }

func (c *commandClient) close() { c.transport.CloseIdleConnections() }

// post sends one command with the Authorization header authorization (none
// if empty). It returns nil for a 2xx answer, errRejected for a 422
// insufficient-funds, and an error naming the status and problem otherwise.
func (c *commandClient) post(ctx context.Context, url, authorization string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Read the body to the end so the connection is reused.
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusUnprocessableEntity && bytes.Contains(detail, []byte("/problems/insufficient-funds")) {
		return errRejected
	}
	return fmt.Errorf("POST %s: %s: %s", req.URL.Path, resp.Status, bytes.TrimSpace(detail))
}

// command sends one command of the measured mix to a random account, as
// its owner.
func (c *commandClient) command(ctx context.Context, _ int) error {
	i := rand.IntN(len(c.deposits))
	if rand.Float64() < depositShare {
		return c.post(ctx, c.deposits[i], c.authorization[i], depositBody)
	}
	return c.post(ctx, c.withdrawals[i], c.authorization[i], withdrawBody)
}

// openAccounts opens and activates accounts acc-1 … acc-n through the
// writer's API, each as its owner (a.owner). Any failure stops the run:
// the load needs every account.
func openAccounts(ctx context.Context, databaseURL string, n int, a *benchAuth) (err error) {
	w, err := startWriter(ctx, databaseURL, a)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.close()) }()
	c := newCommandClient(w.baseURL, setupClients, 0, a)
	defer c.close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(setupClients, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				id := accountID(i)
				open := fmt.Appendf(nil, `{"id":%q,"owner":"bench","currency":"EUR","initialDeposit":100000}`, id)
				if err := c.post(ctx, w.baseURL+"/v1/accounts", a.owner(i), open); err != nil {
					cancel(fmt.Errorf("open account %s: %w", id, err))
					return
				}
				if err := c.post(ctx, w.baseURL+"/v1/accounts/"+id+"/activate", a.owner(i), nil); err != nil {
					cancel(fmt.Errorf("activate account %s: %w", id, err))
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// measureWriter starts a writer, drives it with clients concurrent
// command loops, and stops it again.
func measureWriter(ctx context.Context, databaseURL string, a *benchAuth, clients, accounts int, warmup, duration time.Duration) (m measurement, err error) {
	w, err := startWriter(ctx, databaseURL, a)
	if err != nil {
		return m, err
	}
	defer func() { err = errors.Join(err, w.close()) }()
	c := newCommandClient(w.baseURL, clients, accounts, a)
	defer c.close()
	return drive(ctx, clients, warmup, duration, c.command)
}
