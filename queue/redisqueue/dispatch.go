package redisqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// The dispatcher's side of Redis. A dispatched executor (Options.Dispatched)
// takes only from its own list Q:assigned:<executor>; the dispatcher
// leader fills those lists from the shared list Q and the tube lists, and
// gives a lost executor's list back. Every move it makes carries its
// fencing token (its etcd election key's create revision, larger for
// every new leader) and goes through one script that first compares the
// token with the highest one seen, kept in Q:dispatch:epoch: an older
// token is refused and nothing moves. A leader that was paused past its
// lease, and wakes still believing it leads, therefore cannot move a task
// once its successor has made a move (or claimed the epoch, which a new
// leader does first).

// AssignedKey is the list of tasks assigned to a dispatched executor.
func (q *Queue) AssignedKey(executor string) string { return q.key("assigned", executor) }

// EpochKey holds the highest dispatcher token seen.
func (q *Queue) EpochKey() string { return q.key("dispatch", "epoch") }

// RefusedKey counts the writes the epoch refused: each is a deposed
// leader that acted late, which an operator (or a test) can see only here,
// since that leader may be gone before it logs why.
func (q *Queue) RefusedKey() string { return q.key("dispatch", "refused") }

// deliveryTube is the tube a dispatched executor's task returns to when
// it is put back: the one its message names, as requeueKey has it.
func (q *Queue) deliveryTube(raw []byte) string {
	var t struct {
		Tube string `json:"tube"`
	}
	if json.Unmarshal(raw, &t) == nil && validTube(t.Tube) {
		return t.Tube
	}
	return ""
}

// fenceLua checks ARGV[1], the caller's token, against the epoch in
// KEYS[1]: an older one is counted in the last key (RefusedKey) and ends
// the script with 'fenced'; a newer one is stored. Tokens are decimal integers below 2^53 (etcd revisions), which
// Lua's numbers hold exactly.
const fenceLua = `
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if not token or epoch > token then
  redis.call('INCR', KEYS[#KEYS])
  return 'fenced'
end
if epoch < token then redis.call('SET', KEYS[1], ARGV[1]) end
`

// taskInfoLua defines taskInfo(v, max): the placement key of the task
// message v and its id (nil when it has none that could name a status).
// The placement key is all a dispatcher needs to place the task:
// "<tube>\n" then "<key>=<value>\n" for each constraint, sorted by key.
// The tube is "" when the message names none, is not JSON, is longer than
// max bytes (never decoded) or names an invalid tube (as takeScript);
// constraints that break the task format's rules count as none, since
// the executor refuses such a task whoever gets it.
const taskInfoLua = `
local function taskInfo(v, max)
  if string.len(v) > max then return '\n', nil end
  local ok, t = pcall(cjson.decode, v)
  if not ok or type(t) ~= 'table' then return '\n', nil end
  local tube = t['tube']
  if type(tube) ~= 'string' or string.len(tube) > 128 or string.find(tube, '[^%w%._:%-]') then tube = '' end
  local key = tube .. '\n'
  local c = t['constraints']
  if type(c) == 'table' then
    local ks, n, bad = {}, 0, false
    for k, val in pairs(c) do
      n = n + 1
      if n > 64 or type(k) ~= 'string' or type(val) ~= 'string' or string.len(k) > 63 or string.len(val) > 256
        or not string.find(k, '^[%w%._/%-]+$') or string.find(val, '%c') then
        bad = true
        break
      end
      ks[n] = k
    end
    if not bad then
      table.sort(ks)
      for _, k in ipairs(ks) do key = key .. k .. '=' .. c[k] .. '\n' end
    end
  end
  local id = t['id']
  if type(id) ~= 'string' or id == '' or string.len(id) > 256 or string.find(id, '%c') then id = nil end
  return key, id
end
`

// noteLua defines note(id, text, prefix, retention): text becomes the
// "waiting" field of id's status hash, or the field goes when text is
// empty, only while no executor has claimed the id, so that a note never
// lands on a task that runs. A hash the note creates expires after the
// retention, so a task removed by hand leaves nothing behind. The status
// key is built here from the id, as takeScript builds a tube's key.
// Returns 1 when it wrote.
const noteLua = `
local function note(id, text, prefix, retention)
  if not id then return 0 end
  local sk = prefix .. id
  local h = redis.call('HMGET', sk, 'state', 'waiting')
  local st = h[1]
  if st and st ~= 'queued' and st ~= 'cancelled' then return 0 end
  if text == '' then
    if h[2] then redis.call('HDEL', sk, 'waiting') return 1 end
    return 0
  end
  if h[2] == text then return 0 end
  local fresh = redis.call('EXISTS', sk) == 0
  redis.call('HSET', sk, 'waiting', text)
  if fresh then redis.call('PEXPIRE', sk, retention) end
  return 1
end
`

