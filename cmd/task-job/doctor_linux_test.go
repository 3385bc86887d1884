package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/test/redisserver"
)

// The example passwords examples/redis/users.acl holds the hashes of.
const (
	aclExecutorPassword = "executor-CHANGE-ME"
	aclWebPassword      = "web-CHANGE-ME"
)

// badIDChars are the characters an executor_id may not hold.
var badIDChars = regexp.MustCompile(`[^A-Za-z0-9._:-]`)

// doctorHost is what the doctor tests share: a real redis-server with the
// shipped users.acl loaded, and a built sandbox helper.
type doctorHost struct {
	acl    *redisserver.Server
	helper string
}

func newDoctorHost(t *testing.T) *doctorHost {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the doctor tests check the sandbox as the executor meets it, which needs root; CI runs as root")
		}
		t.Skip("the doctor tests need root (the sandbox's trial task)")
	}
	b, err := os.ReadFile("../../examples/redis/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	// The shipped file turns the default user off; the test's own admin
	// connection (and the helper's readiness PING) needs it on.
	b = bytes.Replace(b, []byte("user default off\n"), []byte("user default on nopass ~* &* +@all\n"), 1)
	acl := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(acl, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := &doctorHost{acl: redisserver.Start(t, redisserver.Options{Args: []string{"--aclfile", acl}})}
	h.helper = filepath.Join(t.TempDir(), "task-job-init")
	build := exec.Command("go", "build", "-o", h.helper, "../task-job-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the sandbox helper: %v\n%s", err, out)
	}
	return h
}

// doctorSetup is one host layout: a config and the files it names, as an
// operator following the README makes them. Tests break one thing each.
type doctorSetup struct {
	dir    string
	config map[string]any
}

