package readmodels

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// stepScript wraps a projection's apply function in the one atomic step of a
// batch: check that the caller still owns the partition, skip versions
// already applied, stop before a version gap, apply the rest, move the
// position.
//
//	KEYS[1]  the partition's position hash (fixes the slot; every key used
//	         shares its hash tag)
//	ARGV[1]  the partition's key prefix
//	ARGV[2]  the owner's epoch token; "" replays dead-lettered events:
//	         no owner check, the position stays
//	ARGV[3]  "1" to mark the partition caught up after this batch
//	ARGV[4]  number of events
//	ARGV[5]  the topic; positions are per topic, versions per partition
//	then per event:
//	         offset, stream ("" = skip: dead-lettered), id, version, n, n args
//
// It returns {"ok", outcomes} or {"gap", outcomes, index, applied version}
// or {"fenced"}; outcomes has a letter per event handled: a(pplied),
// d(uplicate), s(kipped).
//
// The versions of the batch's streams are read in one HMGET and the new ones
// written in one HSET, not a call of each per event: Redis spends most of a
// step on the calls. They are written whenever the step ends — done, at a
// gap, or when the projection's Lua fails — so an event whose writes are in
// the read model always has its version recorded and is never applied twice.
const stepScript = `
local pos = KEYS[1]
local p = ARGV[1]
local topic = ARGV[5]
local replay = ARGV[2] == ''
if not replay and redis.call('HGET', pos, 'epoch:' .. topic) ~= ARGV[2] then
  return {'fenced'}
end
local versions = p .. 'ver'
local n = tonumber(ARGV[4])
local chunk = 500 -- fields a call, well below Lua's limit on unpack
local cur, streams = {}, {}
local i = 6
for e = 1, n do
  local stream = ARGV[i + 1]
  if stream ~= '' and cur[stream] == nil then
    cur[stream] = 0
    streams[#streams + 1] = stream
  end
  i = i + 5 + tonumber(ARGV[i + 4])
end
for s = 1, #streams, chunk do
  local last = math.min(s + chunk - 1, #streams)
  local stored = redis.call('HMGET', versions, unpack(streams, s, last))
  for k = s, last do
    cur[streams[k]] = tonumber(stored[k - s + 1]) or 0
  end
end
local changed, order = {}, {}
local function flush()
  local fields = {}
  for _, stream in ipairs(order) do
    fields[#fields + 1] = stream
    fields[#fields + 1] = cur[stream]
    if #fields == 2 * chunk then
      redis.call('HSET', versions, unpack(fields))
      fields = {}
    end
  end
  if #fields > 0 then
    redis.call('HSET', versions, unpack(fields))
  end
end
local out = {}
local nextOffset = nil
i = 6
for e = 1, n do
  local offset, stream, id, ver, nargs = ARGV[i], ARGV[i+1], ARGV[i+2], tonumber(ARGV[i+3]), tonumber(ARGV[i+4])
  local first = i + 5
  i = first + nargs
  if stream == '' then
    out[e] = 's'
  else
    local have = cur[stream]
    if ver <= have then
      out[e] = 'd'
    elseif ver > have + 1 then
      flush()
      if nextOffset and not replay then
        redis.call('HSET', pos, 'next:' .. topic, nextOffset)
      end
      return {'gap', table.concat(out), e, have}
    else
      if nargs > 0 then
        local ok, err = pcall(apply, p, id, ver, ARGV, first, nargs)
        if not ok then
          flush()
          error(err)
        end
      end
      cur[stream] = ver
      if not changed[stream] then
        changed[stream] = true
        order[#order + 1] = stream
      end
      out[e] = 'a'
    end
  end
  nextOffset = tonumber(offset) + 1
end
flush()
if not replay then
  local fields = {}
  if nextOffset then
    fields = {'next:' .. topic, nextOffset}
  end
  if ARGV[3] == '1' then
    fields[#fields + 1] = 'caughtup:' .. topic
    fields[#fields + 1] = '1'
  end
  if #fields > 0 then
    redis.call('HSET', pos, unpack(fields))
  end
end
return {'ok', table.concat(out)}
`

