package kafkamirror

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/audittest"
)

// Verify compares a log with its executor's records in the shared topic:
// an intact log agrees (another executor's records in between are not
// its), newer local records are only not yet mirrored, and a rewritten
// record or a removed tail is named, as with the Redis stream.
func TestVerifyAgainstTheTopic(t *testing.T) {
	t.Parallel()
	_, base, topic := startKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	// a and b interleave in the topic; c has no records there.
	pa, pb, pc := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl"), filepath.Join(dir, "c.jsonl")
	la, lb, lc := openLog(t, pa, audit.Options{MaxBytes: 4096}), openLog(t, pb, audit.Options{}), openLog(t, pc, audit.Options{})
	ma, mb := start(t, pa, base, topic, "exec-a"), start(t, pb, base, topic, "exec-b")
	for range 4 {
		appendN(t, la, 5)
		appendN(t, lb, 5)
		waitMirror(t, ma, la.Seq())
		waitMirror(t, mb, lb.Seq())
	}
	ma.Close()
	mb.Close()
	appendN(t, lc, 3)

	rep, err := Verify(ctx, pa, base, topic, "exec-a")
	if err != nil || !rep.OK() || rep.Compared != int(la.Seq()) || rep.CopyFirst != 1 || rep.CopyLast != la.Seq() || rep.Missing+rep.NotMirrored+rep.Trimmed != 0 {
		t.Fatalf("intact log (rotated): %+v %v", rep, err)
	}
	appendN(t, la, 3) // the mirror is stopped: these are not in the topic
	rep, err = Verify(ctx, pa, base, topic, "exec-a")
	if err != nil || !rep.OK() || rep.NotMirrored != 3 {
		t.Fatalf("3 records newer than the copy: %+v %v", rep, err)
	}
	rep, err = Verify(ctx, pc, base, topic, "exec-c")
	if err != nil || !rep.OK() || rep.CopyLast != 0 || rep.NotMirrored != 3 {
		t.Fatalf("a log with no copy: %+v %v", rep, err)
	}

	lb.Close()
	ls := bytes.SplitAfter(mustRead(t, pb), []byte("\n"))
	ls[11] = audittest.Rehash(bytes.Replace(ls[11], []byte(`"id":"t`), []byte(`"id":"forged-t`), 1))
	writeFile(t, pb, bytes.Join(ls, nil))
	rep, err = Verify(ctx, pb, base, topic, "exec-b")
	if err != nil || rep.Break == nil || rep.Break.Seq != 12 || !strings.Contains(rep.Break.Problem, "rewritten") {
		t.Fatalf("seq 12 rewritten: %+v %v", rep, err)
	}
	writeFile(t, pb, bytes.Join(ls[:15], nil))
	ls = bytes.SplitAfter(mustRead(t, pb), []byte("\n"))
	ls[11] = audittest.Rehash(bytes.Replace(ls[11], []byte(`"id":"forged-t`), []byte(`"id":"t`), 1))
	writeFile(t, pb, bytes.Join(ls, nil))
	rep, err = Verify(ctx, pb, base, topic, "exec-b")
	if err != nil || rep.Break == nil || rep.Break.Seq != 16 || !strings.Contains(rep.Break.Problem, "tail was removed") {
		t.Fatalf("tail from seq 16 removed: %+v %v", rep, err)
	}
	t.Log(rep.Break)

	if _, err := Verify(ctx, pb, base, "no_such_topic", "exec-b"); err == nil {
		t.Fatal("Verify against a topic that does not exist: no error")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
