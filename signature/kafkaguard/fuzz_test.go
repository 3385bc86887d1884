package kafkaguard

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzFold feeds arbitrary records to the guard's fold: anyone who may
// produce to the topic can write anything, and the fold must neither crash
// nor let a later record take a key whose first use is still in force.
func FuzzFold(f *testing.F) {
	f.Add([]byte("web:ab"), []byte(`{"token":"a","t":1,"expires":100}`), []byte(`{"token":"b","t":50,"expires":200}`))
	f.Add([]byte(""), []byte(`{"token":"","t":-9223372036854775808}`), []byte(`null`))
	f.Add([]byte("k"), []byte(`{"token":"a","t":9223372036854775807,"expires":-1}`), []byte(`{"token":"b","t":0,"expires":0}`))
	f.Fuzz(func(t *testing.T, key, first, second []byte) {
		g := &Guard{uses: map[string]use{}, next: map[int32]int64{}}
		g.apply(&kgo.Record{Key: key, Value: first})
		held, ok := g.uses[string(key)]
		g.apply(&kgo.Record{Key: key, Value: second, Offset: 1})
		if ok && g.uses[string(key)] != held {
			now := g.uses[string(key)]
			// Taken over: only by a record written at or after the expiry.
			if g.newest < held.expires {
				t.Fatalf("a record at t=%d took %q from %+v (now %+v)", g.newest, key, held, now)
			}
		}
		if g.next[0] != 2 {
			t.Fatalf("next offset %d after two records, want 2", g.next[0])
		}
		g.prune()
	})
}
