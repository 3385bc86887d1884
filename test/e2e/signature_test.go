package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// signingKeys makes a key directory as an operator would (0700, files 0600)
// and returns it with the secrets by key id.
func signingKeys(t *testing.T, ids ...string) (string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{}
	for i, id := range ids {
		// 44 bytes, like the base64 of 32 random bytes the docs recommend.
		s := []byte(fmt.Sprintf("%s-%02d-0123456789abcdefghijklmnopqrstuvwxyzABCDEF", id, i))[:44]
		if err := os.WriteFile(filepath.Join(dir, id), s, 0o600); err != nil {
			t.Fatal(err)
		}
		secrets[id] = s
	}
	return dir, secrets
}

func signed(t *testing.T, tk task.Task, keyID string, secret []byte, at time.Time) []byte {
	t.Helper()
	if tk.Task.CmdArgs == nil {
		tk.Task.CmdArgs = []string{}
	}
	signature.Sign(&tk, keyID, secret, at)
	raw, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Signed submissions end to end: the CLI signs, the executor verifies, and
// the policy's keys decide; every other kind of submission is refused with
// its own reason and never runs.
func TestSignedTasksEndToEnd(t *testing.T) {
	dir := sandboxDir(t)
	script(t, dir, "deploy.sh", `echo "deploying $1"`)
	keysDir, secrets := signingKeys(t, "ci", "web")
	pol := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, pol, `
rule "deploy" {
  cmdline = "deploy.sh"
  args    = ["[a-z]+"]
  keys    = ["ci"]
}
`, 0o644)
	g := startGuarded(t, dir, uniqueID("sig"), map[string]any{
		"policy_file": pol, "signing_keys_dir": keysDir, "require_signatures": true,
	})
	g.p.waitLog(t, "signed submissions required", time.Second)

	// The CLI signs with the key file it is given; its name is the key id.
	if out, code := run(t, "submit", "-config="+g.cfg, "-key", filepath.Join(keysDir, "ci"), "-id=by-ci", "deploy.sh", "staging"); code != 0 {
		t.Fatalf("submit -key ci: %d %s", code, out)
	}
	d := g.done(t, "by-ci")
	expectStatus(t, "signed with ci", d, task.Succeeded)
	if out := joinLines(g.lines("by-ci", task.MsgStdout)); out != "deploying staging" {
		t.Errorf("signed with ci printed %q", out)
	}

	if out, code := run(t, "submit", "-config="+g.cfg, "-key", filepath.Join(keysDir, "web"), "-id=by-web", "deploy.sh", "staging"); code != 0 {
		t.Fatalf("submit -key web: %d %s", code, out)
	}
	d = g.done(t, "by-web")
	expectStatus(t, "signed with web", d, task.Rejected)
	expectReason(t, "signed with web", d, `policy: rule "deploy" is only for keys ["ci"], the task is signed by "web"`)

	if out, code := run(t, "submit", "-config="+g.cfg, "-id=unsigned", "deploy.sh", "staging"); code != 0 {
		t.Fatalf("submit unsigned: %d %s", code, out)
	}
	// A message no key vouches for never claims its id and gets no done:
	// otherwise an unsigned message could take a signed task's id first.
	unanswered(t, g, "unsigned")

	// Forged: signed for staging, altered to production on the way.
	raw := signed(t, task.Task{ID: "forged", Type: "e2e", Task: task.Spec{Cmdline: "deploy.sh", CmdArgs: []string{"staging"}}},
		"ci", secrets["ci"], time.Now())
	forged := []byte(strings.Replace(string(raw), `"cmd_args":["staging"]`, `"cmd_args":["production"]`, 1))
	if string(forged) == string(raw) {
		t.Fatalf("the test did not alter the signed JSON: %s", raw)
	}
	g.pushRaw(t, forged)
	unanswered(t, g, "forged")

	g.pushRaw(t, signed(t, task.Task{ID: "unknown-key", Type: "e2e", Task: task.Spec{Cmdline: "deploy.sh", CmdArgs: []string{"staging"}}},
		"ops", secrets["ci"], time.Now()))
	unanswered(t, g, "unknown-key")

	g.pushRaw(t, signed(t, task.Task{ID: "stale", Type: "e2e", Task: task.Spec{Cmdline: "deploy.sh", CmdArgs: []string{"staging"}}},
		"ci", secrets["ci"], time.Now().Add(-time.Hour)))
	d = g.done(t, "stale")
	expectStatus(t, "stale", d, task.Rejected)
	if !strings.HasPrefix(d.Reason, "signature: timestamp outside the accepted window") {
		t.Errorf("stale: reason %q", d.Reason)
	}

	// Replay: the exact bytes of an accepted task, sent again.
	orig := signed(t, task.Task{ID: "replayed", Type: "e2e", Task: task.Spec{Cmdline: "deploy.sh", CmdArgs: []string{"once"}}},
		"ci", secrets["ci"], time.Now())
	g.pushRaw(t, orig)
	expectStatus(t, "replayed (first time)", g.done(t, "replayed"), task.Succeeded)
	// While its id is remembered, a replay is a duplicate: dropped, no done.
	g.pushRaw(t, orig)
	g.p.waitLog(t, "duplicate task id: seen before", 10*time.Second)
	// A task sent after the replay is handled after it (one slot): once its
	// done is here, a second done of the replay would be too.
	g.pushRaw(t, signed(t, task.Task{ID: "after-replay", Type: "e2e", Task: task.Spec{Cmdline: "deploy.sh", CmdArgs: []string{"later"}}},
		"ci", secrets["ci"], time.Now()))
	expectStatus(t, "after the replay", g.done(t, "after-replay"), task.Succeeded)
	if n := g.dones("replayed"); n != 1 {
		t.Errorf("the replayed task got %d dones, want 1", n)
	}
	// Once the id is forgotten (status_retention ran out, or the status was
	// lost), the signature's own replay memory still refuses it.
	if err := g.rdb.Del(context.Background(), "queue_job_task:status:replayed").Err(); err != nil {
		t.Fatal(err)
	}
	g.seen["replayed"] = nil
	g.pushRaw(t, orig)
	d = g.done(t, "replayed")
	expectStatus(t, "replayed after its id was forgotten", d, task.Rejected)
	var sig struct {
		Sig task.Signature `json:"sig"`
	}
	_ = json.Unmarshal(orig, &sig)
	expectReason(t, "replayed after its id was forgotten", d,
		fmt.Sprintf(`signature: replayed: this signed task was already accepted (key "ci", ts %d)`, sig.Sig.TS))
	if out := g.lines("replayed", task.MsgStdout); len(out) != 0 {
		t.Errorf("the replay ran again: %q", out)
	}
}

// unanswered waits until the executor has dropped id's message as vouched
// for by no key, and checks that the id was not claimed.
func unanswered(t *testing.T, g *guarded, id string) {
	t.Helper()
	g.p.waitLog(t, "id="+id+" reason=", 10*time.Second)
	n, err := g.rdb.Exists(context.Background(), "queue_job_task:status:"+id).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%s: an unverified message claimed its id", id)
	}
}
