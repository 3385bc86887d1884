package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/test/containershell"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

var bins struct {
	once  sync.Once
	dir   string
	paths []string
	err   error
}

func TestMain(m *testing.M) {
	code := func() int {
		defer func() {
			if bins.dir != "" {
				os.RemoveAll(bins.dir)
			}
		}()
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// linuxBinaries builds task-job and its helper once for all tests: the
// build is most of a test's time on a loaded machine.
func linuxBinaries(t *testing.T) []string {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "task-job-packaging-test-")
		if bins.err == nil {
			var st stamp
			if st, bins.err = stampFor("..", "v1.0.0"); bins.err == nil {
				bins.paths, bins.err = buildBinaries("..", bins.dir, "linux", defaultArch(), st)
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.paths
}

func opts(t *testing.T, version string) Options {
	return Options{Root: "..", Out: t.TempDir(), Version: version, OSes: []string{"linux"}, Arch: defaultArch()}
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":              "1.2.3",
		"1.2":                 "1.2",
		"v1.2.3-4-gabc1234":   "1.2.3+4.gabc1234",
		"v1.2.3-rc1":          "1.2.3+rc1",
		"9c37487":             "0.0.0+git9c37487",
		"9c37487-dirty":       "0.0.0+git9c37487.dirty",
		"dev":                 "0.0.0+gitdev",
		"v2.0.0-1-g9c3-dirty": "2.0.0+1.g9c3.dirty",
	} {
		if got := DebVersion(in); got != want {
			t.Errorf("DebVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTarball(t *testing.T) {
	o := opts(t, "v1.0.0")
	path, err := Tarball(o, "linux", linuxBinaries(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := "task-job-v1.0.0-linux-" + o.Arch + ".tar.gz"; filepath.Base(path) != want {
		t.Errorf("tarball %s, want %s", filepath.Base(path), want)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.Mode
	}
	top := "task-job-v1.0.0-linux-" + o.Arch + "/"
	want := map[string]int64{top: 0o755, top + "task-job": 0o755, top + "task-job-init": 0o755, top + "config.json": 0o644,
		top + "policy.hcl": 0o644, top + "task-job.service": 0o644, top + "README.md": 0o644}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tarball holds %v\nwant %v", got, want)
	}
}

// debEntry is one line of dpkg-deb -c: mode, owner and path.
type debEntry struct{ mode, owner string }

func debContents(t *testing.T, deb string) map[string]debEntry {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	}
	m := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[strings.TrimPrefix(strings.TrimSuffix(f[5], "/"), ".")] = debEntry{f[0], f[1]}
	}
	return m
}

func TestDebLayout(t *testing.T) {
	b := linuxBinaries(t)
	deb, err := Deb(opts(t, "v1.0.0"), b[0], b[1])
	if err != nil {
		t.Fatal(err)
	}
	got := debContents(t, deb)
	for path, mode := range map[string]string{
		"/usr/bin/task-job":                                "-rwxr-xr-x",
		"/usr/bin/task-job-init":                           "-rwxr-xr-x",
		"/etc/task-job/config.json":                        "-rw-r--r--",
		"/etc/task-job/policy.hcl":                         "-rw-r--r--",
		"/usr/lib/systemd/system/task-job.service":         "-rw-r--r--",
		"/usr/share/doc/task-job/README.md":                "-rw-r--r--",
		"/usr/share/doc/task-job/examples/redis/users.acl": "-rw-r--r--",
		"/usr/share/doc/task-job/examples/submit.sh":       "-rwxr-xr-x",
		"/usr/share/doc/task-job/examples/sign.sh":         "-rwxr-xr-x",
		"/var/lib/task-job":                                "drwxr-xr-x",
		"/var/lib/task-job/cmd":                            "drwxr-xr-x",
		"/var/lib/task-job/spool":                          "drwx------",
		"/var/lib/task-job/audit":                          "drwx------",
		BashCompletionPath:                                 "-rw-r--r--",
		ZshCompletionPath:                                  "-rw-r--r--",
	} {
		e, ok := got[path]
		if !ok {
			t.Errorf("the package has no %s", path)
			continue
		}
		if e.mode != mode || e.owner != "root/root" {
			t.Errorf("%s is %s %s, want %s root/root", path, e.mode, e.owner, mode)
		}
	}
	for path := range got {
		if strings.HasSuffix(path, ".go") {
			t.Errorf("the package holds a Go file: %s", path)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	conffiles, err := os.ReadFile(filepath.Join(dir, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(conffiles), "/etc/task-job/config.json\n/etc/task-job/policy.hcl\n"; got != want {
		t.Errorf("conffiles = %q, want %q", got, want)
	}
	// The shipped config is valid once its directories exist (config.Load
	// checks cmd_dir), and the shipped policy loads.
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	// The completion scripts are the packaged binary's own.
	for shell, p := range map[string]string{"bash": BashCompletionPath, "zsh": ZshCompletionPath} {
		want, err := exec.Command(filepath.Join(root, "usr/bin/task-job"), "completion", shell).Output()
		if got := readFile(t, filepath.Join(root, p)); err != nil || got != string(want) || !strings.Contains(got, "task-job") {
			t.Errorf("%s is not what task-job completion %s prints (%v):\n%s", p, shell, err, got)
		}
	}
	cfgPath := filepath.Join(root, "etc/task-job/config.json")
	writeFile(t, cfgPath, strings.ReplaceAll(readFile(t, cfgPath), `"/var/lib/task-job`, `"`+root+`/var/lib/task-job`), 0o644)
	cfg, _, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the shipped config.json does not load: %v", err)
	}
	if cfg.Isolation != config.IsolationOn || cfg.PolicyFile != "/etc/task-job/policy.hcl" || !strings.HasSuffix(cfg.AuditFile, "/var/lib/task-job/audit/audit.jsonl") {
		t.Errorf("shipped config: isolation %q, policy %q, audit %q", cfg.Isolation, cfg.PolicyFile, cfg.AuditFile)
	}
	out, err := exec.Command(filepath.Join(root, "usr/bin/task-job"), "policy", "check", filepath.Join(root, "etc/task-job/policy.hcl")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Errorf("the shipped policy does not check: %v\n%s", err, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("installing the package into a scratch root needs root; CI runs as root")
	}
	t.Skip("needs root: dpkg --root writes root-owned files and the executor's sandbox needs root")
}

// dpkg runs dpkg against the scratch root. Maintainer scripts run outside
// a chroot (the root has no shell) with DPKG_ROOT set, which they honour.
func dpkg(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
	cmd.Stdin = nil // a conffile prompt would fail rather than hang
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// unitValue returns the value of key in the unit file.
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatalf("the unit has no %s=", key)
	}
	return m[1]
}

// TestInstallUpgradeServe installs the package into a scratch root with
// dpkg, edits its config as an operator would, installs it again and
// upgrades it (the edits stay), checks the unit with systemd-analyze, and
// runs the executor from the installed paths, with the unit's ExecStart,
// capability bounding set and no_new_privs, against a real redis-server
// that enforces the example ACL file; a container-side submit.sh, signing
// its task in an Alpine container's shell, gets its output and its done;
// SIGTERM stops the executor.
func TestInstallUpgradeServe(t *testing.T) {
	needRoot(t)
	b := linuxBinaries(t)
	v1, err := Deb(opts(t, "v1.0.0"), b[0], b[1])
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Deb(opts(t, "v1.0.1"), b[0], b[1])
	if err != nil {
		t.Fatal(err)
	}

	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		writeFile(t, filepath.Join(root, f), "", 0o644)
	}
	// The task runs as nobody and enters cmd_dir below the test's temp dirs.
	for d := root; d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dpkg(t, root, "-i", v1)
	at := func(p string) string { return filepath.Join(root, p) }
	for path, mode := range map[string]os.FileMode{
		"usr/bin/task-job": 0o755, "usr/bin/task-job-init": 0o755, "etc/task-job/config.json": 0o644,
		"var/lib/task-job/cmd": os.ModeDir | 0o755, "var/lib/task-job/spool": os.ModeDir | 0o700,
		"var/lib/task-job/audit": os.ModeDir | 0o700,
	} {
		fi, err := os.Stat(at(path))
		if err != nil {
			t.Fatalf("after dpkg -i: %v", err)
		}
		if fi.Mode() != mode || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s is %v uid %d, want %v root", path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, mode)
		}
	}

	// The operator's edits: the executor's Redis password file, signed
	// submissions required, and a rule of their own.
	cfgPath, polPath := at("etc/task-job/config.json"), at("etc/task-job/policy.hcl")
	cfg := readFile(t, cfgPath)
	for from, to := range map[string]string{
		`// "redis_password_file"`:    `"redis_password_file"`,
		`// "signing_keys_dir"`:       `"signing_keys_dir"`,
		`"require_signatures": false`: `"require_signatures": true`,
		`"sandbox_memory": "512MiB"`:  `"sandbox_memory": "256MiB"`,
	} {
		if !strings.Contains(cfg, from) {
			t.Fatalf("the installed config.json has no %q", from)
		}
		cfg = strings.Replace(cfg, from, to, 1)
	}
	writeFile(t, cfgPath, cfg, 0o644)
	pol := readFile(t, polPath) + `
rule "greet" {
  cmdline = "greet.sh"
  args    = ["[a-z]+"]
  keys    = ["web"]
}
`
	writeFile(t, polPath, pol, 0o644)

	dpkg(t, root, "-i", v1) // installed twice
	dpkg(t, root, "-i", v2) // upgraded
	if got := readFile(t, cfgPath); got != cfg {
		t.Errorf("config.json after reinstall and upgrade:\n%s\nwant the operator's:\n%s", got, cfg)
	}
	if got := readFile(t, polPath); got != pol {
		t.Errorf("policy.hcl after reinstall and upgrade lost the operator's rule:\n%s", got)
	}
	if st := dpkg(t, root, "-s", "task-job"); !strings.Contains(st, "Version: 1.0.1\n") || !strings.Contains(st, "install ok installed") {
		t.Errorf("dpkg -s after the upgrade:\n%s", st)
	}

	unit := readFile(t, at(strings.TrimPrefix(UnitPath, "/")))
	t.Run("systemd-analyze verify", func(t *testing.T) { verifyUnit(t, root) })
	t.Run("serve", func(t *testing.T) { serveInstalled(t, root, unit) })
}

// verifyUnit runs systemd-analyze verify on the installed unit. It checks
// the unit's commands exist, so the scratch root gets the host's targets
// and kill (ExecReload); any warning, not only an error, fails the test.
func verifyUnit(t *testing.T, root string) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed (apt-get install systemd; make deps installs it): %v", err)
	}
	targets, _ := filepath.Glob("/usr/lib/systemd/system/*.target")
	if len(targets) == 0 {
		targets, _ = filepath.Glob("/lib/systemd/system/*.target")
	}
	dst := filepath.Join(root, "usr/lib/systemd/system")
	for _, tg := range targets {
		if b, err := os.ReadFile(tg); err == nil {
			writeFile(t, filepath.Join(dst, filepath.Base(tg)), string(b), 0o644)
		}
	}
	kill, err := os.ReadFile("/bin/kill")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "bin/kill"), string(kill), 0o755)
	out, err := exec.Command(sa, "verify", "--root="+root, "task-job.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func serveInstalled(t *testing.T, root, unit string) {
	at := func(p string) string { return filepath.Join(root, p) }
	// The Redis enforces the example ACL file; the default user stays on
	// only for this test's own checks.
	acl, err := os.ReadFile("../examples/redis/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	aclPath := filepath.Join(t.TempDir(), "users.acl")
	writeFile(t, aclPath, strings.Replace(string(acl), "user default off\n", "user default on nopass ~* &* +@all\n", 1), 0o600)
	rs := redisserver.Start(t, redisserver.Options{Args: []string{"--aclfile", aclPath}})

	writeFile(t, at("etc/task-job/redis-password"), "executor-CHANGE-ME\n", 0o600)
	if err := os.Mkdir(at("etc/task-job/keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	secret := "hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM=\n"
	writeFile(t, at("etc/task-job/keys/web"), secret, 0o600)
	writeFile(t, at("var/lib/task-job/cmd/greet.sh"), "#!/bin/sh\necho \"hello $1 from $(id -un)\"\necho done-greeting >&2\n", 0o755)

	// The installed config, pointed at the scratch root and this test's
	// Redis, with an executor_id of its own.
	id := fmt.Sprintf("pkg-%d-%s", os.Getpid(), "TestInstallUpgradeServe")
	cfg := readFile(t, at("etc/task-job/config.json"))
	cfg = strings.ReplaceAll(cfg, `"/var/lib/task-job`, `"`+root+`/var/lib/task-job`)
	cfg = strings.ReplaceAll(cfg, `"/etc/task-job`, `"`+root+`/etc/task-job`)
	// The executor connects as the ACL user users.acl gives it.
	cfg = strings.Replace(cfg, `"redis_addr": "127.0.0.1:6379",`,
		fmt.Sprintf(`"redis_addr": %q, "executor_id": %q, "shutdown_grace": "5s",`, "redis://task-job@"+rs.Addr(), id), 1)
	testCfg := at("etc/task-job/test-config.json")
	writeFile(t, testCfg, cfg, 0o644)

	// doctor, from the installed binary, finds nothing to fix: the example
	// ACL user is enough for the executor and no more.
	doctor := func() (string, error) {
		out, err := exec.Command(at("usr/bin/task-job"), "doctor", "-config="+testCfg).CombinedOutput()
		return string(out), err
	}
	if out, err := doctor(); err != nil || strings.Contains(out, "\nFAIL") || !strings.Contains(out, `as ACL user "task-job"`) {
		t.Errorf("doctor on the installed config: %v\n%s", err, out)
	}

	// The unit's ExecStart, its capability bounding set and no_new_privs,
	// applied by setpriv as systemd would apply them.
	exec0 := strings.Fields(unitValue(t, unit, "ExecStart"))
	if len(exec0) != 2 || exec0[1] != "-config=/etc/task-job/config.json" {
		t.Fatalf("ExecStart is %q; this test knows only the binary and -config", exec0)
	}
	var caps []string
	for _, c := range strings.Fields(unitValue(t, unit, "CapabilityBoundingSet")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	args := []string{"--bounding-set", "-all," + strings.Join(caps, ",")}
	if unitValue(t, unit, "NoNewPrivileges") == "yes" {
		args = append(args, "--no-new-privs")
	}
	args = append(args, filepath.Join(root, exec0[0]), "-config="+testCfg)
	cmd := exec.Command("setpriv", args...)
	var log observe.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill() // the executor this test started, by its pid
			<-exited
		}
	})
	observe.Eventually(t, "the installed executor serving (or exiting)", 90*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
			return strings.Contains(log.String(), "serving")
		}
	})
	if !strings.Contains(log.String(), "serving") {
		t.Fatalf("the installed executor did not start serving:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "sandbox: on") || !strings.Contains(log.String(), "setup by "+at("usr/bin/task-job-init")) {
		t.Errorf("the installed executor does not use the sandbox with the installed helper:\n%s", log.String())
	}

	// A second executor with this config would not start, and doctor says why.
	if out, err := doctor(); err == nil || !strings.Contains(out, "\nFAIL  executor_id") {
		t.Errorf("doctor beside the running executor: %v (want exit 1 and an executor_id FAIL)\n%s", err, out)
	}

	// The container side: submit.sh as the ACL user web, signing its task,
	// in the shell of the compose file's Alpine containers (busybox, with
	// redis-cli and openssl the only other programs).
	container := func(env ...string) []string {
		return containershell.Env(t, append(os.Environ(), env...), "redis-cli", "openssl")
	}
	sub := containershell.Command(container("REDIS_HOST=127.0.0.1", fmt.Sprintf("REDIS_PORT=%d", rs.Port()), "REDIS_USER=web",
		"REDISCLI_AUTH=web-CHANGE-ME", "KEY_ID=web", "KEY_FILE="+at("etc/task-job/keys/web"), "WAIT=60"), "../examples/submit.sh", "greet.sh", "world")
	out, err := sub.CombinedOutput()
	if err != nil {
		t.Fatalf("submit.sh: %v\n%s\nexecutor log:\n%s", err, out, log.String())
	}
	for _, want := range []string{`"data":"hello world from nobody"`, `"msg_type":"stderr","data":"done-greeting"`,
		`"status":"succeeded"`, `"isolation":"sandbox"`, `"rule":"greet"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("submit.sh output lacks %s:\n%s", want, out)
		}
	}
	// Unsigned, the same task is dropped: require_signatures, kept through
	// the upgrade, is in force. A message no key vouches for claims no id
	// and gets no done (so a forger cannot answer for another's id); the
	// executor logs and audits the drop.
	sub = containershell.Command(container("REDIS_HOST=127.0.0.1", fmt.Sprintf("REDIS_PORT=%d", rs.Port()), "REDIS_USER=web",
		"REDISCLI_AUTH=web-CHANGE-ME", "WAIT=3"), "../examples/submit.sh", "greet.sh", "world")
	if out, err := sub.CombinedOutput(); err == nil || strings.Contains(string(out), `"status":"succeeded"`) {
		t.Errorf("an unsigned task was answered or ran: %v\n%s", err, out)
	}
	observe.Eventually(t, "the executor logging the unsigned task's drop", 10*time.Second, func() bool {
		return strings.Contains(log.String(), "no signing key vouches for")
	})

	admin := rs.Client(t)
	ctx := context.Background()
	if ok, _ := admin.SIsMember(ctx, "queue_job_task:executors", id).Result(); !ok {
		t.Errorf("executor %s is not registered", id)
	}
	stopped = true
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("after SIGTERM the executor exited with %v\n%s", exitErr, log.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the executor did not stop within 60 s of SIGTERM\n%s", log.String())
	}
	if ok, _ := admin.SIsMember(ctx, "queue_job_task:executors", id).Result(); ok {
		t.Errorf("executor %s is still registered after SIGTERM", id)
	}
	if fi, err := os.Stat(at("var/lib/task-job/audit/audit.jsonl")); err != nil || fi.Size() == 0 {
		t.Errorf("no audit log at the installed path: %v", err)
	}
	if !slices.ContainsFunc(strings.Split(log.String(), "\n"), func(l string) bool { return strings.Contains(l, id) }) {
		t.Errorf("the log never names executor %s", id)
	}
}

// TestExampleFilesLeaveOutKeys: the signing key the examples' README has the
// operator generate in examples/ stays out of the package, and so do the Go
// tests; everything else there ships.
func TestExampleFilesLeaveOutKeys(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"examples/submit.sh", "examples/redis/users.acl", "examples/web.key", "examples/examples_test.go"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, f), "x", 0o600)
	}
	got, err := exampleFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"redis/users.acl", "submit.sh"}; !slices.Equal(got, want) {
		t.Errorf("exampleFiles = %q, want %q", got, want)
	}
}

// gitOut runs git in the repository, skipping the test where there is no
// git checkout to read (a source tarball).
func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = ".."
	b, err := cmd.Output()
	if err != nil {
		t.Skipf("git %v: %v (not a git checkout?)", args, err)
	}
	return strings.TrimSpace(string(b))
}

// TestBinaryVersionShowsCommit: the packaged binary's task-job version
// names the commit it was built from and a build date, the commit's time
// (SOURCE_DATE_EPOCH unset), as a build.sh binary does.
func TestBinaryVersionShowsCommit(t *testing.T) {
	if os.Getenv("SOURCE_DATE_EPOCH") != "" {
		t.Skip("SOURCE_DATE_EPOCH is set: the build date is not the commit's")
	}
	commit := gitOut(t, "rev-parse", "HEAD")
	sec, err := strconv.ParseInt(gitOut(t, "log", "-1", "--format=%ct", "HEAD"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	b := linuxBinaries(t)
	out, err := exec.Command(b[0], "version").CombinedOutput()
	if err != nil {
		t.Fatalf("task-job version: %v\n%s", err, out)
	}
	for _, want := range []string{
		"task-job v1.0.0\n",
		"\ncommit:  " + commit,
		"\nbuilt:   " + time.Unix(sec, 0).UTC().Format("2006-01-02T15:04:05Z") + "\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("task-job version lacks %q:\n%s", want, out)
		}
	}
}

// TestStampIsReproducible: the build date comes from SOURCE_DATE_EPOCH when
// set, else from the commit, never from the clock; a bad epoch is refused.
func TestStampIsReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1764000000")
	st, err := stampFor("..", "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v1.2.3" || st.BuildDate != "2025-11-24T16:00:00Z" {
		t.Errorf("stamp with SOURCE_DATE_EPOCH = %+v", st)
	}
	for _, f := range []string{"-X main.version=v1.2.3", "-X main.commit=" + st.Commit, "-X main.buildDate=2025-11-24T16:00:00Z"} {
		if !strings.Contains(st.ldflags(), f) {
			t.Errorf("ldflags %q lack %q", st.ldflags(), f)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := stampFor("..", "v1.2.3"); err == nil {
		t.Error("SOURCE_DATE_EPOCH=yesterday was accepted")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	a, err := stampFor("..", "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a clock-based date would change
	if b, _ := stampFor("..", "v1.2.3"); a != b {
		t.Errorf("two stamps of one commit differ: %+v, %+v", a, b)
	}
}

// TestBuildEveryOS: `make package` for every OS the project supports
// gives a tarball (a zip for Windows) holding that OS's binary, the
// commented config, the policy and the README; Linux also gets the .deb,
// its helper and the unit.
func TestBuildEveryOS(t *testing.T) {
	o := opts(t, "v1.2.3")
	o.OSes = []string{"linux", "windows", "darwin", "freebsd"}
	made, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, p := range made {
		got[filepath.Base(p)] = archiveNames(t, p)
	}
	want := map[string][]string{
		"task-job-v1.2.3-linux-" + o.Arch + ".tar.gz":   {"task-job", "task-job-init", "config.json", "policy.hcl", "task-job.service", "README.md"},
		"task-job-v1.2.3-windows-" + o.Arch + ".zip":    {"task-job.exe", "config.json", "policy.hcl", "README.md"},
		"task-job-v1.2.3-darwin-" + o.Arch + ".tar.gz":  {"task-job", "config.json", "policy.hcl", "README.md"},
		"task-job-v1.2.3-freebsd-" + o.Arch + ".tar.gz": {"task-job", "config.json", "policy.hcl", "README.md"},
	}
	for name, files := range want {
		if fmt.Sprint(got[name]) != fmt.Sprint(files) {
			t.Errorf("%s holds %v, want %v", name, got[name], files)
		}
	}
	debs := 0
	for name := range got {
		if strings.HasSuffix(name, ".deb") {
			debs++
		} else if want[name] == nil {
			t.Errorf("unexpected artifact %s", name)
		}
	}
	if debs != 1 || len(made) != 5 {
		t.Errorf("made %v: want four archives and one .deb", made)
	}
}

// archiveNames lists the files of a .tar.gz or .zip below its top
// directory, in order; a .deb lists nothing.
func archiveNames(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	switch {
	case strings.HasSuffix(path, ".zip"):
		zr, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			names = append(names, f.Name[strings.IndexByte(f.Name, '/')+1:])
		}
	case strings.HasSuffix(path, ".tar.gz"):
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(gz)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeDir {
				names = append(names, h.Name[strings.IndexByte(h.Name, '/')+1:])
			}
		}
	}
	return names
}
