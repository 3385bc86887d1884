package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/test/vm/internal/proto"
)

var resultLine = regexp.MustCompile(`^result (\S+) exit=(-?\d+) time=(\S+) error=(".*")$`)

// boot runs the VM to the end and returns the init's report: from the
// results file it wrote over 9p, else from its console markers.
func boot(ctx context.Context, o options, qemu, kernelFile, image, outDir string, fails *failureLog) (*proto.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	args := []string{
		"-M", "pc", "-accel", "tcg", // the KVM here is not one a stock kernel can use
		"-smp", strconv.Itoa(o.cpus), "-m", strconv.Itoa(o.mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-kernel", kernelFile, "-initrd", image,
		"-append", "console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off",
		"-fsdev", "local,id=out,path=" + outDir + ",security_model=none",
		"-device", "virtio-9p-pci,fsdev=out,mount_tag=" + proto.MountTag,
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stderr = &prefixWriter{w: os.Stderr, prefix: "qemu: "}
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	logf("booting %s (%d MiB, %d CPUs, timeout %v)", filepath.Base(kernelFile), o.mem, o.cpus, o.timeout)
	if err := cmd.Start(); err != nil {
		return nil, err
	}

	var console proto.Report
	sawEnv, done := false, false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Printf("vm| %s\n", line)
		fails.see(line)
		switch parseMarker(&console, line) {
		case "env":
			sawEnv = true
			if console.EnvOK {
				logf("VM up in %v", time.Since(start).Round(time.Millisecond))
			}
		case "done":
			done = true
		}
	}
	werr := cmd.Wait()
	logf("VM ran %v", time.Since(start).Round(time.Millisecond))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &console, fmt.Errorf("the VM did not finish within %v; QEMU (pid %d) was killed", o.timeout, cmd.Process.Pid)
	}
	if ctx.Err() != nil {
		return &console, fmt.Errorf("interrupted; QEMU (pid %d) was killed", cmd.Process.Pid)
	}
	if werr != nil {
		return &console, fmt.Errorf("qemu: %v", werr)
	}
	if b, err := os.ReadFile(filepath.Join(outDir, proto.ResultFile)); err == nil {
		var rep proto.Report
		if err := json.Unmarshal(b, &rep); err == nil {
			return &rep, nil
		}
	}
	if !sawEnv || !done {
		return &console, errors.New("the VM stopped without reporting (see its console above)")
	}
	return &console, nil
}

// parseMarker records what a console line says about the run in rep and
// returns its kind: "env", "result", "done", or "" for other lines. The
// console is the report of last resort when the 9p results mount fails.
func parseMarker(rep *proto.Report, line string) string {
	rest, ok := strings.CutPrefix(line, proto.Marker)
	if !ok {
		return ""
	}
	switch {
	case strings.HasPrefix(rest, "env "):
		state, env, _ := strings.Cut(strings.TrimPrefix(rest, "env "), " ")
		rep.EnvOK, rep.Env = state == "ok", env
		return "env"
	case rest == "done":
		return "done"
	}
	m := resultLine.FindStringSubmatch(rest)
	if m == nil {
		return ""
	}
	exit, _ := strconv.Atoi(m[2])
	d, _ := time.ParseDuration(m[3])
	e, _ := strconv.Unquote(m[4])
	rep.Results = append(rep.Results, proto.Result{Pkg: m[1], Exit: exit, Duration: d, Error: e})
	return "result"
}

// testMessage is a test's own t.Error or t.Log line, told apart from the
// loggers' lines that tests route through t.Log by their leading timestamp.
var testMessage = regexp.MustCompile(`^\s+\S+_test\.go:\d+: `)
var loggerLine = regexp.MustCompile(`^\s+\S+_test\.go:\d+: \d{4}-\d\d-\d\dT`)

// failureLog keeps what the summary repeats about failed tests, so a
// failure reads at the end of a console of thousands of lines (CI shows
// only its tail): every "--- FAIL" line and the tests' latest messages.
type failureLog struct {
	failed   []string
	messages []string // the newest last, at most maxMessages
}

const maxMessages = 30

func (f *failureLog) see(line string) {
	switch {
	case strings.Contains(line, "--- FAIL: "), strings.HasPrefix(line, "panic: "):
		if len(f.failed) < 100 {
			f.failed = append(f.failed, strings.TrimSpace(line))
		}
	case testMessage.MatchString(line) && !loggerLine.MatchString(line):
		f.messages = append(f.messages, strings.TrimSpace(line))
		if len(f.messages) > maxMessages {
			f.messages = f.messages[1:]
		}
	}
}
