package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/transfers"
)

// accessIsEnforced: a command by someone who may not act on its stream was
// refused, 403 for another principal and 401 without a valid token; one by
// the owner or the operator never was (DESIGN G11). That the refused ones
// wrote nothing is commandsKeptTheirWord's.
func (v *verifier) accessIsEnforced(context.Context) (*check, error) {
	c := &check{Name: "access: strangers refused 403, no or forged token 401; owners and the operator never"}
	for i, cmd := range v.commands {
		o := v.outcomes[i]
		if o.status == 0 {
			continue // no answer: commandsKeptTheirWord reports it
		}
		c.Checked++
		want := 0
		switch cmd.as {
		case asStranger:
			want = http.StatusForbidden
		case asAnonymous, asForger:
			want = http.StatusUnauthorized
		}
		switch {
		case want != 0 && o.status != want:
			c.failf("%s (%s %s by %s %q): answered %d %s, want %d", cmd.id, cmd.kind, cmd.account, cmd.as, cmd.principal, o.status, o.problem, want)
		case want == 0 && (o.status == http.StatusUnauthorized || o.status == http.StatusForbidden):
			c.failf("%s (%s %s by %s %q): refused %d %s", cmd.id, cmd.kind, cmd.account, cmd.as, cmd.principal, o.status, o.problem)
		}
	}
	return c, nil
}

// principalsAreRecorded: every stream belongs to the principal the plan
// gave it (an account to its owner, a transfer to whoever requested it),
// and every event records who asked: the principal who sent its command,
// if they may act on the stream, or the process manager on behalf of the
// transfer's requester (DESIGN G11).
func (v *verifier) principalsAreRecorded(context.Context) (*check, error) {
	c := &check{Name: "principals: streams owned as planned; every event by its sender, or by the process manager for the requester"}
	byID := make(map[string]command, len(v.commands))
	owners := make(map[streamKey]string) // what the plan says
	for _, cmd := range v.commands {
		byID[cmd.id] = cmd
		switch {
		case cmd.kind == "open":
			owners[streamKey{account.AggregateType, cmd.account}] = cmd.principal
		case cmd.kind == "transfer" && cmd.as.mayAct():
			owners[streamKey{transfer.AggregateType, cmd.id}] = cmd.principal
		}
	}
	for k, evs := range v.store.streams {
		if want, ok := owners[k]; !ok || evs[0].Principal != want {
			c.failf("%s %s: first event %s by %q, the plan's owner %q", k.aggregateType, k.aggregateID, evs[0].Type, evs[0].Principal, want)
		}
	}
	for _, e := range v.store.events {
		c.Checked++
		cmd, ok := byID[e.CorrelationID]
		if !ok {
			continue // commandsKeptTheirWord reports it
		}
		where := fmt.Sprintf("%s %s v%d %s", e.AggregateType, e.AggregateID, e.Version, e.Type)
		if e.Principal == transfers.Principal {
			// A step of a transfer, for whoever requested it.
			requester := v.store.owner(transfer.AggregateType, cmd.id)
			if cmd.kind != "transfer" || e.OnBehalfOf == "" || e.OnBehalfOf != cmd.principal || e.OnBehalfOf != requester {
				c.failf("%s (command %s, %s by %q): by %s on behalf of %q, the transfer's requester %q",
					where, cmd.id, cmd.kind, cmd.principal, e.Principal, e.OnBehalfOf, requester)
			}
			continue
		}
		stream := streamKey{account.AggregateType, cmd.account}
		if cmd.kind == "transfer" {
			stream = streamKey{transfer.AggregateType, cmd.id}
		}
		owner := v.store.owner(e.AggregateType, e.AggregateID)
		switch {
		case e.Principal != cmd.principal || e.OnBehalfOf != "":
			c.failf("%s: by %q (on behalf of %q), its command %s was sent by %q", where, e.Principal, e.OnBehalfOf, cmd.id, cmd.principal)
		case streamKey{e.AggregateType, e.AggregateID} != stream:
			c.failf("%s: appended by command %s (%s %s), which acts on %s %s", where, cmd.id, cmd.kind, cmd.account, stream.aggregateType, stream.aggregateID)
		case !cmd.as.mayAct() || (cmd.as == asOwner && e.Principal != owner):
			c.failf("%s: appended for %s %q, the stream's owner is %q", where, cmd.as, e.Principal, owner)
		}
	}
	return c, nil
}
