// Command vm runs Go test packages inside a throwaway QEMU VM whose kernel
// has a pure cgroup v2 hierarchy, as the production hosts have, whatever
// cgroup layout the machine running it has (CI's is hybrid).
//
//	go run ./test/vm [-pkgs ./sandbox/...] [-run regexp] [-keep] [-timeout 15m]
//
// It installs qemu-system-x86 if it is missing, downloads Debian's current
// linux-image-*-amd64 and busybox-static packages into the cache
// ($XDG_CACHE_HOME/task-job-vm, else ~/.cache/task-job-vm), builds every
// listed package that has tests with CGO_ENABLED=0 go test -c, packs them
// with a small init (./test/vm/init) into an initramfs and boots it under
// TCG emulation (no usable KVM here). The serial console streams to stdout
// with a "vm| " prefix. It exits non-zero if a package fails to build or its
// tests fail, or if the VM does not report in time.
//
// Inside the VM, as root, with CI=true, HOME=/root, TMPDIR=/tmp (a tmpfs)
// and the PATH set: cgroup2 is mounted at /sys/fs/cgroup as systemd mounts
// it, every controller is enabled in the root's cgroup.subtree_control, and
// the init checks that before any test runs. /bin, /usr/bin and /sbin hold
// a static busybox and its applets (sh, sleep, true, cat, setsid, ...).
// The root is a tmpfs, so pivot_root works. Each test binary runs in its
// package's directory (a copy of its files and testdata) with -test.v
// -test.count=1 -test.timeout; whatever it leaves running is killed before
// the next one. With -delegate each runs in a cgroup of its own below
// /vmtest.slice, as a systemd service with Delegate=yes does, instead of in
// the root cgroup.
//
// There is no Go toolchain in the VM. A package whose tests need helper
// programs lists them in a file vmtest.files in its directory: one `go build`
// target per line (./cmd/task-job-init, relative to the module root, or an
// import path; # starts a comment). Each is built statically and put in the
// VM as /bin/<last path element>. When /bin/task-job-init is among them,
// TASK_JOB_INIT=/bin/task-job-init is set for the tests.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskjob/task-job/test/vm/internal/proto"
)

const initPkg = "github.com/taskjob/task-job/test/vm/init"

type options struct {
	pkgs     []string
	run      string
	timeout  time.Duration
	keep     bool
	mem      int
	cpus     int
	bzImage  bool
	delegate bool
	cacheDir string
}

func main() {
	var o options
	pkgs := flag.String("pkgs", "./sandbox/...", "packages to test, space- or comma-separated `patterns`")
	flag.StringVar(&o.run, "run", "", "run only tests matching `regexp` (-test.run)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "limit for the VM run; each test binary gets -test.timeout a little below it")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (image, test binaries, per-package logs)")
	flag.IntVar(&o.mem, "mem", 2048, "VM memory in `MiB`")
	flag.IntVar(&o.cpus, "smp", 2, "VM CPUs")
	flag.BoolVar(&o.bzImage, "bzimage", false, "boot the compressed bzImage instead of the extracted vmlinux (slower)")
	flag.BoolVar(&o.delegate, "delegate", false, "run each test binary in a delegated child cgroup instead of the root cgroup")
	flag.StringVar(&o.cacheDir, "cache", "", "download cache `dir` (default $XDG_CACHE_HOME/task-job-vm or ~/.cache/task-job-vm)")
	flag.Parse()
	o.pkgs = strings.FieldsFunc(*pkgs, func(r rune) bool { return r == ',' || r == ' ' })
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "vmtest: unexpected arguments", flag.Args())
		os.Exit(2)
	}
	os.Exit(run(o))
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", a...)
}

// pkgResult is one package's line in the summary.
type pkgResult struct {
	pkg      string
	status   string // ok, FAIL, or "" while unknown
	detail   string
	duration time.Duration
}

