package redismirror

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/audittest"
	"github.com/taskjob/task-job/test/redisserver"
)

func waitMirror(t *testing.T, m *Mirror, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.Wait(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

func TestMirrorCatchesUpAfterOutage(t *testing.T) {
	srv := redisserver.Start(t, redisserver.Options{Persist: true})
	rdb := srv.Client(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.Options{MaxBytes: 8192})
	const stream = "audit:host-a"
	m := Start(path, rdb, stream, Options{PollInterval: 5 * time.Millisecond, RetryInterval: 20 * time.Millisecond})
	appendN(t, l, 50)
	waitMirror(t, m, l.Seq())

	srv.Stop(t)
	appendN(t, l, 100) // rotates meanwhile: the mirror must follow into the new files
	for deadline := time.Now().Add(10 * time.Second); m.Err() == nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if m.Err() == nil {
		t.Error("mirror reports no error while Redis is down")
	}
	srv.Restart(t)
	waitMirror(t, m, l.Seq())
	m.Close()

	// An executor restart: a new mirror resumes after the stream's last entry.
	appendN(t, l, 20)
	m2 := Start(path, rdb, stream, Options{PollInterval: 5 * time.Millisecond})
	waitMirror(t, m2, l.Seq())
	m2.Close()

	ctx := context.Background()
	if n := rdb.XLen(ctx, stream).Val(); n != int64(l.Seq()) {
		msgs := rdb.XRange(ctx, stream, "-", "+").Val()
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		t.Fatalf("stream holds %d entries, log has %d records: %v", n, l.Seq(), ids)
	}
	l.Close()
	if len(rotatedFiles(t, path)) == 0 {
		t.Fatal("no rotation happened")
	}
	rep, err := Verify(ctx, path, rdb, stream)
	if err != nil || !rep.OK() || rep.Compared != int(rep.CopyLast) || rep.Missing != 0 {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

// TestMirrorCatchesRewrittenTail covers what the chain alone cannot: a tail
// rewritten with recomputed hashes, and records removed from the end.
func TestMirrorCatchesRewrittenTail(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	setup := func(t *testing.T, stream string) string {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l := openLog(t, path, audit.Options{})
		m := Start(path, rdb, stream, Options{PollInterval: 5 * time.Millisecond})
		appendN(t, l, 20)
		waitMirror(t, m, 20)
		m.Close()
		l.Close()
		return path
	}
	t.Run("rewritten", func(t *testing.T) {
		path := setup(t, "s1")
		ls := readLines(t, path)
		prev := ""
		for i := 14; i < 20; i++ {
			if i == 14 {
				ls[i] = bytes.Replace(ls[i], []byte(`"id":"t14"`), []byte(`"id":"forged"`), 1)
			} else {
				ls[i] = bytes.Replace(ls[i], ls[i][bytes.Index(ls[i], []byte(`"prev":"`))+8:][:64], []byte(prev), 1)
			}
			ls[i] = audittest.Rehash(ls[i])
			prev = string(ls[i][len(ls[i])-67 : len(ls[i])-3])
		}
		writeLines(t, path, ls)
		mustVerify(t, path) // self-consistent
		rep, err := Verify(ctx, path, rdb, "s1")
		if err != nil || rep.Break == nil || rep.Break.Seq != 15 || !strings.Contains(rep.Break.Problem, "rewritten") {
			t.Fatalf("%+v %v", rep, err)
		}
		t.Log(rep.Break)
	})
	t.Run("tail removed", func(t *testing.T) {
		path := setup(t, "s2")
		ls := readLines(t, path)
		writeLines(t, path, ls[:17])
		mustVerify(t, path)
		rep, err := Verify(ctx, path, rdb, "s2")
		if err != nil || rep.Break == nil || rep.Break.Seq != 18 || !strings.Contains(rep.Break.Problem, "tail was removed") {
			t.Fatalf("%+v %v", rep, err)
		}
		t.Log(rep.Break)
	})
	t.Run("replaced log", func(t *testing.T) {
		path := setup(t, "s3")
		os.Remove(path)
		l := openLog(t, path, audit.Options{})
		appendN(t, l, 5)
		var errs []error
		m := Start(path, rdb, "s3", Options{PollInterval: 5 * time.Millisecond, OnError: func(err error) { errs = append(errs, err) }})
		deadline := time.Now().Add(5 * time.Second)
		for m.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		m.Close()
		if err := m.Err(); err == nil || !strings.Contains(err.Error(), "lost its tail or was replaced") {
			t.Fatalf("mirror error %v", err)
		}
	})
}

// TestMirrorRefusesAnotherExecutorsStream: two executors' logs in one
// stream collide on their seqs (each log counts from 1), so the second
// mirror must refuse the stream and say whose it is, not report that its
// own log "lost its tail".
func TestMirrorRefusesAnotherExecutorsStream(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	const stream = "q_audit:shared"
	dir := t.TempDir()
	la := openLog(t, filepath.Join(dir, "a.jsonl"), audit.Options{Executor: "exec-a"})
	ma := Start(filepath.Join(dir, "a.jsonl"), rdb, stream, Options{Executor: "exec-a", PollInterval: 5 * time.Millisecond})
	appendN(t, la, 5)
	waitMirror(t, ma, la.Seq())
	ma.Close()

	lb := openLog(t, filepath.Join(dir, "b.jsonl"), audit.Options{Executor: "exec-b"})
	appendN(t, lb, 3)
	mb := Start(filepath.Join(dir, "b.jsonl"), rdb, stream, Options{Executor: "exec-b", PollInterval: 5 * time.Millisecond, RetryInterval: 20 * time.Millisecond})
	defer mb.Close()
	for deadline := time.Now().Add(5 * time.Second); mb.Err() == nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if err := mb.Err(); err == nil || !strings.Contains(err.Error(), `executor "exec-a"`) {
		t.Fatalf("the second executor's mirror says %v; want a refusal naming exec-a", err)
	}
	if n := rdb.XLen(context.Background(), stream).Val(); n != 5 {
		t.Fatalf("the stream holds %d entries, want exec-a's 5 only", n)
	}
}

func openLog(t testing.TB, path string, opts audit.Options) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func appendN(t testing.TB, l *audit.Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := l.Append(audit.Record{Kind: audit.KindReceived, ID: fmt.Sprint("t", i), Size: i, Digest: audit.DigestOf([]byte{byte(i)})}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte{'\n'})
}

func mustVerify(t testing.TB, path string) audit.Report {
	t.Helper()
	rep, err := audit.Verify(path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Break != nil {
		t.Fatalf("Verify: unexpected break: %v", rep.Break)
	}
	return rep
}

func rotatedFiles(t testing.TB, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeLines(t testing.TB, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Where only Redis reaches an executor's log, its mirror is read and
// verified like the file: the review filters select the same records, the
// chain verifies across the file's rotations, and a record taken out of
// the stream breaks it.
func TestCopyIsReadAndVerifiedLikeTheLog(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.Options{MaxBytes: 4096}) // rotates
	const stream = "audit:host-c"
	m := Start(path, rdb, stream, Options{PollInterval: 5 * time.Millisecond})
	appendN(t, l, 60)
	waitMirror(t, m, l.Seq())
	m.Close()
	if len(rotatedFiles(t, path)) == 0 {
		t.Fatal("the log did not rotate; the test needs it to")
	}
	c := Copy(context.Background(), rdb, stream)
	rep, err := audit.VerifyCopy(c)
	if err != nil || !rep.OK() || rep.Records != int(l.Seq()) || rep.FirstSeq != 1 || rep.LastSeq != l.Seq() {
		t.Fatalf("VerifyCopy = %+v, %v; want every record (the rotate records too), seq 1-%d, intact", rep, err, l.Seq())
	}
	var fromFile, fromCopy []uint64
	f := audit.Filter{ID: "t7"}
	if err := audit.Read(path, f, func(r audit.Record) error { fromFile = append(fromFile, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := audit.ReadCopy(c, f, func(r audit.Record) error { fromCopy = append(fromCopy, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(fromFile) != 1 || fmt.Sprint(fromFile) != fmt.Sprint(fromCopy) {
		t.Errorf("id t7: the file gives seqs %v, the copy %v", fromFile, fromCopy)
	}
	if err := rdb.XDel(context.Background(), stream, "30-0").Err(); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.VerifyCopy(c)
	if err != nil || rep.OK() || !strings.Contains(rep.Break.Error(), "seq jumps from 29 to 31") {
		t.Errorf("VerifyCopy of a stream with seq 30 taken out = %+v (%v), want a break at the jump", rep, err)
	}
}

// A log that rotates several times between two looks of the mirror: the
// files in between are copied too, in order (the old mirror went from the
// file it followed to the new current one: 16 of 68 records reached the
// stream).
func TestMirrorCopiesEveryFileOfSeveralRotationsBetweenLooks(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.Options{MaxBytes: 4096})
	const stream = "audit:host-d"
	m := Start(path, rdb, stream, Options{PollInterval: 300 * time.Millisecond})
	defer m.Close()
	appendN(t, l, 3)
	waitMirror(t, m, l.Seq())
	appendN(t, l, 60) // about four rotations, well within one poll
	if n := len(rotatedFiles(t, path)); n < 3 {
		t.Fatalf("%d rotations; the test needs several between two looks", n)
	}
	waitMirror(t, m, l.Seq())
	if n, err := rdb.XLen(context.Background(), stream).Result(); err != nil || n != int64(l.Seq()) {
		t.Errorf("the stream holds %d records (%v), the log %d", n, err, l.Seq())
	}
}
