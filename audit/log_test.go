package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit/audittest"
	"github.com/taskjob/task-job/test/observe"
)

func TestLineFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{Executor: "host-a", Now: func() time.Time {
		return time.Date(2026, 11, 24, 1, 2, 3, 456789000, time.FixedZone("x", 3600))
	}})
	if err := l.Append(Record{Kind: KindEnd, ID: "101", Status: "failed", ExitCode: IntPtr(0)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	line := readLines(t, path)[0]
	want := `{"seq":1,"time":"2026-11-24T00:02:03.456789Z","kind":"end","executor":"host-a","id":"101","status":"failed","exit_code":0,"prev":"` + ZeroHash + `","hash":"`
	if !bytes.HasPrefix(line, []byte(want)) || !bytes.HasSuffix(line, []byte("\"}\n")) {
		t.Fatalf("line:\n%s\nwant prefix:\n%s", line, want)
	}
	// The documented canonical-bytes rule, independent of ParseLine.
	body := line[:len(line)-1]
	canon := append(append([]byte{}, body[:len(body)-75]...), '}')
	if got := fmt.Sprintf("%x", sha256Sum(canon)); got != string(body[len(body)-66:len(body)-2]) {
		t.Fatalf("hash %s does not follow the canonical-bytes rule", got)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", info.Mode().Perm())
	}
}

func TestChainIntactConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{SyncInterval: 5 * time.Millisecond, SyncEvery: 64})
	const writers, each = 8, 300
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				for _, r := range taskRecords(fmt.Sprintf("w%d-%d", w, i), "succeeded", "r", "") {
					if err := l.Append(r); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, path)
	if rep.Records != writers*each*4 || rep.LastSeq != uint64(writers*each*4) || rep.Files != 1 {
		t.Fatalf("report %+v", rep)
	}
	if l.Syncs() == 0 {
		t.Fatal("no fsync ran")
	}
	if err := l.Append(Record{Kind: KindEnd}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestVerifyCatchesTampering(t *testing.T) {
	const n = 20
	cases := []struct {
		name   string
		tamper func(ls [][]byte) [][]byte // ls[i] is line i+1 with '\n'; ls[n] is ""
		line   int
		want   string
	}{
		{"edit middle", func(ls [][]byte) [][]byte {
			ls[9] = bytes.Replace(ls[9], []byte(`"id":"t9"`), []byte(`"id":"t8"`), 1)
			return ls
		}, 10, "hash does not match its content — the record was edited"},
		{"edit last", func(ls [][]byte) [][]byte {
			ls[n-1] = bytes.Replace(ls[n-1], []byte(`"size":19`), []byte(`"size":18`), 1)
			return ls
		}, n, "the record was edited"},
		{"edit and rehash one", func(ls [][]byte) [][]byte {
			ls[9] = audittest.Rehash(bytes.Replace(ls[9], []byte(`"id":"t9"`), []byte(`"id":"xx"`), 1))
			return ls
		}, 11, "prev does not match line 10"},
		{"delete", func(ls [][]byte) [][]byte {
			return append(ls[:5:5], ls[6:]...)
		}, 6, "seq jumps from 5 to 7 — 1 record(s) were deleted"},
		{"delete first", func(ls [][]byte) [][]byte { return ls[1:] }, 1, ""},
		{"swap", func(ls [][]byte) [][]byte {
			ls[4], ls[5] = ls[5], ls[4]
			return ls
		}, 5, "seq jumps from 4 to 6"},
		{"truncated end", func(ls [][]byte) [][]byte {
			ls[n-1] = ls[n-1][:len(ls[n-1])/2]
			return ls
		}, n, "incomplete last line"},
		{"garbage line", func(ls [][]byte) [][]byte {
			return append(ls[:3:3], append([][]byte{[]byte("hello\n")}, ls[3:]...)...)
		}, 4, "cannot be read"},
		{"duplicate member", func(ls [][]byte) [][]byte {
			ls[2] = audittest.Rehash(bytes.Replace(ls[2], []byte(`"kind":"received"`), []byte(`"kind":"received","kind":"end"`), 1))
			return ls
		}, 3, `repeats the member "kind"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := openLog(t, path, Options{})
			appendN(t, l, n)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, path)
			writeLines(t, path, tc.tamper(readLines(t, path)))
			rep, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "delete first" {
				// Without the first record the rest is self-consistent: only
				// a warning (and the mirror) tell.
				if rep.Break != nil || len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "starts at seq 2") {
					t.Fatalf("report %+v", rep)
				}
				return
			}
			if rep.Break == nil {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if rep.Break.Line != tc.line || !strings.Contains(rep.Break.Error(), tc.want) {
				t.Fatalf("break %q (line %d), want line %d with %q", rep.Break.Error(), rep.Break.Line, tc.line, tc.want)
			}
			t.Log(rep.Break)
		})
	}
}

func TestRotationKeepsChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{MaxBytes: 4096})
	appendN(t, l, 200)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rotated := rotatedFiles(t, path)
	if len(rotated) < 3 {
		t.Fatalf("%d rotated files, want 3 or more", len(rotated))
	}
	rep := mustVerify(t, path)
	if rep.Files != len(rotated)+1 || rep.Records != 200+len(rotated) {
		t.Fatalf("report %+v with %d rotated files", rep, len(rotated))
	}
	for _, f := range rotated[:len(rotated)-1] {
		if info, _ := os.Stat(f); info.Size() < 4096 || info.Size() > 4096+400 {
			t.Fatalf("%s has %d bytes", f, info.Size())
		}
	}
	// Reading returns every record in order, across files.
	var seqs []uint64
	if err := Read(path, Filter{}, func(r Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, s)
		}
	}
	// Seq continues after a reopen, in the current file.
	l2 := openLog(t, path, Options{MaxBytes: 4096})
	appendN(t, l2, 50)
	l2.Close()
	if rep := mustVerify(t, path); rep.LastSeq != uint64(250+len(rotatedFiles(t, path))) {
		t.Fatalf("report %+v", rep)
	}
}

func TestVerifyCatchesBrokenRotation(t *testing.T) {
	setup := func(t *testing.T) (string, []string) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l := openLog(t, path, Options{MaxBytes: 2048})
		appendN(t, l, 100)
		l.Close()
		return path, rotatedFiles(t, path)
	}
	t.Run("middle file removed", func(t *testing.T) {
		path, rotated := setup(t)
		os.Remove(rotated[1])
		rep, _ := Verify(path)
		if rep.Break == nil || !strings.Contains(rep.Break.Error(), "not a rotate record continuing "+filepath.Base(rotated[0])) {
			t.Fatalf("report %+v", rep)
		}
		t.Log(rep.Break)
	})
	t.Run("last lines of a rotated file removed", func(t *testing.T) {
		path, rotated := setup(t)
		ls := readLines(t, rotated[0])
		writeLines(t, rotated[0], ls[:len(ls)-2])
		rep, _ := Verify(path)
		if rep.Break == nil || !strings.Contains(rep.Break.Error(), "named for seq") {
			t.Fatalf("report %+v", rep)
		}
		t.Log(rep.Break)
	})
	t.Run("rotate record edited", func(t *testing.T) {
		path, rotated := setup(t)
		ls := readLines(t, rotated[1])
		ls[0] = audittest.Rehash(bytes.Replace(ls[0], []byte(`"prev_file":"audit.jsonl.`), []byte(`"prev_file":"audit.jsonl.x`), 1))
		writeLines(t, rotated[1], ls)
		rep, _ := Verify(path)
		if rep.Break == nil || rep.Break.Line != 1 || !strings.Contains(rep.Break.Error(), "not a rotate record continuing") {
			t.Fatalf("report %+v", rep)
		}
	})
}

func TestCrashDuringRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{})
	appendN(t, l, 10)
	l.Close()
	// Renamed, but the new file was never created.
	if err := os.Rename(path, rotatedName(path, 1, 10, time.Now())); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, path, Options{})
	appendN(t, l, 3)
	l.Close()
	rep := mustVerify(t, path)
	if rep.Files != 2 || rep.LastSeq != 14 {
		t.Fatalf("report %+v", rep)
	}
}

func TestTornTailIsRecovered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{})
	appendN(t, l, 5)
	l.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":6,"time":"2026-`)
	f.Close()
	if rep, _ := Verify(path); rep.Break == nil || !strings.Contains(rep.Break.Problem, "incomplete last line") {
		t.Fatalf("torn tail not reported: %+v", rep)
	}
	l = openLog(t, path, Options{})
	appendN(t, l, 2)
	l.Close()
	rep := mustVerify(t, path)
	if rep.LastSeq != 8 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "torn line") {
		t.Fatalf("report %+v", rep)
	}
	var rec Record
	Read(path, Filter{Kind: KindExecutor}, func(r Record) error { rec = r; return nil })
	if rec.Event != EventRecovered || rec.Seq != 6 || !strings.Contains(rec.Reason, "torn") {
		t.Fatalf("recovered record %+v", rec)
	}
}

func TestRemovedFileFailsAndRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{SyncInterval: 5 * time.Millisecond})
	appendN(t, l, 5)
	os.Remove(path)
	deadline := time.Now().Add(5 * time.Second)
	for l.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Append(Record{Kind: KindEnd}); err == nil || !strings.Contains(err.Error(), "removed or replaced") {
		t.Fatalf("Append after removal: %v", err)
	}
	if err := l.Healthy(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1)
	l.Close()
	rep := mustVerify(t, path)
	if rep.FirstSeq != 6 || rep.LastSeq != 7 {
		t.Fatalf("report %+v", rep)
	}
}

