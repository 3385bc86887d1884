package redisqueue

import "github.com/redis/go-redis/v9"

// The state changes of a task id are Lua scripts so that each one is a
// single atomic step in Redis: two executors (or an executor and a kill
// router, or a recoverer) can never both believe they own an id, and a
// done is published by the same step that makes the state terminal, which
// is what makes "exactly one done per id" hold across retries and crashes.
//
// The status hash of an id holds: state (a task.State, or "cancelled" for a
// kill that arrived while the task was queued), executor, updated, done,
// and, once the task has started, rule and env (noteRuleScript). While it
// is queued a dispatcher may note why it has not placed it (waiting, see
// moveScript): the first claim or end of the id removes that note.

// noteRuleScript: KEYS[1] status; ARGV executor, delivery token, rule, env
// (a JSON array of masked "NAME=value", "" = none). It writes the rule
// that allowed the task, and its env, only while the claim is this
// delivery's and the task runs: a note late behind the done, or behind a
// peer's lost report, changes nothing. Returns 1 written, 0 not.
var noteRuleScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'executor', 'token')
if h[1] == 'running' and h[2] == ARGV[1] and h[3] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'rule', ARGV[3])
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'env', ARGV[4])
  end
  return 1
end
return 0
`)

// claimScript: KEYS[1] status, KEYS[2] kills-ahead; ARGV executor, now,
// delivery token, id. Returns 1 claimed, 2 duplicate, 3 cancelled while
// queued.
//
// A claim belongs to one delivery (one take), named by its token, not to an
// executor: claiming again with the same token answers as the first claim
// did (the client retries a script whose reply was lost), while another
// copy of the id — even taken by the same executor — is a duplicate.
// A claim of a cancelled id (marked in its status, or a kill sent before
// the id was ever seen, in kills-ahead) still makes this delivery its
// owner, marked cancelled, so that its one finish (killed before it
// started) publishes.
var claimScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'executor', 'token', 'cancelled')
local st = h[1]
if st == 'running' and h[2] == ARGV[1] and h[3] == ARGV[3] then
  if h[4] == '1' then return 3 end
  return 1
end
if not st then
  local exp = redis.call('ZSCORE', KEYS[2], ARGV[4])
  if exp then
    redis.call('ZREM', KEYS[2], ARGV[4])
    if tonumber(exp) > tonumber(ARGV[2]) then st = 'cancelled' end
  end
end
if not st or st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'executor', ARGV[1], 'token', ARGV[3], 'updated', ARGV[2])
  redis.call('HDEL', KEYS[1], 'waiting')
  redis.call('PERSIST', KEYS[1])
  return 1
elseif st == 'cancelled' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'executor', ARGV[1], 'token', ARGV[3], 'updated', ARGV[2], 'cancelled', '1')
  redis.call('HDEL', KEYS[1], 'waiting')
  redis.call('PERSIST', KEYS[1])
  return 3
end
return 2
`)

// finishScript: KEYS[1] status, KEYS[2] logs list, KEYS[3] list holding the
// delivery; ARGV state, done, raw, retention ms, executor, claimed (1/0),
// now, must-remove (1/0), feed channel, delivery token.
// Returns 1 when it published the done; 2 when this same delivery had
// already published it (a retried batch); 0 when the id was not this
// caller's to end: it had ended otherwise, or — for a claimed delivery — a
// peer reported it lost (the status then names the peer), which fences a
// paused or cut-off executor out of a second done.
const finishSource = `
local h = redis.call('HMGET', KEYS[1], 'state', 'executor', 'token')
local st = h[1]
local ok
if ARGV[6] == '1' then
  if h[2] == ARGV[5] and h[3] == ARGV[10] and st ~= 'running' then
    redis.call('LREM', KEYS[3], 1, ARGV[3])
    return 2
  end
  ok = (st == 'running' and h[2] == ARGV[5] and h[3] == ARGV[10])
else
  ok = (not st or st == 'queued' or st == 'cancelled')
end
local removed = redis.call('LREM', KEYS[3], 1, ARGV[3])
if not ok or (ARGV[8] == '1' and removed == 0) then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'executor', ARGV[5], 'updated', ARGV[7], 'done', ARGV[2])
redis.call('HDEL', KEYS[1], 'cancelled', 'waiting')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[9], ARGV[2])
return 1
`

