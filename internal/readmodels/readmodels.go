// Package readmodels holds what every Redis read model shares: the key
// layout, the generations a projection is built in, and the one Lua step
// that applies a batch of events together with the Kafka position it reached.
//
// # Layout
//
// A projection named N under the root prefix R keeps:
//
//	R:N:meta                       hash: partitions, gens, target, active, retired:<gen>
//	R:{N:g<gen>:p<partition>}:pos  hash per topic: next:<t> (offset), epoch:<t> (owner token), caughtup:<t>
//	R:{N:g<gen>:p<partition>}:ver  hash: stream → last applied version
//	R:{N:g<gen>:p<partition>}:...  the projection's own keys for that partition
//
// Every key of one Kafka partition shares a hash tag, so the atomic step that
// applies a batch and moves the position touches one Redis Cluster slot.
// Readers find an aggregate's keys through the partition Kafka's murmur2
// partitioner gives its id (PartitionOf).
//
// # Generations
//
// A projection is built into a generation. Readers use the active one; the
// projector writes to the target one, and while a rebuild runs (target ≠
// active) also keeps the active one up to date. When every partition of the
// target has caught up, the target becomes active in one HSET, and the old
// generation's keys are removed after a grace period.
package readmodels

import (
	"errors"
	"strconv"

	"github.com/tributary-es/tributary/internal/log"
)

// Projection turns events into Redis writes. It is split in two: Args, in
// Go, turns an event into flat string arguments (and rejects what it cannot
// apply); Lua, run inside Redis, writes them. The platform wraps Lua in the
// step that skips already-applied versions and moves the position, so a
// projection never deals with duplicates or offsets.
type Projection interface {
	// Name names the projection: its Redis namespace, consumer group and
	// metric label. Lower case letters, digits and dashes.
	Name() string
	// AggregateTypes are the aggregate types whose event topics it consumes.
	AggregateTypes() []string
	// Lua is the body of
	//
	//	local function apply(p, id, ver, a, i, n)
	//
	// where p is the partition's key prefix (keys are p .. "something"), id
	// the aggregate id, ver its version, and a[i] … a[i+n-1] the strings
	// Args returned. It must check nothing it cannot apply: a Lua error
	// leaves the batch's earlier writes in place.
	Lua() string
	// Args returns apply's arguments for e, already upcast and validated
	// against its schema. A nil slice writes nothing but still records the
	// version. An error means e cannot be applied: it is retried, then
	// dead-lettered.
	Args(e log.Event) ([]string, error)
}

// Layout names the Redis keys of one projection under a root prefix.
type Layout struct {
	root, name string
}

// NewLayout returns the layout of projection name under root (e.g. "tributary").
func NewLayout(root, name string) Layout { return Layout{root: root, name: name} }

// Name is the projection's name.
func (l Layout) Name() string { return l.name }

// Meta is the key of the projection's generation bookkeeping.
func (l Layout) Meta() string { return l.root + ":" + l.name + ":meta" }

// Prefix is the prefix of every key of one partition of a generation; the
// braces make it the Redis Cluster hash tag.
func (l Layout) Prefix(gen int64, partition int32) string {
	return l.root + ":{" + l.name + ":g" + strconv.FormatInt(gen, 10) + ":p" + strconv.FormatInt(int64(partition), 10) + "}:"
}

// GenerationPattern matches every key of a generation (for SCAN).
func (l Layout) GenerationPattern(gen int64) string {
	return l.root + ":{" + l.name + ":g" + strconv.FormatInt(gen, 10) + ":p*"
}

// Position is the key of a partition's position hash.
func (l Layout) Position(gen int64, partition int32) string { return l.Prefix(gen, partition) + "pos" }

// Versions is the key of a partition's stream → version hash.
func (l Layout) Versions(gen int64, partition int32) string {
	return l.Prefix(gen, partition) + "ver"
}

// StreamKey identifies an aggregate across types in the versions hash.
func StreamKey(aggregateType, id string) string { return aggregateType + ":" + id }

// PartitionOf is the Kafka partition of an aggregate id among n partitions:
// what franz-go's and Kafka's default (murmur2) partitioner give its records,
// toPositive(murmur2(key)) % n. The projector checks it for every event, so
// it hashes the id in place rather than through a kgo.Partitioner (which
// wants a *kgo.Record on the heap).
func PartitionOf(id string, n int32) int32 {
	return int32(murmur2(id)&0x7fffffff) % n
}

// murmur2 is MurmurHash2 (32-bit) with Kafka's seed, as the Java client's
// Utils.murmur2 and franz-go's partitioner compute it.
func murmur2(data string) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch tail := data[n&^3:]; len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// ErrNotReady: the projection has no active generation yet (it is being
// built for the first time, or rebuilt after its data was lost). Serving a
// partial model instead would be wrong.
var ErrNotReady = errors.New("read model is being built")