// claimScript takes ownership of a partition: a new epoch token fences out
// any earlier owner. A missing position hash is a fresh start, unless the
// generation is served or the partition already holds data: then the
// position was lost.
//
//	KEYS[1] position hash, KEYS[2] versions hash
//	ARGV[1] token, ARGV[2] "1" if served, ARGV[3] topic
//
// It returns the next offset, or -1 when the position was lost. A topic new
// to an existing partition starts at 0.
const claimScript = `
if redis.call('EXISTS', KEYS[1]) == 0 and (ARGV[2] == '1' or redis.call('EXISTS', KEYS[2]) == 1) then
  return -1
end
redis.call('HSET', KEYS[1], 'epoch:' .. ARGV[3], ARGV[1])
local next = redis.call('HGET', KEYS[1], 'next:' .. ARGV[3])
if not next then
  redis.call('HSET', KEYS[1], 'next:' .. ARGV[3], 0)
  return 0
end
return tonumber(next)
`

// markScript marks a partition caught up, if the caller still owns it.
const markScript = `
if redis.call('HGET', KEYS[1], 'epoch:' .. ARGV[2]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'caughtup:' .. ARGV[2], '1')
return 1
`

// ErrFenced: another owner claimed the partition, or its position is gone
// (Redis lost its data). The caller must stop writing to it.
var ErrFenced = errors.New("partition is owned by another consumer or its position is gone")

// ErrPositionLost: the partition's position is gone although the generation
// is served or holds data. The generation must be rebuilt.
var ErrPositionLost = errors.New("read-model position lost")

// Outcome says what the step did with one event.
type Outcome byte

// The outcomes of an event in a batch.
const (
	Applied   Outcome = 'a'
	Duplicate Outcome = 'd' // its version was applied before: a no-op
	Skipped   Outcome = 's' // dead-lettered: only the position moved past it
)

// Item is one event of a batch, ready for the step.
type Item struct {
	Offset int64
	// Stream identifies the aggregate (StreamKey); "" skips the event.
	Stream  string
	ID      string
	Version int64
	Args    []string
}

// Batch is a run of events of one partition, in offset order.
type Batch struct {
	Generation int64
	Topic      string
	Partition  int32
	// Epoch is the owner's token; "" replays events beside the owner
	// without moving the position (versions still make it idempotent).
	Epoch    string
	CaughtUp bool // mark the partition caught up once applied
	Items    []Item
}

// Result is what the step did with a batch.
type Result struct {
	// Outcomes has one entry per event handled, in order. After a gap it
	// covers the events before the gap only.
	Outcomes []Outcome
	// Gap, when not nil, is the event the step stopped before: its version
	// is not the next one of its aggregate. The position is at that event.
	Gap *Gap
}

// Gap is an event whose predecessor was never applied.
type Gap struct {
	Index   int   // into Batch.Items
	Applied int64 // the version the projection holds
}

// Steps applies batches of one projection.
type Steps struct {
	rdb    redis.UniversalClient
	layout Layout
	step   *redis.Script
	claim  *redis.Script
	mark   *redis.Script
}

// NewSteps compiles p's step for layout.
func NewSteps(rdb redis.UniversalClient, layout Layout, p Projection) *Steps {
	return &Steps{
		rdb:    rdb,
		layout: layout,
		step:   redis.NewScript("local function apply(p, id, ver, a, i, n)\n" + p.Lua() + "\nend\n" + stepScript),
		claim:  redis.NewScript(claimScript),
		mark:   redis.NewScript(markScript),
	}
}

// Layout is the projection's key layout.
func (s *Steps) Layout() Layout { return s.layout }

// Claim takes the partition for the owner holding token, fencing out the
// previous one, and returns the offset to consume from. served says that
// readers use the generation, so a missing position is a loss.
func (s *Steps) Claim(ctx context.Context, gen int64, topic string, partition int32, token string, served bool) (int64, error) {
	flag := ""
	if served {
		flag = "1"
	}
	next, err := s.claim.Run(ctx, s.rdb, []string{s.layout.Position(gen, partition), s.layout.Versions(gen, partition)}, token, flag, topic).Int64()
	if err != nil {
		return 0, fmt.Errorf("claim %s partition %d: %w", s.layout.Name(), partition, err)
	}
	if next < 0 {
		return 0, fmt.Errorf("%s generation %d partition %d: %w", s.layout.Name(), gen, partition, ErrPositionLost)
	}
	return next, nil
}

