package examples

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/containershell"
	"github.com/taskjob/task-job/test/redisserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example passwords users.acl holds the hashes of.
const (
	webPassword      = "web-CHANGE-ME"
	executorPassword = "executor-CHANGE-ME"
)

// StartWithACL starts a real redis-server with users.acl loaded. The file
// turns the default user off; the copy loaded here turns it back on for the
// test's own admin connection (the helper's readiness PING uses it too).
// Everything else is the file as shipped.
func startWithACL(t *testing.T) *redisserver.Server {
	t.Helper()
	b, err := os.ReadFile("redis/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("user default off\n")) {
		t.Fatal("users.acl must turn the default user off")
	}
	acl := filepath.Join(t.TempDir(), "users.acl")
	b = bytes.Replace(b, []byte("user default off\n"), []byte("user default on nopass ~* &* +@all\n"), 1)
	if err := os.WriteFile(acl, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return redisserver.Start(t, redisserver.Options{Args: []string{"--aclfile", acl}})
}

// cli runs redis-cli as user, as a container does. redis-cli exits 0 when
// the server refuses a command, so the reply is what tells.
func cli(t *testing.T, s *redisserver.Server, user, password string, args ...string) string {
	t.Helper()
	cmd := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port()), "--user", user, "--no-auth-warning"}, args...)...)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestACLContainerUser(t *testing.T) {
	s := startWithACL(t)
	admin := s.Client(t)
	ctx := context.Background()
	// Keys an executor and other containers would have.
	for k, v := range map[string]string{"secret": "s3cret", "queue_job_task:executor:w1": "alive"} {
		admin.Set(ctx, k, v, 0)
	}
	admin.HSet(ctx, "queue_job_task:status:web-1", "state", "succeeded", "done", `{"id":"web-1","msg_type":"done"}`)
	admin.HSet(ctx, "queue_job_task:status:ci-1", "state", "running")
	admin.RPush(ctx, "queue_job_task_logs", `{"id":"web-1","msg_type":"stdout","data":"hi"}`, `{"id":"ci-1","msg_type":"stdout","data":"ci secret"}`)
	// Each task's own log stream, as the executor writes it (see
	// queue/redisqueue/logs.go): one entry per batch, field "lines".
	admin.XAdd(ctx, &redis.XAddArgs{Stream: "queue_job_task:logs:web-1", ID: "1-0", Values: []string{"lines", `{"id":"web-1","msg_type":"stdout","data":"hi"}`}})
	admin.XAdd(ctx, &redis.XAddArgs{Stream: "queue_job_task:logs:ci-1", ID: "1-0", Values: []string{"lines", `{"id":"ci-1","msg_type":"stdout","data":"ci secret"}`}})
	admin.RPush(ctx, "queue_job_task", `{"id":"ci-2","task":{"cmdline":"deploy.sh"}}`)

	allowed := []struct {
		args []string
		want string
	}{
		{[]string{"RPUSH", "queue_job_task", `{"id":"web-2"}`}, "2"},
		{[]string{"RPUSH", "queue_job_task_control", `{"id":"web-2","type":"kill"}`}, "1"},
		{[]string{"HGET", "queue_job_task:status:web-1", "done"}, `{"id":"web-1","msg_type":"done"}`},
		{[]string{"XRANGE", "queue_job_task:logs:web-1", "-", "+"}, "1-0\nlines\n" + `{"id":"web-1","msg_type":"stdout","data":"hi"}`},
		{[]string{"XREAD", "COUNT", "10", "STREAMS", "queue_job_task:logs:web-1", "0"}, "queue_job_task:logs:web-1\n1-0\nlines\n" + `{"id":"web-1","msg_type":"stdout","data":"hi"}`},
		{[]string{"XRANGE", "queue_job_task:logs:web-9", "-", "+"}, ""}, // its own task with no lines yet
	}
	for _, c := range allowed {
		if got := cli(t, s, "web", webPassword, c.args...); got != c.want {
			t.Errorf("web %v = %q, want %q", c.args, got, c.want)
		}
	}
	denied := [][]string{
		{"GET", "secret"},
		{"GET", "queue_job_task:executor:w1"},
		{"KEYS", "*"},
		{"SCAN", "0"},
		{"LRANGE", "queue_job_task", "0", "-1"},         // other containers' tasks (and their signatures)
		{"LPOP", "queue_job_task"},                      // taking a task away
		{"HGET", "queue_job_task:status:ci-1", "state"}, // another container's task
		{"HGETALL", "queue_job_task:status:web-1"},
		{"LRANGE", "queue_job_task_logs", "0", "-1"}, // every task's output
		{"LINDEX", "queue_job_task_logs", "1"},
		{"BLPOP", "queue_job_task_logs", "1"},
		{"XRANGE", "queue_job_task:logs:ci-1", "-", "+"}, // another container's task's output
		{"XREAD", "STREAMS", "queue_job_task:logs:ci-1", "0"},
		{"XREAD", "STREAMS", "queue_job_task:logs:web-1", "queue_job_task:logs:ci-1", "0", "0"},
		{"XREVRANGE", "queue_job_task:logs:web-1", "+", "-"},
		{"XADD", "queue_job_task:logs:web-1", "*", "lines", `{"id":"web-1","msg_type":"done"}`}, // forging its own results
		{"XTRIM", "queue_job_task:logs:web-1", "MAXLEN", "0"},
		{"RPUSH", "queue_job_task_logs", `{"id":"ci-1","msg_type":"done"}`}, // forging results
		{"RPUSH", "queue_job_task:control:w1", `{"id":"x","type":"kill"}`},
		{"RPUSH", "queue_job_task:processing:w1", "x"},
		{"HSET", "queue_job_task:status:web-1", "state", "succeeded"},
		{"DEL", "queue_job_task"},
		{"DEL", "queue_job_task_logs"},
		{"DEL", "queue_job_task:status:web-1"},
		{"UNLINK", "queue_job_task_logs"},
		{"LTRIM", "queue_job_task_logs", "1", "0"},
		{"EVAL", "return redis.call('DEL', KEYS[1])", "1", "queue_job_task_logs"},
		{"SUBSCRIBE", "queue_job_task_logs"},
		{"FLUSHALL"},
		{"CONFIG", "GET", "*"},
		{"ACL", "LIST"},
	}
	for _, args := range denied {
		if got := cli(t, s, "web", webPassword, args...); !strings.HasPrefix(got, "NOPERM") {
			t.Errorf("web %v = %q, want NOPERM", args, got)
		}
	}
	// Nothing the denied commands tried took effect.
	if n := admin.LLen(ctx, "queue_job_task_logs").Val(); n != 2 {
		t.Errorf("logs list has %d entries, want 2", n)
	}
	if n := admin.XLen(ctx, "queue_job_task:logs:web-1").Val(); n != 1 {
		t.Errorf("web-1's log stream has %d entries, want 1", n)
	}
	if n := admin.Exists(ctx, "queue_job_task", "queue_job_task:status:web-1", "secret").Val(); n != 3 {
		t.Errorf("%d of 3 keys still exist", n)
	}
	if got := cli(t, s, "web", "wrong", "RPUSH", "queue_job_task", "x"); strings.HasPrefix(got, "2") || strings.HasPrefix(got, "3") {
		t.Errorf("a wrong password pushed a task: %q", got)
	}
}