// peekScript: KEYS[1] a list; ARGV max bytes, n. The placement keys of
// its first n tasks, in order. Nothing else of a message leaves Redis.
var peekScript = redis.NewScript(taskInfoLua + `
local out = {}
for i, v in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  out[i] = taskInfo(v, tonumber(ARGV[1]))
end
return out
`)

// peekCountScript: KEYS[1] a list, then executors' assigned lists; ARGV
// max bytes, n. As peekScript, and the lengths of the assigned lists: what
// a dispatcher's pass starts from, in one round trip.
var peekCountScript = redis.NewScript(taskInfoLua + `
local heads = {}
for i, v in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  heads[i] = taskInfo(v, tonumber(ARGV[1]))
end
local lens = {}
for j = 2, #KEYS do lens[j - 1] = redis.call('LLEN', KEYS[j]) end
return {heads, lens}
`)

// moveLua defines moveOne(src, dst, i, expect, note, max, prefix,
// retention, mark): unless the placement key of the task at index i of
// src is no longer expect ('*' = whatever it is; 'changed': the list
// changed since the caller looked), that task moves to the end of dst,
// with its note (see noteLua; empty when it was assigned). A task behind
// the head is taken out by overwriting it with mark, a value no task
// message has, and removing that, so the tasks around it keep their
// order. Returns 'moved', 'empty' (nothing at i) or 'changed'.
const moveLua = `
local function moveOne(src, dst, i, expect, text, max, prefix, retention, mark)
  local v = redis.call('LINDEX', src, i)
  if not v then return 'empty' end
  local key, id = taskInfo(v, max)
  if expect ~= '*' and key ~= expect then return 'changed' end
  note(id, text, prefix, retention)
  if i == 0 then
    redis.call('LMOVE', src, dst, 'LEFT', 'RIGHT')
  else
    redis.call('LSET', src, i, mark)
    redis.call('LREM', src, 1, mark)
    redis.call('RPUSH', dst, v)
  end
  return 'moved'
end
`

// moveScript: KEYS[1] epoch, KEYS[2] source list, KEYS[3] destination
// list, KEYS[4] refused; ARGV token, max bytes, index, expected placement
// key, note, status key prefix, retention ms, the mark (see moveLua).
// Fenced (see fenceLua); then moveOne.
var moveScript = redis.NewScript(taskInfoLua + noteLua + fenceLua + moveLua + `
return moveOne(KEYS[2], KEYS[3], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[2]), ARGV[6], ARGV[7], ARGV[8])
`)

// moveManyScript: KEYS[1] epoch, KEYS[2] source list, then the
// destination lists, last refused; ARGV token, max bytes, status key
// prefix, retention ms, the mark, then for each move its index, its
// destination's place in KEYS, expected placement key and note. Fenced
// once; then moveOne for each move in turn. Returns their results.
var moveManyScript = redis.NewScript(taskInfoLua + noteLua + fenceLua + moveLua + `
local out = {}
for j = 6, #ARGV, 4 do
  out[#out + 1] = moveOne(KEYS[2], KEYS[tonumber(ARGV[j + 1])], tonumber(ARGV[j]), ARGV[j + 2], ARGV[j + 3],
    tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5])
end
return out
`)

// noteScript: KEYS[1] epoch, KEYS[2] a list, KEYS[3] refused; ARGV token, max bytes,
// status key prefix, retention ms, then index, expected placement key and
// note for each task to note. Fenced; each task still at its index with
// that key gets its note (see noteLua). Returns how many were written.
var noteScript = redis.NewScript(taskInfoLua + noteLua + fenceLua + `
local n = 0
for j = 5, #ARGV, 3 do
  local v = redis.call('LINDEX', KEYS[2], tonumber(ARGV[j]))
  if v then
    local key, id = taskInfo(v, tonumber(ARGV[2]))
    if key == ARGV[j + 1] then n = n + note(id, ARGV[j + 2], ARGV[3], ARGV[4]) end
  end
end
return n
`)

