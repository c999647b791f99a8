package writer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/domain/account"
	"github.com/tributary-es/tributary/internal/domain/transfer"
	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/writer"
)

// A route wired wrong is refused when the server is made, saying which and
// why, not when its first request comes.
func TestMiswiredRoutesFailAtStart(t *testing.T) {
	d := registered
	store := postgres.NewStore(nil, d.Upcasters())
	onlyAccounts, err := aggregate.Bind(d.Aggregates()[:1], store, d.Schemas(), aggregate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	deposit := func(string, struct{}) account.Command { return account.DepositFunds{} }
	for _, tt := range []struct {
		name  string
		route writer.Route
		want  string
	}{
		{"no command", writer.Command(account.Aggregate(), writer.CommandRoute[struct{}, account.Command]{Pattern: "POST /v1/x/{id}"}),
			"no Command"},
		{"creates without ID", writer.Command(account.Aggregate(), writer.CommandRoute[struct{}, account.Command]{
			Pattern: "POST /v1/x", Creates: true, Command: deposit}), "ID is for (and needed by) a route that Creates"},
		{"ID without creating", writer.Command(account.Aggregate(), writer.CommandRoute[struct{}, account.Command]{
			Pattern: "POST /v1/x/{id}", ID: func(struct{}) string { return "" }, Command: deposit}), "ID is for (and needed by)"},
		{"no {id}", writer.Command(account.Aggregate(), writer.CommandRoute[struct{}, account.Command]{
			Pattern: "POST /v1/x", Command: deposit}), "no {id} names the aggregate"},
		{"a type not bound", writer.Command(transfer.Aggregate(), writer.CommandRoute[struct{}, transfer.Command]{
			Pattern: "POST /v1/y/{id}", Command: func(string, struct{}) transfer.Command { return transfer.CompleteTransfer{} }}),
			`aggregate type "transfer" is not registered`},
		{"not made by Command", writer.Route{Pattern: "POST /v1/z"}, "was not made by writer.Command"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := writer.NewServer(writer.DefaultConfig(), onlyAccounts, []writer.Route{tt.route}, prometheus.NewRegistry(),
				http.NotFoundHandler(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewServer: %v, want an error saying %q", err, tt.want)
			}
		})
	}
	twice := d.Writer().Routes[0]
	if _, err := writer.NewServer(writer.DefaultConfig(), onlyAccounts, []writer.Route{twice, twice}, prometheus.NewRegistry(),
		http.NotFoundHandler(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "two routes are") {
		t.Fatalf("the same route twice: %v", err)
	}
}
