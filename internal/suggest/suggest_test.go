package suggest

import "testing"

func TestNearest(t *testing.T) {
	names := []string{"submit", "status", "kill", "logs", "redis_addr", "executor_id", "executor_ttl"}
	for _, c := range []struct{ word, want string }{
		{"sumbit", "submit"},         // a transposition: 2 edits
		{"stauts", "status"},         // likewise
		{"Submit", "submit"},         // case is ignored
		{"redis-addr", "redis_addr"}, // '-' for '_' is ignored
		{"redis", "redis_addr"},      // a prefix
		{"executor_tll", "executor_ttl"},
		{"kil", "kill"},
		{"xyz", ""}, // nothing near
		{"k", ""},   // a distance as long as the word says nothing
		{"", ""},
		{string(make([]byte, 65)), ""},
	} {
		if got := Nearest(c.word, names); got != c.want {
			t.Errorf("Nearest(%q) = %q, want %q", c.word, got, c.want)
		}
	}
}
