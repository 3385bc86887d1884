package redisguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Guard is a signature.ReplayGuard in Redis: executors sharing one Redis share
// its memory, so a replay seen by any of them is refused by all. It is the
// one to use in production.
//
// Each signature is one key, <prefix>:sig:<key id>:<mac>, set only if
// absent and expiring after the ttl (PX), like SET NX PX. The value is a
// random token for this call rather than a constant: the client re-sends a
// command whose reply was lost, and finding its own token tells the retry
// that the first attempt succeeded, so a lost reply does not turn a first
// use into a false replay.
type Guard struct {
	rdb    redis.UniversalClient
	prefix string
}

// New returns a Guard storing its keys under prefix
// (the deployment's queue_name, for instance).
func New(rdb redis.UniversalClient, prefix string) *Guard {
	return &Guard{rdb: rdb, prefix: prefix}
}

// Key returns the Redis key that remembers (keyID, mac).
func (g *Guard) Key(keyID, mac string) string {
	return g.prefix + ":sig:" + keyID + ":" + mac
}

// firstUseScript is SET key token NX PX ttl, answering 1 when this token
// holds the key (set now, or by an earlier attempt of the same call) and 0
// when another call set it. One key, so it also runs on Redis Cluster.
var firstUseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then return 1 end
return 0
`)

// FirstUse implements ReplayGuard.
func (g *Guard) FirstUse(ctx context.Context, keyID, mac string, ttl time.Duration) (bool, error) {
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // crypto/rand.Read never fails
	ms := max(ttl.Milliseconds(), 1)
	n, err := firstUseScript.Run(ctx, g.rdb, []string{g.Key(keyID, mac)}, hex.EncodeToString(tok[:]), ms).Int()
	if err != nil {
		return false, fmt.Errorf("signature: replay check in Redis: %w", err)
	}
	return n == 1, nil
}
