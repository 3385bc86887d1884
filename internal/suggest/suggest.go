// Package suggest finds the known name an unknown one was probably meant to
// be, for "did you mean" hints in the CLI and the config parser.
package suggest

import "strings"

// Nearest returns the name in names nearest to word when it is near enough
// to be a likely slip: at most 2 edits (3 for words of 10 bytes or more),
// or word is a prefix of it. Case and '-' versus '_' are ignored first,
// since those are the usual slips. It returns "" when nothing is that near.
func Nearest(word string, names []string) string {
	if word == "" || len(word) > 64 {
		return "" // no name is this long; spare the quadratic distance
	}
	w := normal(word)
	best, bestDist := "", 1<<30
	for _, n := range names {
		nn := normal(n)
		d := distance(w, nn)
		if len(w) >= 3 && strings.HasPrefix(nn, w) {
			d = min(d, 1)
		}
		if d < bestDist || d == bestDist && n < best {
			best, bestDist = n, d
		}
	}
	limit := 2
	if len(w) >= 10 {
		limit = 3
	}
	if bestDist > limit || bestDist >= len(w) {
		return ""
	}
	return best
}

func normal(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