func (h *doctorHost) goodSetup(t *testing.T) *doctorSetup {
	t.Helper()
	dir := t.TempDir()
	s := &doctorSetup{dir: dir}
	mkdir := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(path, body string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := mkdir("cmd", 0o755)
	write(filepath.Join(cmd, "hello.sh"), "#!/bin/sh\necho hello\n", 0o755)
	keys := mkdir("keys", 0o700)
	write(filepath.Join(keys, "web"), "0123456789abcdef0123456789abcdef0123456789abcdef\n", 0o600)
	auditDir := mkdir("audit", 0o700)
	policy, err := os.ReadFile("../../packaging/files/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "policy.hcl"), string(policy), 0o644)
	write(filepath.Join(dir, "redis-password"), aclExecutorPassword+"\n", 0o600)

	// An audit log with a few records, as a previous run left it.
	al, err := audit.Open(filepath.Join(auditDir, "audit.jsonl"), audit.Options{Executor: "doctor"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{audit.EventStarted, audit.EventStopped} {
		if err := al.Append(audit.Record{Kind: audit.KindExecutor, Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}

	s.config = map[string]any{
		"redis_addr":          "redis://task-job@" + h.acl.Addr(),
		"redis_password_file": filepath.Join(dir, "redis-password"),
		"queue_name":          "queue_job_task", // the prefix users.acl grants
		"cmd_dir":             cmd,
		"executor_id":         badIDChars.ReplaceAllString(fmt.Sprintf("doctor-%d-%s", os.Getpid(), t.Name()), "_"),
		"isolation":           "on",
		"sandbox_init":        h.helper,
		"state_dir":           mkdir("state", 0o700),
		"policy_file":         filepath.Join(dir, "policy.hcl"),
		"audit_file":          filepath.Join(auditDir, "audit.jsonl"),
		"signing_keys_dir":    keys,
		"require_signatures":  true,
	}
	return s
}

// run runs "task-job doctor -json" on the setup's config and returns the
// exit code and the findings.
func (s *doctorSetup) run(t *testing.T) (int, []finding) {
	t.Helper()
	b, _ := json.MarshalIndent(s.config, "", "  ")
	path := filepath.Join(s.dir, "config.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return runDoctorJSON(t, path)
}

func runDoctorJSON(t *testing.T, path string) (int, []finding) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run([]string{"doctor", "-config=" + path, "-json"}, &stdout, &stderr)
	var fs []finding
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var f finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("doctor -json printed a line that is not a finding: %q: %v", sc.Text(), err)
		}
		fs = append(fs, f)
	}
	if stderr.Len() > 0 {
		t.Errorf("doctor wrote to stderr: %s", stderr.String())
	}
	return code, fs
}

func findingsText(fs []finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%-4s %-12s %s | fix: %s\n", f.Status, f.Check, f.Message, f.Fix)
	}
	return b.String()
}

// wantFinding fails unless a finding of status and check mentions want.
func wantFinding(t *testing.T, fs []finding, status, check, want string) {
	t.Helper()
	for _, f := range fs {
		if f.Status == status && f.Check == check && strings.Contains(f.Message, want) {
			return
		}
	}
	t.Errorf("no %s %s finding mentioning %q in:\n%s", status, check, want, findingsText(fs))
}

func TestDoctor(t *testing.T) {
	h := newDoctorHost(t)

	t.Run("good setup", func(t *testing.T) {
		s := h.goodSetup(t)
		code, fs := s.run(t)
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
		for _, f := range fs {
			if f.Status != statusOK {
				t.Errorf("a good setup gets only OK lines; got %s %s: %s", f.Status, f.Check, f.Message)
			}
		}
		// Every check spoke, and said what it found.
		for check, want := range map[string]string{
			"config": "loads", "policy": "1 rule", "cmd_dir": "passes the trust check",
			"redis": `as ACL user "task-job"`, "redis-acl": "may read and write its queue_job_task* keys",
			"executor_id": "is not in use", "isolation": "root", "cgroups": "cgroup v", "helper": h.helper,
			"namespaces": "can be created", "seccomp": "filter", "landlock": "a task may change files only beneath its own dirs", "sandbox": "a trial task ran",
			"audit": "2 records", "signatures": "required; 1 key", "server_port": "off",
		} {
			wantFinding(t, fs, statusOK, check, want)
		}
		if t.Failed() {
			t.Logf("findings:\n%s", findingsText(fs))
		}
	})

	// Each broken setup gets the named FAIL, and exit 1.
	broken := []struct {
		name         string
		breakIt      func(t *testing.T, s *doctorSetup)
		check, wants string
	}{
		{"config with a misspelt key", func(t *testing.T, s *doctorSetup) { s.config["queue_nam"] = "x" },
			"config", "queue_nam"},
		{"policy names a user this host lacks", func(t *testing.T, s *doctorSetup) {
			appendFile(t, s.config["policy_file"].(string), "\nrule \"deploy\" {\n  cmdline = \"hello.sh\"\n  user    = \"doctor-no-such-user\"\n}\n")
		}, "policy", `"doctor-no-such-user" does not exist`},
		{"cmd_dir writable by its group", func(t *testing.T, s *doctorSetup) { chmod(t, s.config["cmd_dir"].(string), 0o775) },
			"cmd_dir", "is refused"},
		{"wrong Redis password", func(t *testing.T, s *doctorSetup) {
			writeFile(t, s.config["redis_password_file"].(string), "not-the-password\n", 0o600)
		}, "redis", "WRONGPASS"},
		{"the container's Redis user, which cannot serve", func(t *testing.T, s *doctorSetup) {
			s.config["redis_addr"] = "redis://web@" + h.acl.Addr()
			writeFile(t, s.config["redis_password_file"].(string), aclWebPassword+"\n", 0o600)
		}, "redis-acl", "may not: PING; LLEN queue_job_task"},
		{"executor_id alive in Redis", func(t *testing.T, s *doctorSetup) {
			id := s.config["executor_id"].(string)
			admin := h.acl.Client(t)
			if err := admin.Set(context.Background(), "queue_job_task:executor:"+id, "host elsewhere pid 1", 10*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
		}, "executor_id", "is alive in Redis"},
		{"executor_id locked on this host", func(t *testing.T, s *doctorSetup) {
			l, err := executor.LockIdentity(stateDir, s.config["executor_id"].(string))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, "executor_id", "held"},
		{"helper writable by its group", func(t *testing.T, s *doctorSetup) {
			p := filepath.Join(s.dir, "task-job-init")
			b, err := os.ReadFile(h.helper)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, string(b), 0o775)
			s.config["sandbox_init"] = p
		}, "helper", "writable by no one else"},
		{"audit chain tampered with", func(t *testing.T, s *doctorSetup) {
			p := s.config["audit_file"].(string)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, strings.Replace(string(b), `"stopped"`, `"started"`, 1), 0o600)
		}, "audit", "breaks"},
		{"audit file held by another writer", func(t *testing.T, s *doctorSetup) {
			al, err := audit.Open(s.config["audit_file"].(string), audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { al.Close() })
		}, "audit", "has a writer already"},
		{"key file others may read", func(t *testing.T, s *doctorSetup) {
			chmod(t, filepath.Join(s.config["signing_keys_dir"].(string), "web"), 0o644)
		}, "signatures", "web"},
		// The config itself refuses it, so doctor reports it as the config's problem.
		{"server_port on every interface without tokens", func(t *testing.T, s *doctorSetup) { s.config["server_port"] = ":18080" },
			"config", "listens beyond loopback"},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			s := h.goodSetup(t)
			tc.breakIt(t, s)
			code, fs := s.run(t)
			if code != exitFailed {
				t.Errorf("exit %d, want %d", code, exitFailed)
			}
			wantFinding(t, fs, statusFail, tc.check, tc.wants)
			for _, f := range fs {
				if f.Status == statusFail && f.Fix == "" && f.Check != "audit" {
					t.Errorf("a FAIL without a fix: %s %s", f.Check, f.Message)
				}
				if f.Status == statusFail && f.Check != tc.check {
					t.Errorf("one thing broken, but another check fails too: %s %s", f.Check, f.Message)
				}
			}
		})
	}

	// The default user with no password and every command: it works, and
	// doctor says what is wrong with it.
	t.Run("Redis without ACL", func(t *testing.T) {
		open := redisserver.Start(t)
		s := h.goodSetup(t)
		s.config["redis_addr"] = open.Addr()
		delete(s.config, "redis_password_file")
		code, fs := s.run(t)
		if code != 0 {
			t.Errorf("exit %d, want 0 (warnings only):\n%s", code, findingsText(fs))
		}
		wantFinding(t, fs, statusOK, "redis", `as ACL user "default"`)
		wantFinding(t, fs, statusWarn, "redis", "asked for no password")
		wantFinding(t, fs, statusWarn, "redis-acl", "read keys outside queue_job_task*")
		wantFinding(t, fs, statusWarn, "redis-acl", "run administrative commands (CONFIG)")
	})

	// A real executor serving with this executor_id: a second one would
	// not start, and doctor says so.
	t.Run("live executor", func(t *testing.T) {
		open := redisserver.Start(t)
		startExecutor(t, open, "jobs", scripts(t), false)
		s := h.goodSetup(t)
		s.config["redis_addr"] = open.Addr()
		s.config["queue_name"] = "jobs"
		delete(s.config, "redis_password_file")
		// launchExecutor's id for this test and queue.
		s.config["executor_id"] = strings.NewReplacer("/", "-").Replace(fmt.Sprintf("cli-%d-%s-%s", os.Getpid(), t.Name(), "jobs"))
		code, fs := s.run(t)
		if code != exitFailed {
			t.Errorf("exit %d, want %d", code, exitFailed)
		}
		wantFinding(t, fs, statusFail, "executor_id", "held")
	})

	// Run by an unprivileged user, as an operator might first try it: the
	// sandbox is not checked, and "isolation": "on" fails.
	t.Run("as nobody", func(t *testing.T) {
		open := redisserver.Start(t)
		dir, err := os.MkdirTemp("", "task-job-doctor-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		chmod(t, dir, 0o755)
		// This test binary, where nobody may run it (go test's own
		// directory is root's only).
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "task-job")
		writeFile(t, bin, string(b), 0o755)
		for isolation, want := range map[string]int{"auto": exitOK, "on": exitFailed} {
			cfg, _ := json.Marshal(map[string]any{"redis_addr": open.Addr(), "cmd_dir": dir, "isolation": isolation,
				"executor_id": badIDChars.ReplaceAllString(fmt.Sprintf("doctor-%d-%s-%s", os.Getpid(), t.Name(), isolation), "_")})
			path := filepath.Join(dir, isolation+".json")
			writeFile(t, path, string(cfg), 0o644)
			cmd := exec.Command(bin, "doctor", "-config="+path, "-json")
			cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.Output()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			var fs []finding
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				var f finding
				if err := json.Unmarshal([]byte(line), &f); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				fs = append(fs, f)
			}
			if code != want {
				t.Errorf("isolation %s as nobody: exit %d, want %d:\n%s", isolation, code, want, findingsText(fs))
			}
			status := statusWarn
			if isolation == "on" {
				status = statusFail
			}
			wantFinding(t, fs, status, "isolation", "not root")
			for _, f := range fs {
				if f.Check == "cgroups" || f.Check == "sandbox" || f.Check == "helper" {
					t.Errorf("the sandbox is checked although it is not built: %s %s", f.Check, f.Message)
				}
			}
		}
	})

	// The text report: aligned lines, fixes under them, a verdict.
	t.Run("text", func(t *testing.T) {
		s := h.goodSetup(t)
		chmod(t, s.config["cmd_dir"].(string), 0o775)
		s.run(t) // writes config.json
		var stdout, stderr bytes.Buffer
		code := run([]string{"doctor", "-config=" + filepath.Join(s.dir, "config.json")}, &stdout, &stderr)
		out := stdout.String()
		for _, want := range []string{
			"task-job doctor: " + filepath.Join(s.dir, "config.json") + ", as root on linux/",
			"\nOK    config      ", "\nFAIL  cmd_dir     ", "\n                  fix: make cmd_dir",
			"\n1 failure, 0 warnings: the executor would refuse to start",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the report lacks %q:\n%s", want, out)
			}
		}
		if code != exitFailed {
			t.Errorf("exit %d, want %d", code, exitFailed)
		}
	})
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// The cgroup v2 analysis, on trees laid out as a v2 host's: this host is
// hybrid, so its own tree cannot show these cases (make vmtest boots a v2
// kernel for the sandbox itself).
func TestDoctorCgroupV2(t *testing.T) {
	root := t.TempDir()
	units := t.TempDir()
	etc := filepath.Join(units, "etc")
	lib := filepath.Join(units, "lib")
	defer func(d []string) { unitDirs = d }(unitDirs)
	unitDirs = []string{etc, lib}
	controllers := func(rel, list string) {
		dir := filepath.Join(root, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "cgroup.controllers"), list+"\n", 0o644)
	}
	unit := func(dir, name, body string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name), body, 0o644)
	}
	check := func(own string) (finding, bool) {
		t.Helper()
		d := &doctor{cfg: &config.Config{ExecutorID: "w1"}}
		foreign := d.checkCgroupV2(root, own)
		if len(d.findings) != 1 {
			t.Fatalf("want one finding, got %+v", d.findings)
		}
		return d.findings[0], foreign
	}
	want := func(own, status, msg string, foreign bool) {
		t.Helper()
		f, fo := check(own)
		if f.Status != status || !strings.Contains(f.Message, msg) || fo != foreign {
			t.Errorf("own %s: %s %q (foreign %v), want %s mentioning %q (foreign %v)", own, f.Status, f.Message, fo, status, msg, foreign)
		}
	}

	controllers("", "cpuset cpu io pids")
	want("/", statusWarn, "without memory", false)

	controllers("", "cpuset cpu io memory pids")
	want("/", statusOK, "at the root", false)

	controllers("system.slice/task-job.service", "cpu memory pids")
	want("/system.slice/task-job.service", statusOK, "delegated", false)
	want("/system.slice/task-job.service/executor", statusOK, "delegated", false)
	controllers("system.slice/task-job.service", "pids")
	want("/system.slice/task-job.service", statusWarn, "without memory, cpu", false)

	// From a shell: what the installed unit says decides.
	shell := "/user.slice/user-0.slice/session-1.scope"
	want(shell, statusWarn, "no task-job unit is installed", true)
	unit(lib, "task-job.service", "[Service]\nExecStart=/usr/bin/task-job\nDelegate=yes\n")
	want(shell, statusOK, "sets Delegate=yes", true)
	unit(filepath.Join(etc, "task-job.service.d"), "override.conf", "[Service]\nDelegate=no\n")
	want(shell, statusWarn, "does not set Delegate=yes", true)
	// Drop-ins apply in file-name order, whatever their directory...
	unit(filepath.Join(lib, "task-job.service.d"), "vendor.conf", "[Service]\nDelegate=yes\n")
	want(shell, statusOK, "sets Delegate=yes", true)
	// ...and a more local one masks the one of the same name.
	unit(filepath.Join(etc, "task-job.service.d"), "vendor.conf", "[Service]\nDelegate=no\n")
	want(shell, statusWarn, "does not set Delegate=yes", true)
}

