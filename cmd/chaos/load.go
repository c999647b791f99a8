package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// command is one command of the plan: what is sent, and what it would do
// to the money if it is accepted.
type command struct {
	index int
	// id is the command's Idempotency-Key and X-Correlation-ID (and a
	// transfer's id): every event it causes carries it.
	id       string
	kind     string // open, activate, deposit, withdraw, transfer, close
	account  string
	to       string // transfers: the receiving account
	amount   int64  // open: the initial deposit
	currency string
	path     string
	body     []byte
	// principal is whose token the command carries ("" for none); as says
	// how it stands to the stream it acts on.
	principal string
	as        sender
}

// sender is how a command's principal stands to the stream it acts on,
// and so what the writer must answer (DESIGN G11).
type sender int

const (
	// asOwner: the stream's owner (for a transfer, the source account's).
	asOwner sender = iota
	// asOperator: the operator, who may act on every stream.
	asOperator
	// asStranger: another principal; the writer must refuse it, 403.
	asStranger
	// asAnonymous: no token at all; 401.
	asAnonymous
	// asForger: the owner's name in a token signed by a key the writer
	// does not trust; 401.
	asForger
)

// mayAct tells whether the writer must let the command through its access
// check (the domain may still refuse it).
func (s sender) mayAct() bool { return s == asOwner || s == asOperator }

func (s sender) String() string {
	return [...]string{"owner", "operator", "stranger", "anonymous", "forger"}[s]
}

// outcome is what the writer finally answered to a command.
type outcome struct {
	// status is the final HTTP status; 0 when no definite answer came
	// before the client gave up.
	status   int
	problem  string // the problem type of a refusal
	response commandResponse
	attempts int
	latency  time.Duration
}

func (o outcome) accepted() bool { return o.status == http.StatusOK || o.status == http.StatusCreated }
func (o outcome) refused() bool  { return o.status >= 400 && o.status < 500 }

// commandResponse is the part of the writer's success body chaos checks.
type commandResponse struct {
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	CorrelationID string          `json:"correlationId"`
	Events        []appendedEvent `json:"events"`
}

type appendedEvent struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	Version        int64  `json:"version"`
	GlobalPosition int64  `json:"globalPosition"`
}

// plan makes the commands of a seed: the first --accounts open the
// accounts, the next --accounts activate them (or, for the few that stay
// pending, try a deposit the writer must refuse), and the rest are a mix
// of deposits, withdrawals (some beyond the balance), transfers (some to
// an account of another currency), closes (mostly refused: the balance is
// not zero), invalid amounts, and withdrawals and transfers out of an
// account by someone who may not (another principal, no token, a forged
// token).
//
// The accounts belong to --principals principals: account n to
// principal(n mod --principals), who opens it and sends its commands; a
// transfer goes out of its sender's account into anyone's. The operator
// sends a share of the deposits and transfers on anyone's accounts.
type plan struct {
	seed       uint64
	accounts   int
	commands   int
	principals int
}

func (p plan) accountID(n int) string { return fmt.Sprintf("acct-%05d", n) }

// principal names the plan's principal i.
func (p plan) principal(i int) string { return fmt.Sprintf("client-%02d", i) }

// owner is the principal that owns account n.
func (p plan) owner(n int) string { return p.principal(n % p.principals) }

// operator is the principal with the operator role.
const operator = "chaos-operator"

func (p plan) currency(n int) string {
	if n%10 == 9 {
		return "USD"
	}
	return "EUR"
}
func (p plan) pending(n int) bool { return n%25 == 7 }

// command returns the plan's command i.
func (p plan) command(i int) command {
	rng := rand.New(rand.NewPCG(p.seed, uint64(i)))
	c := command{index: i, id: fmt.Sprintf("s%d-c%06d", p.seed, i)}
	switch {
	case i < p.accounts:
		n := i
		c.principal = p.owner(n)
		c.kind, c.account, c.currency = "open", p.accountID(n), p.currency(n)
		c.amount = int64(rng.IntN(4)) * int64(10_000+rng.IntN(90_000)) // a quarter open empty
		c.path = "/v1/accounts"
		c.body = marshal(map[string]any{"id": c.account, "owner": "owner " + c.account, "currency": c.currency, "initialDeposit": c.amount})
		return c
	case i < 2*p.accounts:
		n := i - p.accounts
		c.account, c.currency, c.principal = p.accountID(n), p.currency(n), p.owner(n)
		if p.pending(n) {
			return p.deposit(c, rng) // refused: the account is not active
		}
		c.kind, c.path, c.body = "activate", "/v1/accounts/"+c.account+"/activate", []byte("{}")
		return c
	}
	n := rng.IntN(p.accounts)
	c.account, c.currency, c.principal = p.accountID(n), p.currency(n), p.owner(n)
	switch r := rng.IntN(100); {
	case r < 40:
		c = p.deposit(c, rng)
		if rng.IntN(10) == 0 {
			c.principal, c.as = operator, asOperator
		}
	case r < 68:
		c.kind, c.amount = "withdraw", int64(1+rng.IntN(80_000))
		c.path = "/v1/accounts/" + c.account + "/withdrawals"
		c.body = marshal(map[string]any{"amount": c.amount, "currency": c.currency, "reason": "chaos"})
	case r < 96:
		to := (n + 1 + rng.IntN(p.accounts-1)) % p.accounts
		c.kind, c.to, c.amount = "transfer", p.accountID(to), int64(1+rng.IntN(60_000))
		c.path = "/v1/transfers"
		c.body = marshal(map[string]any{"id": c.id, "from": c.account, "to": c.to, "amount": c.amount, "currency": c.currency, "reference": "chaos"})
		if rng.IntN(20) == 0 {
			c.principal, c.as = operator, asOperator
		}
	case r < 98:
		c.kind, c.path = "close", "/v1/accounts/"+c.account+"/close"
		c.body = marshal(map[string]any{"reason": "chaos"})
	case r < 99: // invalid: the writer must refuse it and store nothing
		c.kind = "deposit"
		c.path = "/v1/accounts/" + c.account + "/deposits"
		c.body = marshal(map[string]any{"amount": -int64(1 + rng.IntN(100)), "currency": c.currency, "source": "chaos"})
	default: // not theirs: the writer must refuse it and store nothing
		return p.trespass(c, n, rng)
	}
	return c
}

