package domains_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tributary-es/tributary/internal/domains"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/testenv"
)

// luaOnly is a projection applied by its Lua, whether or not it is Planned.
type luaOnly struct{ readmodels.Projection }

// Every Planned projection of the platform's domains writes what its Lua
// writes: the same account history (events redelivered, batches of 1 to 300)
// through both gives equal keys and replies.
func TestPlansWriteWhatTheirLuaWrites(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	history := testenv.GenerateAccounts(300, 6_000, 5).Events
	const partitions = 6
	planned := 0
	for _, p := range domains.Must().Projections() {
		if _, ok := p.(readmodels.Planned); !ok {
			continue
		}
		planned++
		t.Run(p.Name(), func(t *testing.T) {
			roots := []string{prefix + ":lua:" + p.Name(), prefix + ":plan:" + p.Name()}
			steps := []*readmodels.Steps{
				readmodels.NewSteps(rdb, readmodels.NewLayout(roots[0], p.Name()), luaOnly{p}),
				readmodels.NewSteps(rdb, readmodels.NewLayout(roots[1], p.Name()), p),
			}
			byPartition := make([][]readmodels.Item, partitions)
			for _, e := range history {
				if !slices.Contains(p.AggregateTypes(), e.AggregateType) {
					continue
				}
				args, err := p.Args(e)
				if err != nil {
					t.Fatal(err)
				}
				part := readmodels.PartitionOf(e.AggregateID, partitions)
				byPartition[part] = append(byPartition[part], readmodels.Item{Offset: int64(len(byPartition[part])),
					Stream: readmodels.StreamKey(e.AggregateType, e.AggregateID), ID: e.AggregateID, Version: e.Version, Args: args})
			}
			topic := "planned.account.events"
			for _, s := range steps {
				for part := range int32(partitions) {
					if _, err := s.Claim(ctx, 1, topic, part, "owner", false); err != nil {
						t.Fatal(err)
					}
				}
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for part, items := range byPartition {
				for next := 0; next < len(items); {
					from := max(next-rng.IntN(4), 0) // redelivered: duplicates
					to := min(from+1+rng.IntN(300), len(items))
					b := readmodels.Batch{Generation: 1, Topic: topic, Partition: int32(part), Epoch: "owner", Items: items[from:to]}
					want, wantErr := steps[0].Apply(ctx, b)
					got, gotErr := steps[1].Apply(ctx, b)
					if wantErr != nil || gotErr != nil || string(got.Outcomes) != string(want.Outcomes) || got.Gap != nil || want.Gap != nil {
						t.Fatalf("partition %d [%d, %d): planned %q %v, Lua %q %v", part, from, to, got.Outcomes, gotErr, want.Outcomes, wantErr)
					}
					next = to
				}
			}
			lua, plan := dumpKeys(t, rdb, roots[0]), dumpKeys(t, rdb, roots[1])
			if len(lua) < 20 {
				t.Fatalf("the Lua wrote %d keys: the test tested little", len(lua))
			}
			if len(lua) != len(plan) {
				t.Fatalf("Lua wrote %d keys, the plan %d", len(lua), len(plan))
			}
			for k, v := range lua {
				if plan[k] != v {
					t.Fatalf("key %s:\nLua  %s\nplan %s", k, v, plan[k])
				}
			}
		})
	}
	if planned < 4 {
		t.Fatalf("%d Planned projections; the account summary, history, directory and the correlation index are", planned)
	}
}

// dumpKeys is every key under root, by name without it, its value as text.
func dumpKeys(t *testing.T, rdb *redis.Client, root string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, root+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		var b strings.Builder
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "hash":
			h := rdb.HGetAll(ctx, k).Val()
			for _, f := range slices.Sorted(maps.Keys(h)) {
				if !strings.HasPrefix(f, "epoch:") { // the owners' tokens: the same here, but not the point
					fmt.Fprintf(&b, "%s=%s;", f, h[f])
				}
			}
		case "zset":
			for _, z := range rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				fmt.Fprintf(&b, "%v %v;", z.Score, z.Member)
			}
		case "list":
			b.WriteString(strings.Join(rdb.LRange(ctx, k, 0, -1).Val(), ";"))
		case "set":
			b.WriteString(strings.Join(slices.Sorted(slices.Values(rdb.SMembers(ctx, k).Val())), ";"))
		case "string":
			b.WriteString(rdb.Get(ctx, k).Val())
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		out[strings.TrimPrefix(k, root)] = b.String()
	}
	return out
}