var finishScript = redis.NewScript(finishSource)

// routeKillScript: KEYS[1] status, KEYS[2] kills-ahead; ARGV now,
// retention ms, id, max kills ahead.
// Returns {"running", executor} | {"queued", ""} | {"ended", state}.
//
// A kill for an id with no status (not yet submitted, or still queued) is
// remembered in one sorted set, id → expiry, rather than a key per id: it
// holds at most max entries, the soonest to expire evicted first, so
// kills for ids that never come cost a bounded amount of memory however
// many are sent.
var routeKillScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'running' then
  return {'running', redis.call('HGET', KEYS[1], 'executor')}
end
if st == 'queued' or st == 'cancelled' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'updated', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'queued', ''}
end
if not st then
  local now = tonumber(ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
  local n = redis.call('ZCARD', KEYS[2])
  local max = tonumber(ARGV[4])
  if n > max then
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {'queued', ''}
end
return {'ended', st}
`)

// recoverScript: KEYS[1] status, KEYS[2] logs list, KEYS[3] dead
// executor's processing list, KEYS[4] task list; ARGV raw, dead executor,
// lost done, retention ms, this executor, now, feed channel.
var recoverScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
local ex = redis.call('HGET', KEYS[1], 'executor')
if redis.call('LREM', KEYS[3], 1, ARGV[1]) == 0 then
  return 'gone'
end
if st == 'running' and ex == ARGV[2] then
  redis.call('HSET', KEYS[1], 'state', 'lost', 'executor', ARGV[5], 'updated', ARGV[6], 'done', ARGV[3])
  redis.call('HDEL', KEYS[1], 'token', 'cancelled')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('PUBLISH', ARGV[7], ARGV[3])
  return 'lost'
end
if st and st ~= 'queued' and st ~= 'cancelled' then
  return 'dropped'
end
redis.call('LPUSH', KEYS[4], ARGV[1])
return 'requeued'
`)

// takeScript: KEYS[1] processing list, KEYS[2..] the lists this
// executor serves, in priority order; ARGV max bytes, prefix bytes, the
// position (1-based, among KEYS[2..]) of the untubed task list or 0, the
// tube key prefix. It looks at the head of the first non-empty list in
// Redis before anything is sent to the executor: a message within max
// bytes moves to the processing list and is returned ({"ok", raw, list
// position}); a longer one is removed and only its length, its first
// prefix bytes and its SHA-1 are returned ({"oversized", length, prefix,
// sha1, list position}), so the executor never holds more than max bytes
// of it. false when every list is empty.
//
// A message on the untubed list whose "tube" field names a tube (a valid
// name, as task.Validate has it) was pushed by a client that does not
// route: it moves to the end of that tube's list instead, up to 100 in one
// call, and the answer is {"again"}, so that the next call takes in
// priority order again. (The tube list's key is built here, not declared:
// fine on one Redis, one more reason Cluster is left to later work.)
var takeScript = redis.NewScript(`
local max = tonumber(ARGV[1])
local main = tonumber(ARGV[3]) + 1
local routed = 0
for i = 2, #KEYS do
  while true do
    local v = redis.call('LINDEX', KEYS[i], 0)
    if not v then break end
    local n = string.len(v)
    if n > max then
      redis.call('LPOP', KEYS[i])
      return {'oversized', n, string.sub(v, 1, tonumber(ARGV[2])), redis.sha1hex(v), i - 1}
    end
    local tube = nil
    if i == main then
      local ok, t = pcall(cjson.decode, v)
      if ok and type(t) == 'table' and type(t['tube']) == 'string' then
        tube = t['tube']
        if tube == '' or string.len(tube) > 128 or string.find(tube, '[^%w%._:%-]') then
          tube = nil
        end
      end
    end
    if not tube then
      if routed > 0 then return {'again'} end
      redis.call('LMOVE', KEYS[i], KEYS[1], 'LEFT', 'RIGHT')
      return {'ok', v, i - 1}
    end
    redis.call('LPOP', KEYS[i])
    redis.call('RPUSH', ARGV[4] .. tube, v)
    routed = routed + 1
    if routed >= 100 then return {'again'} end
  end
end
if routed > 0 then return {'again'} end
return false
`)

