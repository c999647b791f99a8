package readmodels

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// stepScript applies the batches of one or more projections ("lanes") over
// one Kafka partition, each as its own step — check that the caller still
// owns the partition, skip versions already applied, stop before a version
// gap, apply the rest, move the position — in one script call. Each lane
// keeps its own position, epoch and versions: the call is the lanes' steps
// in turn, atomically together, and a lane that is fenced, gapped or
// failing ends its own step as it would alone while the others go on.
// The events' shared fields are sent once for all lanes.
//
//	KEYS[l]  lane l's position hash
//	ARGV[1]  the topic; positions are per topic, versions per partition
//	ARGV[2]  L, the number of lanes
//	ARGV[3]  N, the number of events
//	then per lane:
//	         its apply function's index; its partition's key prefix; the
//	         owner's epoch token ("" replays dead-lettered events: no owner
//	         check, the position stays); "1" to mark the partition caught
//	         up after the batch; the first and last of the events it handles
//	then per event: offset, stream, aggregate id, version
//	then per lane, per event it handles: n (-1: skip it, dead-lettered for
//	         this lane), n arguments
//
// It returns a reply per lane: {"ok", outcomes}, {"gap", outcomes, index,
// applied version}, {"fenced"} or {"failed", outcomes, error}; outcomes has
// a letter per event handled: a(pplied), d(uplicate), s(kipped).
//
// A lane's versions are read in one HMGET and the new ones written in one
// HSET, not a call of each per event: Redis spends most of a step on the
// calls. They are written whenever the lane's step ends — done, at a gap,
// or when the projection's Lua fails — so an event whose writes are in the
// read model always has its version recorded and is never applied twice.
// A failing lane's position stays where it was.
const stepScript = `
local topic, L, N = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local events = 4 + 6 * L -- the first event's offset
local chunk = 500 -- fields a call, well below Lua's limit on unpack
local function lane(pos, apply, p, epoch, caught, from, to, i)
  local start, cur, streams, ns = i, {}, {}, 0
  for e = from, to do
    local nargs = tonumber(ARGV[i])
    if nargs >= 0 then
      local stream = ARGV[events + 4 * (e - 1) + 1]
      if cur[stream] == nil then
        cur[stream] = 0
        ns = ns + 1
        streams[ns] = stream
      end
    else
      nargs = 0
    end
    i = i + 1 + nargs
  end
  local after = i
  local replay = epoch == ''
  if not replay and redis.call('HGET', pos, 'epoch:' .. topic) ~= epoch then
    return {'fenced'}, after
  end
  local versions = p .. 'ver'
  for s = 1, ns, chunk do
    local last = math.min(s + chunk - 1, ns)
    local stored = redis.call('HMGET', versions, unpack(streams, s, last))
    for k = s, last do
      cur[streams[k]] = tonumber(stored[k - s + 1]) or 0
    end
  end
  local changed, order, nc = {}, {}, 0
  local function flush()
    local fields, nf = {}, 0
    for k = 1, nc do
      local stream = order[k]
      fields[nf + 1] = stream
      fields[nf + 2] = cur[stream]
      nf = nf + 2
      if nf == 2 * chunk then
        redis.call('HSET', versions, unpack(fields))
        fields, nf = {}, 0
      end
    end
    if nf > 0 then
      redis.call('HSET', versions, unpack(fields, 1, nf))
    end
  end
  -- The events in turn, in one protected call: an error in the
  -- projection's Lua ends the loop with what it applied before.
  local out, no = {}, 0
  local nextOffset, gap = nil, nil
  local e = from
  local ok, err = pcall(function()
    i = start
    while e <= to do
      local j = events + 4 * (e - 1)
      local nargs = tonumber(ARGV[i])
      local first = i + 1
      no = no + 1
      if nargs < 0 then
        out[no] = 's'
        i = first
      else
        i = first + nargs
        local stream, ver = ARGV[j + 1], tonumber(ARGV[j + 3])
        local have = cur[stream]
        if ver <= have then
          out[no] = 'd'
        elseif ver > have + 1 then
          no = no - 1
          gap = have
          return
        else
          if nargs > 0 then
            apply(p, ARGV[j + 2], ver, ARGV, first, nargs)
          end
          cur[stream] = ver
          if not changed[stream] then
            changed[stream] = true
            nc = nc + 1
            order[nc] = stream
          end
          out[no] = 'a'
        end
      end
      nextOffset = tonumber(ARGV[j]) + 1
      e = e + 1
    end
  end)
  flush()
  if not ok then
    return {'failed', table.concat(out, '', 1, no - 1), tostring(err)}, after
  end
  if gap then
    if nextOffset and not replay then
      redis.call('HSET', pos, 'next:' .. topic, nextOffset)
    end
    return {'gap', table.concat(out, '', 1, no), e - from + 1, gap}, after
  end
  if not replay then
    local fields = {}
    if nextOffset then
      fields = {'next:' .. topic, nextOffset}
    end
    if caught then
      fields[#fields + 1] = 'caughtup:' .. topic
      fields[#fields + 1] = '1'
    end
    if #fields > 0 then
      redis.call('HSET', pos, unpack(fields))
    end
  end
  return {'ok', table.concat(out, '', 1, no)}, after
end
local replies = {}
local section = events + 4 * N
for l = 1, L do
  local h = 4 + 6 * (l - 1)
  replies[l], section = lane(KEYS[l], applies[tonumber(ARGV[h])], ARGV[h + 1], ARGV[h + 2], ARGV[h + 3] == '1',
    tonumber(ARGV[h + 4]), tonumber(ARGV[h + 5]), section)
end
return replies
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
	lua    string        // the projection's apply body
	step   *redis.Script // the step with the projection as its one lane
	claim  *redis.Script
	mark   *redis.Script
}

// NewSteps compiles p's step for layout.
func NewSteps(rdb redis.UniversalClient, layout Layout, p Projection) *Steps {
	return &Steps{
		rdb:    rdb,
		layout: layout,
		lua:    p.Lua(),
		step:   redis.NewScript(stepSource([]string{p.Lua()})),
		claim:  redis.NewScript(claimScript),
		mark:   redis.NewScript(markScript),
	}
}

// stepSource is the step script over lanes whose projections have the given
// Lua bodies, in order: applies[k] is the k-th projection's apply.
func stepSource(luas []string) string {
	var b strings.Builder
	// Locals, not globals, for what every event uses: a global is a table
	// lookup each time.
	b.WriteString("local redis, ARGV, KEYS, tonumber, tostring, pcall, unpack, table, math = redis, ARGV, KEYS, tonumber, tostring, pcall, unpack, table, math\n")
	b.WriteString("local applies = {}\n")
	for k, lua := range luas {
		fmt.Fprintf(&b, "applies[%d] = function(p, id, ver, a, i, n)\n%s\nend\n", k+1, lua)
	}
	b.WriteString(stepScript)
	return b.String()
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
	results, errs := runCalls(ctx, []*stepCall{s.call(b)})
	return results[0][0], errs[0][0]
}

// ApplyAll runs the steps of several batches, typically of different
// partitions, in one round trip: a pipeline of script calls, each still its
// own atomic step that moves its own partition's position (and touches one
// Redis Cluster slot). It returns a result and an error per batch: one
// batch's failure leaves the others' outcomes as they are.
func (s *Steps) ApplyAll(ctx context.Context, batches []Batch) ([]Result, []error) {
	calls := make([]*stepCall, len(batches))
	for i, b := range batches {
		calls[i] = s.call(b)
	}
	results, errs := runCalls(ctx, calls)
	flatResults := make([]Result, len(batches))
	flatErrs := make([]error, len(batches))
	for i := range batches {
		flatResults[i], flatErrs[i] = results[i][0], errs[i][0]
	}
	return flatResults, flatErrs
}

// call is b's step as a call of its own.
func (s *Steps) call(b Batch) *stepCall {
	return newStepCall(s.step, []Lane{{Steps: s, Batch: b}}, []int{0}, []span{{0, len(b.Items)}}, b.Items)
}

// parseStepReply reads one lane's reply (see stepScript).
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
	case "failed":
		if len(reply) != 3 {
			return Result{}, fmt.Errorf("unexpected step reply %v", reply)
		}
		msg, _ := reply[2].(string)
		return Result{}, errors.New(msg)
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
