package redisserver

import (
	"context"
	"testing"
)

// The three masters split the slots between them: keys without a shared
// hash tag land on different nodes, keys with one on the same.
func TestStartCluster(t *testing.T) {
	c := StartCluster(t)
	rc := c.Client(t)
	ctx := context.Background()
	owners := map[string]bool{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		if err := rc.Set(ctx, k, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		m, err := rc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		owners[m.Options().Addr] = true
	}
	if len(owners) < 2 {
		t.Fatalf("8 untagged keys all on %v: the slots are not split", owners)
	}
	if err := rc.LMove(ctx, "{q}", "{q}:processing:x", "LEFT", "RIGHT").Err(); err != nil && err.Error() != "redis: nil" {
		t.Fatalf("LMOVE within one hash tag: %v", err)
	}
	if err := rc.Do(ctx, "LMOVE", "a", "b", "LEFT", "RIGHT").Err(); err == nil {
		t.Fatal("LMOVE across slots accepted: not a cluster")
	}
}