func run(o options) int {
	begin := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		o.cacheDir = filepath.Join(base, "task-job-vm")
	}
	if err := os.MkdirAll(o.cacheDir, 0o755); err != nil {
		logf("%v", err)
		return 1
	}
	work, err := os.MkdirTemp("", "task-job-vm-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	if o.keep {
		logf("keeping the work directory %s", work)
	} else {
		defer os.RemoveAll(work)
	}

	// Fetch the VM's parts while the test binaries build.
	d := &deps{cacheDir: o.cacheDir, log: logf}
	type fetched struct {
		qemu    string
		k       *kernel
		busybox string
		applets []string
		err     error
	}
	fetchDone := make(chan fetched, 1)
	go func() {
		var f fetched
		defer func() { fetchDone <- f }()
		if f.qemu, f.err = d.qemu(); f.err != nil {
			return
		}
		if f.k, f.err = d.kernel(o.bzImage); f.err != nil {
			return
		}
		f.busybox, f.applets, f.err = d.busybox()
	}()

	buildStart := time.Now()
	b, results, err := build(ctx, o, work)
	if err != nil {
		logf("%v", err)
		<-fetchDone
		return 1
	}
	logf("built %d test binaries in %v", len(b.tests), time.Since(buildStart).Round(time.Millisecond))
	f := <-fetchDone
	if f.err != nil {
		logf("%v", f.err)
		return 1
	}
	logf("QEMU, kernel and busybox ready after %v", time.Since(buildStart).Round(time.Millisecond))

	code := 0
	var fails failureLog
	if len(b.tests) > 0 {
		image := filepath.Join(work, "initramfs.cpio")
		if err := writeImage(image, o, b, f.k, f.busybox, f.applets); err != nil {
			logf("image: %v", err)
			return 1
		}
		kernelFile := f.k.Vmlinux
		if kernelFile == "" {
			kernelFile = f.k.BzImage
		}
		outDir := filepath.Join(work, "out")
		if err := os.MkdirAll(outDir, 0o777); err != nil {
			logf("%v", err)
			return 1
		}
		rep, verr := boot(ctx, o, f.qemu, kernelFile, image, outDir, &fails)
		if verr != nil {
			logf("%v", verr)
			code = 1
		}
		if rep != nil && rep.Env != "" && !rep.EnvOK { // a VM that never reported is reported above
			logf("the VM is not the pure cgroup v2 host it must be: %s", rep.Env)
			code = 1
		}
		byPkg := map[string]proto.Result{}
		if rep != nil {
			for _, r := range rep.Results {
				byPkg[r.Pkg] = r
			}
		}
		for i := range results {
			r := &results[i]
			if r.status != "" {
				continue // failed to build, or has no tests
			}
			got, ok := byPkg[r.pkg]
			switch {
			case !ok:
				r.status, r.detail = "FAIL", "no report from the VM"
			case got.Exit == 0 && got.Error == "":
				r.status = "ok"
			case got.Error != "":
				r.status, r.detail = "FAIL", got.Error
			default:
				r.status, r.detail = "FAIL", "exit status "+strconv.Itoa(got.Exit)
			}
			r.duration = got.Duration
		}
	}

	passed, failed := 0, 0
	fmt.Println("vmtest summary:")
	for _, r := range results {
		switch r.status {
		case "ok":
			passed++
		case "FAIL":
			failed++
			code = 1
		}
		line := fmt.Sprintf("  %-4s %-50s %8s", r.status, r.pkg, r.duration.Round(10*time.Millisecond))
		if r.detail != "" {
			line += "  (" + r.detail + ")"
		}
		fmt.Println(strings.TrimRight(line, " "))
	}
	if failed > 0 && len(fails.failed) > 0 {
		fmt.Println("failed tests:")
		for _, l := range fails.failed {
			fmt.Println("  " + l)
		}
		fmt.Println("the tests' last messages:")
		for _, l := range fails.messages {
			fmt.Println("  " + l)
		}
	}
	fmt.Printf("vmtest: %d passed, %d failed\n", passed, failed)
	logf("total %v", time.Since(begin).Round(time.Millisecond))
	return code
}

// built is what goes into the VM besides busybox and the kernel modules.
type built struct {
	init   string
	tests  []proto.Test
	local  map[string]string // image path -> host path of test binaries
	dirs   map[string]string // image dir -> host package dir (files and testdata)
	extras map[string]string // image path -> host path of vmtest.files binaries
	// initEnv is set when a package asked for /bin/task-job-init.
	initEnv string
}

