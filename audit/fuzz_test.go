package audit

import (
	"bytes"
	"testing"

	"github.com/taskjob/task-job/audit/audittest"
)

// FuzzParseLine feeds hostile lines to the parser Verify and Read use: it
// must never panic, and whatever it accepts must be a line whose own hash
// holds and that reads back to the same record.
func FuzzParseLine(f *testing.F) {
	body, _ := encodeBody(&Record{Kind: KindEnd, ID: "101", Status: "failed", ExitCode: IntPtr(3)})
	good, _ := appendLine(nil, body, 7, ZeroHash)
	good = bytes.TrimSuffix(good, []byte{'\n'})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"seq":1,"seq":2,"prev":"` + ZeroHash + `","hash":"` + ZeroHash + `"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte{0, 0, 0, '\n'})
	f.Add(append([]byte(`{"seq":1`), bytes.Repeat([]byte{'['}, 10000)...))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseLine(line)
		if err != nil {
			return
		}
		if r.Seq == 0 || len(r.Hash) != 64 || len(r.Prev) != 64 || r.Kind == "" {
			t.Fatalf("accepted an incomplete record: %q", line)
		}
		if _, err := ParseLine(audittest.Rehash(append(append([]byte{}, line...), '\n'))[:len(line)]); err != nil {
			t.Fatalf("an accepted line does not survive rehashing: %v", err)
		}
	})
}
