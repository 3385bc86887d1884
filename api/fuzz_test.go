package api

import (
	"errors"
	"net/url"
	"testing"
)

// FuzzQueryFilters: any query string of GET /api/v1/tasks and
// /api/v1/audit (filters, limits, times, cursors) is either a filter or a
// 4xx with a reason; nothing panics, and a cursor round-trips.
func FuzzQueryFilters(f *testing.F) {
	f.Add("state=running&tube=-&limit=10&since=1h")
	f.Add("until=2026-11-24T00:00:00Z&cursor=" + cursor{Score: 17, ID: "a\x00b"}.encode())
	f.Add("limit=0&state=done&cursor=%%")
	f.Add("kind=control&limit=10001&since=-1h")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		check := func(what string, err error) {
			var he *httpError
			if err != nil && (!errors.As(err, &he) || he.code/100 != 4 || he.msg == "") {
				t.Fatalf("%s: %v is not a 4xx with a reason", what, err)
			}
		}
		tf, err := parseTaskFilter(q)
		check("task filter", err)
		if err == nil && (tf.Limit < 1 || tf.Limit > 1000) {
			t.Fatalf("limit %d accepted", tf.Limit)
		}
		if c := q.Get("cursor"); c != "" {
			d, err := decodeCursor(c)
			check("cursor", err)
			if err == nil {
				if again, err := decodeCursor(d.encode()); err != nil || again != d {
					t.Fatalf("cursor %q does not round-trip: %+v %v", c, again, err)
				}
			}
		}
		_, _, err = parseAuditFilter(q)
		check("audit filter", err)
	})
}