type listed struct {
	ImportPath   string
	Dir          string
	TestGoFiles  []string
	XTestGoFiles []string
	Error        *struct{ Err string }
}

func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	return cmd
}

func build(ctx context.Context, o options, work string) (*built, []pkgResult, error) {
	modOut, err := goCmd(ctx, "", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(modOut)) == "" || strings.TrimSpace(string(modOut)) == os.DevNull {
		return nil, nil, fmt.Errorf("run this inside the module (go env GOMOD: %q, %v)", modOut, err)
	}
	modRoot := filepath.Dir(strings.TrimSpace(string(modOut)))

	b := &built{local: map[string]string{}, dirs: map[string]string{}, extras: map[string]string{}}
	b.init = filepath.Join(work, "init")
	if out, err := goCmd(ctx, "", "build", "-trimpath", "-o", b.init, initPkg).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("building the init: %v\n%s", err, out)
	}

	cmd := goCmd(ctx, "", append([]string{"list", "-e", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles,Error"}, o.pkgs...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list %v: %v", o.pkgs, err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}

	var results []pkgResult
	needInit := false
	for i, p := range pkgs {
		r := pkgResult{pkg: p.ImportPath}
		if p.Error == nil && len(p.TestGoFiles)+len(p.XTestGoFiles) == 0 {
			logf("%s has no test files", p.ImportPath)
			continue
		}
		bin := filepath.Join(work, "tests", fmt.Sprintf("%d.test", i))
		t0 := time.Now()
		out, err := goCmd(ctx, "", "test", "-c", "-trimpath", "-o", bin, p.ImportPath).CombinedOutput()
		if err == nil {
			var extras map[string]string
			extras, err = buildExtras(ctx, modRoot, p.Dir, filepath.Join(work, "extra"))
			if err != nil {
				out = []byte(err.Error())
			}
			for k, v := range extras {
				b.extras[k] = v
				if k == "/bin/task-job-init" {
					needInit = true
				}
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s", out)
			r.status, r.detail, r.duration = "FAIL", "build failed", time.Since(t0)
			results = append(results, r)
			continue
		}
		if _, err := os.Stat(bin); err != nil {
			logf("%s has no tests to run", p.ImportPath)
			continue
		}
		name := fmt.Sprintf("%d", i)
		t := proto.Test{
			Pkg: p.ImportPath,
			Bin: "/vmtest/tests/" + name + ".test",
			Dir: "/vmtest/pkg/" + name,
			Log: name + ".log",
		}
		b.local[t.Bin] = bin
		if p.Dir != "" {
			b.dirs[t.Dir] = p.Dir
		}
		b.tests = append(b.tests, t)
		results = append(results, r)
	}
	if needInit {
		b.initEnv = "TASK_JOB_INIT=/bin/task-job-init"
	}
	return b, results, nil
}

// buildExtras builds the targets listed in dir/vmtest.files.
func buildExtras(ctx context.Context, modRoot, dir, outDir string) (map[string]string, error) {
	list, err := os.ReadFile(filepath.Join(dir, "vmtest.files"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	extras := map[string]string{}
	for _, line := range strings.Split(string(list), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		target := strings.TrimSpace(line)
		if target == "" {
			continue
		}
		name := filepath.Base(filepath.FromSlash(strings.TrimSuffix(target, "/...")))
		if !regexp.MustCompile(`^[A-Za-z0-9._-]+$`).MatchString(name) || strings.HasSuffix(target, "...") {
			return nil, fmt.Errorf("%s/vmtest.files: %q is not a single package", dir, target)
		}
		bin := filepath.Join(outDir, name)
		if out, err := goCmd(ctx, modRoot, "build", "-trimpath", "-o", bin, target).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s/vmtest.files: go build %s: %v\n%s", dir, target, err, out)
		}
		extras["/bin/"+name] = bin
	}
	return extras, nil
}

// prefixWriter prints complete lines with a prefix, holding a partial one.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := strings.TrimRight(string(p.buf[:i]), "\r")
		p.buf = p.buf[i+1:]
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, line)
	}
}