func TestACLExecutorUserKeepsToItsPrefix(t *testing.T) {
	s := startWithACL(t)
	admin := s.Client(t)
	admin.Set(context.Background(), "other_app:secret", "s3cret", 0)
	for _, args := range [][]string{
		{"GET", "other_app:secret"}, {"DEL", "other_app:secret"}, {"FLUSHALL"}, {"KEYS", "*"}, {"CONFIG", "SET", "dir", "/tmp"},
		{"ACL", "SETUSER", "web", "+@all"}, {"SUBSCRIBE", "other_channel"},
	} {
		if got := cli(t, s, "task-job", executorPassword, args...); !strings.HasPrefix(got, "NOPERM") {
			t.Errorf("task-job %v = %q, want NOPERM", args, got)
		}
	}
	if got := cli(t, s, "task-job", executorPassword, "RPUSH", "queue_job_task_logs", "x"); got != "1" {
		t.Errorf("the executor cannot publish results: %q", got)
	}
}

// shell runs one of the examples' scripts: with the host's sh, or with
// busybox sh and only busybox's applets, redis-cli and openssl on its PATH,
// as in the compose file's redis:7-alpine containers.
type shell struct {
	name string
	cmd  func(t *testing.T, env []string, script string, args ...string) *exec.Cmd
}