// returnScript: KEYS[1] epoch, KEYS[2] an assigned list, KEYS[3] the list
// it goes back to, KEYS[4] refused; ARGV token. Fenced; then the whole assigned list goes
// to the head of KEYS[3], in its order. Returns how many moved, or
// 'fenced'.
var returnScript = redis.NewScript(fenceLua + `
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
return n
`)

// claimEpochScript: KEYS[1] epoch, KEYS[2] refused; ARGV token. Fenced; 'ok' once the
// epoch is the token.
var claimEpochScript = redis.NewScript(fenceLua + `
return 'ok'
`)

// ErrFenced and the move results are queue's.
var ErrFenced = queue.ErrFenced

const (
	Moved   = queue.Moved
	Empty   = queue.Empty
	Changed = queue.Changed
)

// ClaimEpoch makes token the epoch, so that every older leader's move is
// refused from now on; ErrFenced if a newer token was seen.
func (q *Queue) ClaimEpoch(ctx context.Context, token int64) error {
	res, err := claimEpochScript.Run(ctx, q.rdb, []string{q.EpochKey(), q.RefusedKey()}, token).Text()
	if err != nil {
		return fmt.Errorf("queue: claim the dispatch epoch: %w", err)
	}
	if res == "fenced" {
		return ErrFenced
	}
	return nil
}

// Head is what a dispatcher knows of a task in a list: what its
// placement depends on.
type Head = queue.Head

// Peek describes the first n tasks of list, in order.
func (q *Queue) Peek(ctx context.Context, list string, n int) ([]Head, error) {
	keys, err := peekScript.Run(ctx, q.rdb, []string{list}, q.opt.MaxTaskBytes, n).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("queue: look at the head of %q: %w", list, err)
	}
	out := make([]Head, len(keys))
	for i, k := range keys {
		out[i] = parseHead(k)
	}
	return out, nil
}

// PeekCounting is Peek, and how many tasks wait in each executor's
// assigned list (AssignedLens), in one round trip.
func (q *Queue) PeekCounting(ctx context.Context, list string, n int, executors []string) ([]Head, map[string]int, error) {
	keys := []string{list}
	for _, ex := range executors {
		keys = append(keys, q.AssignedKey(ex))
	}
	res, err := peekCountScript.Run(ctx, q.rdb, keys, q.opt.MaxTaskBytes, n).Slice()
	if err != nil || len(res) != 2 {
		return nil, nil, fmt.Errorf("queue: look at the head of %q and count the assigned tasks: %v (%d parts)", list, err, len(res))
	}
	raw, _ := res[0].([]any)
	heads := make([]Head, len(raw))
	for i, r := range raw {
		k, _ := r.(string)
		heads[i] = parseHead(k)
	}
	lens, _ := res[1].([]any)
	counts := make(map[string]int, len(executors))
	for i, ex := range executors {
		if i < len(lens) {
			n, _ := lens[i].(int64)
			counts[ex] = int(n)
		}
	}
	return heads, counts, nil
}

// parseHead reads a placement key (see taskInfoLua). Constraints that
// the task format refuses (which the script's simpler test can let
// through) count as none: the executor that gets the task rejects it.
func parseHead(key string) Head {
	tube, rest, _ := strings.Cut(key, "\n")
	h := Head{Tube: tube, Key: key}
	for line := range strings.SplitSeq(rest, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if h.Constraints == nil {
				h.Constraints = map[string]string{}
			}
			h.Constraints[k] = v
		}
	}
	if task.CheckConstraints(h.Constraints) != nil {
		h.Constraints = nil
	}
	return h
}

// moveMark stands in for a task taken from the middle of a list; no
// task message can be it (it is not JSON).
const moveMark = "\x00task-job: being moved\x00"

// Move moves the task at index of src to the end of dst, fenced by
// token, if its placement key is still expect ("*": whatever it is);
// note becomes the task's waiting reason in its status ("" clears it: it
// was assigned). It returns Moved, Empty or Changed, or ErrFenced.
func (q *Queue) Move(ctx context.Context, token int64, src string, index int, dst, expect, note string) (string, error) {
	res, err := moveScript.Run(ctx, q.rdb, []string{q.EpochKey(), src, dst, q.RefusedKey()}, token, q.opt.MaxTaskBytes, index, expect,
		note, q.StatusKey(""), q.opt.Retention.Milliseconds(), moveMark).Text()
	if err != nil {
		return "", fmt.Errorf("queue: move a task from %q to %q: %w", src, dst, err)
	}
	if res == "fenced" {
		return "", ErrFenced
	}
	return res, nil
}