// takeControlScript: KEYS[1] the shared control list, KEYS[2] this
// executor's taken-control list; ARGV max bytes. As takeScript: a message
// within max bytes moves and is returned ({"ok", raw}); a longer one is
// removed unread and only its length returned ({"oversized", length}).
// false when the list is empty.
var takeControlScript = redis.NewScript(`
local v = redis.call('LINDEX', KEYS[1], 0)
if not v then return false end
local n = string.len(v)
if n > tonumber(ARGV[1]) then
  redis.call('LPOP', KEYS[1])
  return {'oversized', n}
end
redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
return {'ok', v}
`)

// findQueuedScript: KEYS[1] the task list; ARGV id, max bytes, start,
// count. It looks at the count messages from index start and returns the
// first within max bytes that contains the id as plain text ({"found",
// its index + 1, message}), or where to go on ({"more", start + count}),
// or {"end"} past the list's end. Nothing longer than max bytes leaves
// Redis.
var findQueuedScript = redis.NewScript(`
local start = tonumber(ARGV[3])
local stop = start + tonumber(ARGV[4]) - 1
local len = redis.call('LLEN', KEYS[1])
if start >= len then return {'end'} end
if stop >= len then stop = len - 1 end
local max = tonumber(ARGV[2])
for i = start, stop do
  local v = redis.call('LINDEX', KEYS[1], i)
  if v and string.len(v) <= max and string.find(v, ARGV[1], 1, true) then
    return {'found', i + 1, v}
  end
end
return {'more', stop + 1}
`)

// joinScript: KEYS[1] liveness key; ARGV holder, ttl ms.
// Returns "" when this process now holds the identity (it was free, or
// this process held it already), else the current holder.
var joinScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return '' end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return ''
end
return v or ''
`)

// heartbeatScript: KEYS[1] liveness key, KEYS[2] executors set; ARGV
// holder, ttl ms, executor.
// Returns 1 renewed; 0 the key had expired (re-registered now: the caller
// must first check which tasks it still owns); or the other holder.
var heartbeatScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if v then return 1 end
return 0
`)

// linesSource publishes a run of output lines, fenced per task: KEYS[1]
// the logs list, then for task k (k = 1..n) KEYS[2k] its status and
// KEYS[2k+1] its log stream; ARGV executor, retention ms, feed channel,
// then a task index (0: a line of no task) and a line per pair.
//
// A line is published only while its task runs here — its record says
// running and names this executor — or there is no record at all (Redis
// lost its data; nobody reported the task). A task that has ended has
// had its done, so any line for it now is a retried batch's copy (the
// first attempt applied, its reply lost) or a line from a previous life's
// spool after the restart reported the task lost: either would follow the
// done, and whoever reads the list takes the done as the end. Once a peer
// has reported the task lost (this executor was paused or cut off past its
// TTL), its lines are refused the same way, in the same step that would
// write them: however long the executor was stopped between its own lease
// check and this call, no line can follow the done. Returns a string of
// '1' (published) and '0' (refused), one per line.
const linesSource = `
local n = (#KEYS - 1) / 2
local ok = {}
for k = 1, n do
  local h = redis.call('HMGET', KEYS[2*k], 'state', 'executor')
  ok[k] = (not h[1]) or (h[1] == 'running' and h[2] == ARGV[1])
end
local lines, per, flags = {}, {}, {}
for i = 4, #ARGV, 2 do
  local k = tonumber(ARGV[i])
  if k == 0 or ok[k] then
    local l = ARGV[i+1]
    lines[#lines+1] = l
    if k > 0 then
      if per[k] then per[k][#per[k]+1] = l else per[k] = {l} end
    end
    flags[#flags+1] = '1'
  else
    flags[#flags+1] = '0'
  end
end
for i = 1, #lines, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(lines, i, math.min(i + 999, #lines)))
end
if #lines > 0 then
  redis.call('PUBLISH', ARGV[3], table.concat(lines, '\n'))
end
for k = 1, n do
  if per[k] then
    redis.call('XADD', KEYS[2*k+1], '*', '` + logsField + `', table.concat(per[k], '\n'))
    redis.call('PEXPIRE', KEYS[2*k+1], ARGV[2])
  end
end
return table.concat(flags)
`