// trespass makes c a withdrawal or a transfer out of account n by someone
// who may not: another principal (403), or nobody (no token, or a forged
// one: 401).
func (p plan) trespass(c command, n int, rng *rand.Rand) command {
	if rng.IntN(2) == 0 {
		c.kind, c.amount = "withdraw", int64(1+rng.IntN(1_000))
		c.path = "/v1/accounts/" + c.account + "/withdrawals"
		c.body = marshal(map[string]any{"amount": c.amount, "currency": c.currency, "reason": "chaos trespass"})
	} else {
		to := (n + 1 + rng.IntN(p.accounts-1)) % p.accounts
		c.kind, c.to, c.amount = "transfer", p.accountID(to), int64(1+rng.IntN(1_000))
		c.path = "/v1/transfers"
		c.body = marshal(map[string]any{"id": c.id, "from": c.account, "to": c.to, "amount": c.amount, "currency": c.currency, "reference": "chaos trespass"})
	}
	switch r := rng.IntN(5); {
	case r < 3:
		c.principal, c.as = p.principal((n%p.principals+1+rng.IntN(p.principals-1))%p.principals), asStranger
	case r < 4:
		c.principal, c.as = "", asAnonymous
	default:
		c.as = asForger // in the owner's name
	}
	return c
}

func (p plan) deposit(c command, rng *rand.Rand) command {
	c.kind, c.amount = "deposit", int64(1+rng.IntN(50_000))
	c.path = "/v1/accounts/" + c.account + "/deposits"
	c.body = marshal(map[string]any{"amount": c.amount, "currency": c.currency, "source": "chaos"})
	return c
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// load sends the plan's commands with --clients concurrent clients and
// keeps every outcome.
type load struct {
	plan     plan
	baseURL  string
	clients  int
	giveUp   time.Duration
	creds    *credentials
	client   *http.Client
	commands []command
	outcomes []outcome
	done     atomic.Int64 // commands with a final outcome
}

func newLoad(p plan, baseURL string, clients int, giveUp time.Duration, creds *credentials) *load {
	l := &load{plan: p, baseURL: baseURL, clients: clients, giveUp: giveUp, creds: creds,
		commands: make([]command, p.commands), outcomes: make([]outcome, p.commands)}
	for i := range l.commands {
		l.commands[i] = p.command(i)
	}
	l.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute}}
	return l
}

// run sends every command: the openings, then the activations, then the
// mix, each phase by all clients at once.
func (l *load) run(ctx context.Context) {
	a := l.plan.accounts
	for _, phase := range [][2]int{{0, a}, {a, 2 * a}, {2 * a, l.plan.commands}} {
		var next atomic.Int64
		next.Store(int64(phase[0]))
		var wg sync.WaitGroup
		for range l.clients {
			wg.Go(func() {
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= phase[1] {
						return
					}
					l.outcomes[i] = l.send(ctx, l.commands[i])
					l.done.Add(1)
				}
			})
		}
		wg.Wait()
	}
	l.client.CloseIdleConnections()
}

// send sends a command until the writer gives a definite answer: a success
// or a refusal. A lost connection, a 5xx, a timeout or "request in
// progress" is retried with the same Idempotency-Key, as a careful client
// does, until giveUp has passed.
func (l *load) send(ctx context.Context, c command) outcome {
	began := time.Now()
	var o outcome
	for o.attempts = 1; ; o.attempts++ {
		status, problem, body, err := l.post(ctx, c)
		if err == nil {
			retry := status >= 500 || status == http.StatusTooManyRequests ||
				(status == http.StatusConflict && strings.HasSuffix(problem, "idempotency-key-in-use"))
			if !retry {
				o.status, o.problem, o.latency = status, problem, time.Since(began)
				if o.accepted() {
					if err := json.Unmarshal(body, &o.response); err != nil {
						o.problem = "unreadable success body: " + err.Error()
					}
				}
				return o
			}
		}
		if ctx.Err() != nil || time.Since(began) > l.giveUp {
			o.latency = time.Since(began)
			if err != nil {
				o.problem = err.Error()
			} else {
				o.problem = fmt.Sprintf("last answer %d %s", status, problem)
			}
			return o
		}
		backoff := min(20*time.Millisecond<<min(o.attempts-1, 6), time.Second)
		sleep(ctx, backoff/2+rand.N(backoff/2+1)) // jitter: not part of the plan
	}
}

// post sends one attempt; it returns the status, the problem type of a
// problem+json answer, and the body.
func (l *load) post(ctx context.Context, c command) (int, string, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.baseURL+c.path, bytes.NewReader(c.body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", c.id)
	req.Header.Set("X-Correlation-ID", c.id)
	if authorization := l.creds.authorization(c); authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, err
	}
	var p struct {
		Type string `json:"type"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(body, &p)
	}
	return resp.StatusCode, p.Type, body, nil
}
