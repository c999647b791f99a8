package transfers

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A partition's records are grouped by transfer, each group in offset
// order; account events of no transfer are left out.
func TestRecordsAreGroupedByTransfer(t *testing.T) {
	const transfers, accounts = "t.transfer.events", "t.account.events"
	rec := func(offset int64, topic, key, payload string) *kgo.Record {
		return &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(payload), Offset: offset}
	}
	records := []*kgo.Record{
		rec(0, accounts, "a1", `{"amount":5,"reason":"transfer:T1"}`),
		rec(1, accounts, "a1", `{"amount":5,"source":"salary"}`),
		rec(2, accounts, "a2", `{"amount":5,"source":"transfer:T2"}`),
		rec(3, accounts, "a1", `{"amount":5,"source":"transfer:T1"}`),
		rec(4, accounts, "a3", `not json`),
		rec(5, accounts, "a2", `{"amount":5,"reason":"refund:transfer:T2"}`),
	}
	got := fmt.Sprint(offsets(byTransfer(records, transfers)))
	if want := "[[0 3] [2]]"; got != want {
		t.Fatalf("account records grouped %s, want %s", got, want)
	}
	records = []*kgo.Record{rec(7, transfers, "T1", `{}`), rec(8, transfers, "T2", `{}`), rec(9, transfers, "T1", `{}`)}
	if got, want := fmt.Sprint(offsets(byTransfer(records, transfers))), "[[7 9] [8]]"; got != want {
		t.Fatalf("transfer records grouped %s, want %s", got, want)
	}
}

func offsets(groups [][]*kgo.Record) [][]int64 {
	out := make([][]int64, len(groups))
	for i, g := range groups {
		for _, r := range g {
			out[i] = append(out[i], r.Offset)
		}
	}
	return out
}