// MarkCaughtUp records that the partition reached the end of its topic once.
func (s *Steps) MarkCaughtUp(ctx context.Context, gen int64, topic string, partition int32, token string) error {
	ok, err := s.mark.Run(ctx, s.rdb, []string{s.layout.Position(gen, partition)}, token, topic).Int()
	if err != nil {
		return fmt.Errorf("mark %s partition %d caught up: %w", s.layout.Name(), partition, err)
	}
	if ok == 0 {
		return ErrFenced
	}
	return nil
}

// Apply runs the step over b: one round trip, one atomic change of the read
// model and its position.
func (s *Steps) Apply(ctx context.Context, b Batch) (Result, error) {
	keys, args := s.stepArgs(b)
	reply, err := s.step.Run(ctx, s.rdb, keys, args...).Slice()
	return s.result(b, reply, err)
}

// ApplyAll runs the steps of several batches, typically of different
// partitions, in one round trip: a pipeline of script calls, each still its
// own atomic step that moves its own partition's position (and touches one
// Redis Cluster slot). It returns a result and an error per batch: one
// batch's failure leaves the others' outcomes as they are.
func (s *Steps) ApplyAll(ctx context.Context, batches []Batch) ([]Result, []error) {
	results := make([]Result, len(batches))
	errs := make([]error, len(batches))
	if len(batches) == 1 {
		results[0], errs[0] = s.Apply(ctx, batches[0])
		return results, errs
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batches))
	for i, b := range batches {
		keys, args := s.stepArgs(b)
		cmds[i] = s.step.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx) // every command carries its own error
	for i, b := range batches {
		reply, err := cmds[i].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis lost its scripts (a restart, SCRIPT FLUSH): this call
			// ran nothing; Apply loads the script and runs it.
			results[i], errs[i] = s.Apply(ctx, b)
			continue
		}
		results[i], errs[i] = s.result(b, reply, err)
	}
	return results, errs
}

// stepArgs are the keys and arguments of b's step (see stepScript).
func (s *Steps) stepArgs(b Batch) (keys []string, args []any) {
	argc := 5
	for _, it := range b.Items {
		argc += 5 + len(it.Args)
	}
	args = make([]any, 0, argc)
	caught := ""
	if b.CaughtUp {
		caught = "1"
	}
	args = append(args, s.layout.Prefix(b.Generation, b.Partition), b.Epoch, caught, len(b.Items), b.Topic)
	for _, it := range b.Items {
		args = append(args, it.Offset, it.Stream, it.ID, it.Version, len(it.Args))
		for _, a := range it.Args {
			args = append(args, a)
		}
	}
	return []string{s.layout.Position(b.Generation, b.Partition)}, args
}

// result reads the reply of b's step.
func (s *Steps) result(b Batch, reply []any, err error) (Result, error) {
	if err != nil {
		return Result{}, fmt.Errorf("apply %d events to %s partition %d: %w", len(b.Items), s.layout.Name(), b.Partition, err)
	}
	return parseStepReply(reply)
}

func parseStepReply(reply []any) (Result, error) {
	kind, _ := reply[0].(string)
	if kind == "fenced" {
		return Result{}, ErrFenced
	}
	if len(reply) < 2 {
		return Result{}, fmt.Errorf("unexpected step reply %v", reply)
	}
	letters, _ := reply[1].(string)
	res := Result{Outcomes: []Outcome(letters)}
	switch kind {
	case "ok":
		return res, nil
	case "gap":
		if len(reply) != 4 {
			return Result{}, fmt.Errorf("unexpected step reply %v", reply)
		}
		idx, _ := reply[2].(int64)
		applied, _ := reply[3].(int64)
		res.Gap = &Gap{Index: int(idx) - 1, Applied: applied}
		return res, nil
	}
	return Result{}, fmt.Errorf("unexpected step reply %v", reply)
}

// Position reads the next offset of a topic's partition and whether it
// caught up once; ok is false when there is no position.
func (s *Steps) Position(ctx context.Context, gen int64, topic string, partition int32) (next int64, caughtUp, ok bool, err error) {
	vals, err := s.rdb.HMGet(ctx, s.layout.Position(gen, partition), "next:"+topic, "caughtup:"+topic).Result()
	if err != nil {
		return 0, false, false, err
	}
	if vals[0] == nil {
		return 0, false, false, nil
	}
	next, err = strconv.ParseInt(vals[0].(string), 10, 64)
	return next, vals[1] != nil, true, err
}
