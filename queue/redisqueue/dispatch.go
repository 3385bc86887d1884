package redisqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
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
// KEYS[1]: an older one ends the script with 'fenced'; a newer one is
// stored. Tokens are decimal integers below 2^53 (etcd revisions), which
// Lua's numbers hold exactly.
const fenceLua = `
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if not token or epoch > token then return 'fenced' end
if epoch < token then redis.call('SET', KEYS[1], ARGV[1]) end
`

// headTubeLua defines headTube(L, max): the tube the head of list L
// names, the empty string when it names none, is not JSON, is longer
// than max bytes (never decoded whole) or names an invalid tube, and nil
// when L is empty. As takeScript.
const headTubeLua = `
local function headTube(L, max)
  local v = redis.call('LINDEX', L, 0)
  if not v then return nil end
  if string.len(v) > max then return '' end
  local ok, t = pcall(cjson.decode, v)
  if not ok or type(t) ~= 'table' or type(t['tube']) ~= 'string' then return '' end
  local tube = t['tube']
  if tube == '' or string.len(tube) > 128 or string.find(tube, '[^%w%._:%-]') then return '' end
  return tube
end
`

// peekTubeScript: KEYS[1] a list; ARGV max bytes. The head's tube, or
// false when the list is empty. Nothing of the message leaves Redis.
var peekTubeScript = redis.NewScript(headTubeLua + `
local t = headTube(KEYS[1], tonumber(ARGV[1]))
if not t then return false end
return t
`)

// moveScript: KEYS[1] epoch, KEYS[2] source list, KEYS[3] destination
// list; ARGV token, max bytes, expected tube ('*' = whatever it is).
// Fenced (see fenceLua); then, unless the head's tube is no longer the
// expected one ('changed': someone put a task back at the head since the
// caller looked), the head moves to the destination's end. Returns
// 'moved', 'empty', 'changed' or 'fenced'.
var moveScript = redis.NewScript(headTubeLua + fenceLua + `
if ARGV[3] ~= '*' then
  local t = headTube(KEYS[2], tonumber(ARGV[2]))
  if not t then return 'empty' end
  if t ~= ARGV[3] then return 'changed' end
end
if not redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') then return 'empty' end
return 'moved'
`)

// returnScript: KEYS[1] epoch, KEYS[2] an assigned list, KEYS[3] the list
// it goes back to; ARGV token. Fenced; then the whole assigned list goes
// to the head of KEYS[3], in its order. Returns how many moved, or
// 'fenced'.
var returnScript = redis.NewScript(fenceLua + `
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
return n
`)

// claimEpochScript: KEYS[1] epoch; ARGV token. Fenced; 'ok' once the
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
	res, err := claimEpochScript.Run(ctx, q.rdb, []string{q.EpochKey()}, token).Text()
	if err != nil {
		return fmt.Errorf("queue: claim the dispatch epoch: %w", err)
	}
	if res == "fenced" {
		return ErrFenced
	}
	return nil
}

// PeekTube returns the tube named by the head of list ("" for none), and
// false when the list is empty.
func (q *Queue) PeekTube(ctx context.Context, list string) (string, bool, error) {
	res, err := peekTubeScript.Run(ctx, q.rdb, []string{list}, q.opt.MaxTaskBytes).Text()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("queue: look at the head of %q: %w", list, err)
	}
	return res, true, nil
}

// MoveHead moves the head of src to the end of dst, fenced by token,
// if its tube is still expect ("*": whatever it is). It returns Moved,
// Empty or Changed, or ErrFenced.
func (q *Queue) MoveHead(ctx context.Context, token int64, src, dst, expect string) (string, error) {
	res, err := moveScript.Run(ctx, q.rdb, []string{q.EpochKey(), src, dst}, token, q.opt.MaxTaskBytes, expect).Text()
	if err != nil {
		return "", fmt.Errorf("queue: move a task from %q to %q: %w", src, dst, err)
	}
	if res == "fenced" {
		return "", ErrFenced
	}
	return res, nil
}

// ReturnAssigned moves every task assigned to executor back to the head
// of the untubed list, in order, fenced by token; how many it moved.
func (q *Queue) ReturnAssigned(ctx context.Context, token int64, executor string) (int, error) {
	res, err := returnScript.Run(ctx, q.rdb, []string{q.EpochKey(), q.AssignedKey(executor), q.opt.Names.Tasks}, token).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: give back the tasks assigned to %s: %w", executor, err)
	}
	if res == "fenced" {
		return 0, ErrFenced
	}
	n, _ := res.(int64)
	return int(n), nil
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
	iter := q.rdb.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, strings.TrimPrefix(iter.Val(), prefix))
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("queue: list assigned lists: %w", err)
	}
	return out, nil
}