var shells = []shell{
	{"host sh", func(t *testing.T, env []string, script string, args ...string) *exec.Cmd {
		cmd := exec.Command("sh", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}},
	{"alpine sh", func(t *testing.T, env []string, script string, args ...string) *exec.Cmd {
		return containershell.Command(containershell.Env(t, env, "redis-cli", "openssl"), script, args...)
	}},
}

// eachShell runs f under every shell.
func eachShell(t *testing.T, f func(t *testing.T, sh shell)) {
	for _, sh := range shells {
		t.Run(sh.name, func(t *testing.T) { f(t, sh) })
	}
}

// sign runs sign.sh with sh, as the container does.
func (sh shell) sign(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	cmd := sh.cmd(t, env, "sign.sh", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sign.sh %v under %s: %v\n%s", args, sh.name, err, stderr.Bytes())
	}
	return out
}

// keyDir writes secret as key id's file, as an operator would.
func keyDir(t *testing.T, id string, secret []byte) (dir, file string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, id)
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

func TestSignScriptIsAcceptedByTheVerifier(t *testing.T) { eachShell(t, signIsAccepted) }

func signIsAccepted(t *testing.T, sh shell) {
	// Secrets as operators make them: base64 text with the newline echo
	// adds, and raw bytes holding NUL, CR and LF in the middle.
	raw := []byte("\x00\x01\n\r\x7f\xff0123456789abcdefghijklmnopqrstuvwxyz")
	for name, secret := range map[string][]byte{
		"base64 with newline": []byte("hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM=\n"),
		"crlf":                []byte("hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM=\r\n"),
		"raw bytes":           raw,
	} {
		t.Run(name, func(t *testing.T) {
			dir, file := keyDir(t, "web", secret)
			keys, err := signature.LoadKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			out := sh.sign(t, []string{"KEY_ID=web", "KEY_FILE=" + file, "TYPE=test", "TUBE=build", "TIMEOUT=90"},
				"web-7", "report.sh", "2026-01-31", "two words", "")
			tk, err := task.Parse(bytes.TrimSpace(out), 1<<20)
			if err != nil {
				t.Fatalf("the signed task does not parse: %v\n%s", err, out)
			}
			v := signature.NewVerifier(keys, signature.Options{Now: func() time.Time { return now }})
			id, err := v.Verify(context.Background(), tk)
			if err != nil || id != "web" {
				t.Fatalf("Verify = %q, %v, want web, nil\n%s", id, err, out)
			}
			if got := tk.Task.CmdArgs; len(got) != 3 || got[1] != "two words" || got[2] != "" {
				t.Errorf("cmd_args = %q", got)
			}
			// The same task altered in transit is refused: the check can fail.
			tk.Task.CmdArgs[0] = "2026-02-01"
			if _, err := v.Verify(context.Background(), tk); !errors.Is(err, signature.ErrForged) {
				t.Errorf("an altered task: %v, want ErrForged", err)
			}
		})
	}
}

func TestSignScriptMatchesTheREADMEExample(t *testing.T) {
	eachShell(t, func(t *testing.T, sh shell) { signMatchesREADME(t, sh) })
}

func signMatchesREADME(t *testing.T, sh shell) {
	_, file := keyDir(t, "web", []byte("hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM="))
	out := sh.sign(t, []string{"KEY_ID=web", "KEY_FILE=" + file, "TYPE=test", "TIMEOUT=3600", "TS=1764000000"},
		"101", "install.sh", "feature/homestead")
	want := `{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600},` +
		`"sig":{"key":"web","ts":1764000000,"mac":"40aa30eaeb2bfd75b2311405160ed21fcf368e23070050cb985c9f65f4f5791e"}}`
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("sign.sh =\n%s\nwant\n%s", got, want)
	}
}

func TestSignScriptRefusesWhatItCannotQuote(t *testing.T) { eachShell(t, signRefuses) }

func signRefuses(t *testing.T, sh shell) {
	for _, arg := range []string{`a"b`, `a\b`, "a\tb", "a\nb", "a\x01b", "a\x7fb"} {
		out, err := sh.cmd(t, []string{"SIGN=no"}, "sign.sh", "web-1", "x.sh", arg).CombinedOutput()
		if err == nil {
			t.Errorf("sign.sh accepted %q: %s", arg, out)
		}
	}
	// Unsigned, a plain argument passes and parses.
	out := sh.sign(t, []string{"SIGN=no"}, "web-1", "hello.sh", "x y")
	if tk, err := task.Parse(bytes.TrimSpace(out), 1<<20); err != nil || tk.Sig != nil || tk.Task.CmdArgs[0] != "x y" {
		t.Errorf("unsigned task %s: %+v, %v", out, tk, err)
	}
}

// composeRef matches a relative path in compose.yaml: a bind mount's source
// ("./submit.sh:/examples/submit.sh:ro") or a secret's file ("./web.key").
var composeRef = regexp.MustCompile(`(?:^|[\s"'\[])(\.\.?/[^\s:"',\]]+)`)

// TestComposeFilesExistOrAreDocumented: every local file compose.yaml
// names is in the repository, or README.md tells the operator how to
// generate it (a command writing examples/<name>), so compose never fails
// on a file nobody mentioned.
func TestComposeFilesExistOrAreDocumented(t *testing.T) {
	compose, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// A file git ignores here (the generated key) is not in the
	// repository even when this checkout has one.
	gitignore, err := os.ReadFile("../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	ignored := func(rel string) bool {
		for _, pat := range strings.Fields(string(gitignore)) {
			if ok, _ := filepath.Match(strings.TrimPrefix(pat, "/"), "examples/"+rel); ok {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(compose), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i] // comments name no file compose opens
		}
		for _, m := range composeRef.FindAllStringSubmatch(line, -1) {
			seen[filepath.Clean(m[1])] = true
		}
	}
	// The ones this test was written against: a regexp that stopped
	// matching would otherwise pass with nothing checked.
	for _, want := range []string{"redis/users.acl", "submit.sh", "sign.sh", "web.key"} {
		if !seen[want] {
			t.Errorf("compose.yaml no longer names ./%s (or the pattern misses it)", want)
		}
	}
	for rel := range seen {
		if strings.HasPrefix(rel, "..") {
			t.Errorf("compose.yaml names %s, outside examples/", rel)
			continue
		}
		if _, err := os.Stat(rel); err == nil && !ignored(rel) {
			continue
		}
		if !bytes.Contains(readme, []byte("> examples/"+rel+"\n")) {
			t.Errorf("compose.yaml names ./%s: it is not in examples/ and README.md does not say how to generate it (a command ending \"> examples/%s\")", rel, rel)
		}
	}
}
