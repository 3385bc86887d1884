package executor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

func testVerifier(t *testing.T) (*signature.Verifier, []byte) {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef-wire-test")
	k, err := signature.NewKeyring(map[string][]byte{"ci": secret})
	if err != nil {
		t.Fatal(err)
	}
	return signature.NewVerifier(k, signature.Options{}), secret
}

func (c *cluster) pushSigned(id, cmdline string, secret []byte) {
	c.t.Helper()
	tk := task.Task{ID: id, Type: "test", Task: task.Spec{Cmdline: cmdline, CmdArgs: []string{}}}
	signature.Sign(&tk, "ci", secret, time.Now())
	raw, _ := json.Marshal(tk)
	c.push(string(raw))
}

// Issue 14 items 5 and 6: with require_signatures, nothing a key holder did
// not sign may reserve an id, speak on it, or kill: not an unsigned task,
// not a signed one replayed under another id with a case-variant key, not
// an unsigned kill sent ahead or at a running task.
func TestUnsignedMessagesCannotReserveOrKillSignedTasks(t *testing.T) {
	c := newCluster(t)
	c.script("ok.sh", `echo ran`)
	c.script("sleep.sh", `sleep 30`)
	v, secret := testVerifier(t)
	c.executor("sig-a", func(o *Options) { o.Verifier, o.RequireSignatures = v, true })
	ctx := context.Background()

	// A genuine signed message, resubmitted with its id under "ID" and a
	// new "id": encoding/json alone ran it as NEW.
	tk := task.Task{ID: "genuine", Type: "test", Task: task.Spec{Cmdline: "ok.sh", CmdArgs: []string{}}}
	signature.Sign(&tk, "ci", secret, time.Now())
	raw, _ := json.Marshal(tk)
	c.push(strings.Replace(string(raw), `{"id":"genuine"`, `{"id":"NEW","ID":"genuine"`, 1))
	// Unsigned messages naming future signed ids, and an unsigned kill ahead.
	c.submit("future", "ok.sh", nil, 0)
	c.push(`{"ID":"future2","task":{"cmdline":"ok.sh"}}`)
	c.kill("future3")
	observe.Eventually(t, "the executor to refuse them", 10*time.Second, func() bool {
		return c.rdb.LLen(ctx, names.Tasks).Val() == 0 && c.rdb.LLen(ctx, names.Control).Val() == 0
	})

	c.push(string(raw))
	c.pushSigned("future", "ok.sh", secret)
	c.pushSigned("future2", "ok.sh", secret)
	c.pushSigned("future3", "ok.sh", secret)
	for _, id := range []string{"genuine", "future", "future2", "future3"} {
		if d := c.done(id, 20*time.Second); d.Status != task.Succeeded {
			t.Errorf("signed %s: %s %q; an unsigned message blocked it", id, d.Status, d.Reason)
		}
		if n := c.dones(id); n != 1 {
			t.Errorf("%s got %d dones", id, n)
		}
	}
	if n := len(c.messages("NEW")); n != 0 {
		t.Errorf("the re-keyed copy spoke as NEW: %d messages", n)
	}

	// An unsigned kill does not stop a signed task; a signed one does.
	c.pushSigned("long", "sleep.sh", secret)
	observe.Eventually(t, "long to run", 10*time.Second, func() bool {
		return c.rdb.HGet(ctx, "queue_job_task:status:long", "state").Val() == "running"
	})
	c.kill("long")
	observe.Eventually(t, "the unsigned kill to be taken", 10*time.Second, func() bool {
		return c.rdb.LLen(ctx, names.Control).Val() == 0
	})
	kill := task.Control{ID: "long", Type: task.ControlKill}
	signature.SignKill(&kill, "ci", secret, time.Now())
	rawKill, _ := json.Marshal(kill)
	// Forged: the signature of the kill for "long", on a kill for "other".
	forged := strings.Replace(string(rawKill), `"id":"long"`, `"id":"other"`, 1)
	if err := c.rdb.RPush(ctx, names.Control, forged).Err(); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "the forged kill to be taken", 10*time.Second, func() bool {
		return c.rdb.LLen(ctx, names.Control).Val() == 0
	})
	if n := c.dones("long"); n != 0 {
		t.Fatalf("an unsigned or forged kill ended the signed task")
	}
	if err := c.rdb.RPush(ctx, names.Control, rawKill).Err(); err != nil {
		t.Fatal(err)
	}
	if d := c.done("long", 20*time.Second); d.Status != task.Killed {
		t.Errorf("signed kill: %s %q", d.Status, d.Reason)
	}
}