// TestDoctorREADMETranscripts: the two doctor outputs the README shows are
// what doctor prints for the setups the README describes: as root on the
// packaged layout (the shipped config and policy, users.acl's executor
// user, one key, the policy's hello.sh installed), and as nobody with a password-less Redis, "isolation":
// "auto" and no policy, audit file or keys. Paths are the installed ones,
// so this test lays them out under a scratch root and strips it.
func TestDoctorREADMETranscripts(t *testing.T) {
	h := newDoctorHost(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	transcript := func(who string) string {
		t.Helper()
		head := "```\ntask-job doctor: /etc/task-job/config.json, as " + who + " on linux/amd64\n"
		i := bytes.Index(readme, []byte(head))
		if i < 0 {
			t.Fatalf("the README shows no doctor output as %s (a block starting %q)", who, head)
		}
		rest := readme[i+4:]
		return string(rest[:bytes.Index(rest, []byte("```"))])
	}

	root := t.TempDir()
	// nobody runs the binary and reads the config: every directory above
	// the scratch root is searchable, as /usr and /etc are.
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		chmod(t, d, 0o755)
	}
	at := func(p string) string { return filepath.Join(root, p) }
	for d, mode := range map[string]os.FileMode{
		"usr/bin": 0o755, "etc/task-job/keys": 0o700, "var/lib/task-job/cmd": 0o755,
		"var/lib/task-job/audit": 0o700, "var/lib/task-job/spool": 0o700, "run/task-job": 0o755,
	} {
		if err := os.MkdirAll(at(d), 0o755); err != nil {
			t.Fatal(err)
		}
		chmod(t, at(d), mode)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{self: "usr/bin/task-job", h.helper: "usr/bin/task-job-init"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, at(dst), string(b), 0o755)
	}
	policy, err := os.ReadFile("../../packaging/files/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, at("etc/task-job/policy.hcl"), string(policy), 0o644)
	writeFile(t, at("etc/task-job/redis-password"), aclExecutorPassword+"\n", 0o600)
	writeFile(t, at("etc/task-job/keys/web"), "0123456789abcdef0123456789abcdef0123456789abcdef\n", 0o600)
	writeFile(t, at("var/lib/task-job/cmd/hello.sh"), "#!/bin/sh\necho hello\n", 0o755) // the shipped policy's one rule

	id := badIDChars.ReplaceAllString(fmt.Sprintf("readme-%d", os.Getpid()), "_")
	shipped, err := os.ReadFile("../../packaging/files/config.json")
	if err != nil {
		t.Fatal(err)
	}
	// The operator's edits the README's "Enabling" asks for.
	cfg := string(shipped)
	for from, to := range map[string]string{
		`"redis_addr": "127.0.0.1:6379",`: fmt.Sprintf(`"redis_addr": "redis://task-job@%s", "executor_id": %q, "state_dir": "/run/task-job",`, h.acl.Addr(), id),
		`// "redis_password_file"`:        `"redis_password_file"`,
		`// "signing_keys_dir"`:           `"signing_keys_dir"`,
		`"require_signatures": false`:     `"require_signatures": true`,
	} {
		if !strings.Contains(cfg, from) {
			t.Fatalf("the shipped config.json has no %q", from)
		}
		cfg = strings.Replace(cfg, from, to, 1)
	}
	cfg = strings.ReplaceAll(cfg, `"/var/lib/task-job`, `"`+root+`/var/lib/task-job`)
	cfg = strings.ReplaceAll(cfg, `"/etc/task-job`, `"`+root+`/etc/task-job`)
	cfg = strings.ReplaceAll(cfg, `"/run/task-job`, `"`+root+`/run/task-job`)
	packaged := at("etc/task-job/config.json")
	writeFile(t, packaged, cfg, 0o644)

	// doctor runs the installed copy of this binary, as a process of its
	// own: the helper is found next to it, and nobody's run is nobody's.
	doctor := func(asNobody bool, config string) (string, int) {
		t.Helper()
		args := []string{at("usr/bin/task-job"), "doctor", "-config=" + config}
		if asNobody {
			args = append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	installed := func(out string, addr, readmeAddr string) string {
		return strings.NewReplacer(root, "", addr, readmeAddr, id, "host-a", "linux/"+runtime.GOARCH, "linux/amd64").Replace(out)
	}

	t.Run("root", func(t *testing.T) {
		out, code := doctor(false, packaged)
		if got, want := installed(out, h.acl.Addr(), "127.0.0.1:6379"), transcript("root"); code != 0 || got != want {
			t.Errorf("exit %d, want 0; doctor as root prints (scratch root stripped):\n%s\nthe README shows:\n%s", code, got, want)
		}
	})
	t.Run("nobody", func(t *testing.T) {
		open := redisserver.Start(t)
		body, _ := json.Marshal(map[string]any{"redis_addr": open.Addr(), "executor_id": id, "isolation": "auto",
			"cmd_dir": at("var/lib/task-job/cmd"), "state_dir": at("run/task-job")})
		plain := at("etc/task-job/nobody.json")
		writeFile(t, plain, string(body), 0o644)
		out, code := doctor(true, plain)
		got := strings.ReplaceAll(installed(out, open.Addr(), "127.0.0.1:6399"), "/etc/task-job/nobody.json", "/etc/task-job/config.json")
		if want := transcript("nobody"); code != 0 || got != want {
			t.Errorf("exit %d, want 0; doctor as nobody prints (scratch root stripped):\n%s\nthe README shows:\n%s", code, got, want)
		}
		// With the packaged config it stops at the password file, as the
		// README says after the transcript.
		out, code = doctor(true, packaged)
		if code != exitFailed || !regexp.MustCompile(`(?s)\nFAIL  config .*redis_password_file: [^\n]*permission denied`).MatchString(out) {
			t.Errorf("doctor as nobody on the packaged config: exit %d, want 1 and a FAIL config naming the password file\n%s", code, out)
		}
	})
}
