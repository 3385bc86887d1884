package executor

import (
	"bytes"
	"testing"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

func TestFinishRecordRoundTrip(t *testing.T) {
	for _, f := range []queue.Finish{
		{ID: "101", State: task.Succeeded, Done: []byte(`{"id":"101"}`), Raw: []byte(`{"id":"101","task":{}}`), Claimed: true},
		{ID: "", State: task.Killed, Done: nil, Raw: bytes.Repeat([]byte{0xff}, 70000)},
	} {
		got, err := decodeFinish(encodeFinish(&f))
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != f.ID || got.State != f.State || !bytes.Equal(got.Done, f.Done) || !bytes.Equal(got.Raw, f.Raw) || got.Claimed != f.Claimed {
			t.Errorf("round trip of %+v gave %+v", f, got)
		}
	}
	b := encodeFinish(&queue.Finish{ID: "x", Done: []byte("done"), Raw: []byte("raw")})
	for i := range len(b) - 1 {
		if _, err := decodeFinish(b[:i]); err == nil {
			t.Errorf("a record cut to %d of %d bytes decoded", i, len(b))
		}
	}
}
