package signature

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// DefaultMemoryEntries bounds a MemoryGuard made by NewVerifier: 262,144
// signatures remembered for 2×5m+1m each allow about 400 signed tasks a
// second, sustained, in roughly 250 bytes an entry (some 65 MB when full).
const DefaultMemoryEntries = 1 << 18

// MemoryGuard is a ReplayGuard in this process's memory: right for a
// single executor, useless across several (each has its own memory) and
// forgotten on restart, where the executor's id check still catches a
// replay within status_retention. Entries expire after their ttl; when
// the bound is reached with none expired, FirstUse fails rather than
// forget a live entry, so the guard never silently lets a replay through.
type MemoryGuard struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	seen  map[string]time.Time
	queue expiryHeap
}

// NewMemoryGuard returns a MemoryGuard holding at most max entries.
func NewMemoryGuard(max int) *MemoryGuard {
	if max <= 0 {
		max = DefaultMemoryEntries
	}
	return &MemoryGuard{max: max, now: time.Now, seen: make(map[string]time.Time)}
}

// FirstUse implements ReplayGuard.
func (g *MemoryGuard) FirstUse(_ context.Context, keyID, mac string, ttl time.Duration) (bool, error) {
	now := g.now()
	// A NUL cannot occur in a key id, so the pair maps to one string.
	k := keyID + "\x00" + mac
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now)
	if exp, ok := g.seen[k]; ok && now.Before(exp) {
		return false, nil
	}
	if len(g.seen) >= g.max {
		return false, fmt.Errorf("signature: replay memory full (%d signatures within their ttl); raise its size or use a Redis guard (signature/redisguard)", g.max)
	}
	exp := now.Add(ttl)
	g.seen[k] = exp
	heap.Push(&g.queue, expiry{key: k, at: exp})
	return true, nil
}

// Len returns the number of remembered signatures, expired ones included
// until the next FirstUse drops them.
func (g *MemoryGuard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

func (g *MemoryGuard) expire(now time.Time) {
	for len(g.queue) > 0 && !now.Before(g.queue[0].at) {
		e := heap.Pop(&g.queue).(expiry)
		if exp, ok := g.seen[e.key]; ok && exp.Equal(e.at) {
			delete(g.seen, e.key)
		}
	}
}

type expiry struct {
	key string
	at  time.Time
}

// expiryHeap orders entries by expiry, soonest first, so that entries with
// different ttls still expire in order.
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