// TestFullDiskFailsClosed fills a small tmpfs: Append must fail, keep
// failing, and recover once space is back, with the gap on record.
func TestFullDiskFailsClosed(t *testing.T) {
	dir := observe.TinyTmpfs(t)
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 10)
	filler := filepath.Join(dir, "filler")
	fill := bytes.Repeat([]byte{'x'}, 4096)
	f, _ := os.Create(filler)
	for {
		if _, err := f.Write(fill); err != nil {
			break
		}
	}
	f.Close()
	var appendErr error
	for i := 0; i < 1000 && appendErr == nil; i++ {
		appendErr = l.Append(Record{Kind: KindReceived, ID: "x", Reason: strings.Repeat("y", 100)})
	}
	if !errors.Is(appendErr, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk: %v", appendErr)
	}
	want := "audit: cannot write " + path + ": no space left on device; tasks are not started until the audit log can be written"
	if appendErr.Error() != want {
		t.Fatalf("error %q\nwant %q", appendErr, want)
	}
	if err := l.Healthy(); err == nil {
		t.Fatal("Healthy with the disk still full")
	}
	os.Remove(filler)
	if err := l.Append(Record{Kind: KindEnd}); err == nil {
		t.Fatal("Append succeeded before recovery: the log must stay failed")
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy after freeing space: %v", err)
	}
	appendN(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, path)
	var rec Record
	Read(path, Filter{Kind: KindExecutor}, func(r Record) error { rec = r; return nil })
	if rec.Event != EventRecovered || !strings.Contains(rec.Reason, "no space left on device") || !strings.Contains(rec.Reason, "appends were refused") {
		t.Fatalf("recovered record %+v", rec)
	}
	t.Logf("report %+v; recovered: %s", rep, rec.Reason)
}