// MoveOp is queue's.
type MoveOp = queue.MoveOp

// MoveMany makes each of ops in turn, as Move would, from src, fenced by
// token, in one round trip: each one's result (Moved, Empty or Changed),
// in order, or ErrFenced and nothing moved.
func (q *Queue) MoveMany(ctx context.Context, token int64, src string, ops []MoveOp) ([]string, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	keys := []string{q.EpochKey(), src}
	place := map[string]int{} // destination → its place in KEYS (Lua's, from 1)
	args := []any{token, q.opt.MaxTaskBytes, q.StatusKey(""), q.opt.Retention.Milliseconds(), moveMark}
	for _, op := range ops {
		k, ok := place[op.Dst]
		if !ok {
			keys = append(keys, op.Dst)
			k = len(keys)
			place[op.Dst] = k
		}
		args = append(args, op.Index, k, op.Expect, op.Note)
	}
	keys = append(keys, q.RefusedKey())
	res, err := moveManyScript.Run(ctx, q.rdb, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: move %d tasks from %q: %w", len(ops), src, err)
	}
	if res == "fenced" {
		return nil, ErrFenced
	}
	raw, _ := res.([]any)
	out := make([]string, len(raw))
	for i, r := range raw {
		out[i], _ = r.(string)
	}
	if len(out) != len(ops) {
		return nil, fmt.Errorf("queue: move %d tasks from %q: %d results", len(ops), src, len(out))
	}
	return out, nil
}

// Note is queue's.
type Note = queue.Note

// NoteWaiting writes each note's text as its task's waiting reason,
// fenced by token; how many it changed.
func (q *Queue) NoteWaiting(ctx context.Context, token int64, list string, notes []Note) (int, error) {
	if len(notes) == 0 {
		return 0, nil
	}
	args := []any{token, q.opt.MaxTaskBytes, q.StatusKey(""), q.opt.Retention.Milliseconds()}
	for _, n := range notes {
		args = append(args, n.Index, n.Key, n.Text)
	}
	res, err := noteScript.Run(ctx, q.rdb, []string{q.EpochKey(), list, q.RefusedKey()}, args...).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: note why tasks in %q wait: %w", list, err)
	}
	if res == "fenced" {
		return 0, ErrFenced
	}
	n, _ := res.(int64)
	return int(n), nil
}

// ReturnAssigned moves every task assigned to executor back to the head
// of the untubed list, in order, fenced by token; how many it moved.
func (q *Queue) ReturnAssigned(ctx context.Context, token int64, executor string) (int, error) {
	res, err := returnScript.Run(ctx, q.rdb, []string{q.EpochKey(), q.AssignedKey(executor), q.opt.Names.Tasks, q.RefusedKey()}, token).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: give back the tasks assigned to %s: %w", executor, err)
	}
	if res == "fenced" {
		return 0, ErrFenced
	}
	n, _ := res.(int64)
	return int(n), nil
}

// WaitForTask blocks until list holds a task, for up to BlockTimeout;
// false when none came. It changes nothing: BLMOVE from the list's tail
// to its own tail is the one blocking command that wakes on a push and
// leaves every task where it was.
func (q *Queue) WaitForTask(ctx context.Context, list string) (bool, error) {
	err := q.rdb.BLMove(ctx, list, list, "RIGHT", "RIGHT", BlockTimeout).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: wait for a task in %q: %w", list, err)
	}
	return true, nil
}

// AssignedLens returns how many tasks wait in each executor's assigned
// list.
func (q *Queue) AssignedLens(ctx context.Context, executors []string) (map[string]int, error) {
	cmds := make([]*redis.IntCmd, len(executors))
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ex := range executors {
			cmds[i] = p.LLen(ctx, q.AssignedKey(ex))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: count assigned tasks: %w", err)
	}
	out := make(map[string]int, len(executors))
	for i, ex := range executors {
		out[ex] = int(cmds[i].Val())
	}
	return out, nil
}

// AssignedExecutors lists the executors that have an assigned list.
func (q *Queue) AssignedExecutors(ctx context.Context) ([]string, error) {
	prefix := q.key("assigned") + ":"
	var out []string
	iter, err := q.scan(ctx, escapeGlob(prefix)+"*")
	if err != nil {
		return nil, fmt.Errorf("queue: list assigned lists: %w", err)
	}
	for iter.Next(ctx) {
		out = append(out, strings.TrimPrefix(iter.Val(), prefix))
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("queue: list assigned lists: %w", err)
	}
	return out, nil
}