func TestReadFilters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{})
	l.Append(Record{Kind: KindExecutor, Event: EventStarted, PolicyDigest: "sha256:ab"})
	for _, rs := range [][]Record{
		taskRecords("a", "succeeded", "build", "k1"),
		taskRecords("b", "failed", "build", "k2"),
		taskRecords("c", "failed", "deploy", "k1"),
	} {
		for _, r := range rs {
			if err := l.Append(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.Close()
	ids := func(f Filter) string {
		var out []string
		if err := Read(path, f, func(r Record) error { out = append(out, r.ID+":"+r.Kind[:1]); return nil }); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{Status: "failed"}, "b:r b:d b:s b:e c:r c:d c:s c:e"},
		{Filter{Rule: "deploy"}, "c:r c:d c:s c:e"},
		{Filter{KeyID: "k1", Kind: KindEnd}, "a:e c:e"},
		{Filter{Status: "failed", Rule: "build"}, ""}, // no single record carries both
		{Filter{ID: "a"}, "a:r a:d a:s a:e"},
		{Filter{Kind: KindExecutor}, ":e"},
		{Filter{Since: time.Now().Add(time.Hour)}, ""},
		{Filter{Until: time.Now().Add(time.Hour), Kind: KindDecision}, "a:d b:d c:d"},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestReadSkipsUntrustedLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, Options{})
	appendN(t, l, 5)
	l.Close()
	ls := readLines(t, path)
	ls[2] = bytes.Replace(ls[2], []byte(`"t2"`), []byte(`"zz"`), 1)
	writeLines(t, path, ls)
	n := 0
	err := Read(path, Filter{}, func(Record) error { n++; return nil })
	var re *ReadError
	if !errors.As(err, &re) || re.Skipped != 1 || n != 4 || re.First.Line != 3 {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

// A write cut short just before its newline leaves a whole record: it is
// part of the chain, and the next record must not repeat its seq.
func TestWholeRecordWithoutNewlineIsKept(t *testing.T) {
	for _, before := range []int{0, 5} {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l := openLog(t, path, Options{})
		appendN(t, l, before)
		l.Close()
		st, err := readFileState(path)
		if err != nil {
			t.Fatal(err)
		}
		prev := st.lastHash
		if before == 0 {
			prev = ZeroHash
		}
		body, err := encodeBody(&Record{Kind: KindEnd, ID: "cut", Time: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		line, _ := appendLine(nil, body, uint64(before)+1, prev)
		f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		f.Write(bytes.TrimSuffix(line, []byte{'\n'}))
		f.Close()
		l = openLog(t, path, Options{})
		appendN(t, l, 2)
		l.Close()
		rep := mustVerify(t, path)
		if rep.LastSeq != uint64(before)+3 || len(rep.Warnings) != 0 {
			t.Fatalf("after %d records: report %+v", before, rep)
		}
		var ids []string
		Read(path, Filter{}, func(r Record) error { ids = append(ids, r.ID); return nil })
		if !slices.Contains(ids, "cut") {
			t.Fatalf("after %d records: the whole record was dropped: %q", before, ids)
		}
	}
}
