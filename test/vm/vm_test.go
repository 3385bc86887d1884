package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/test/vm/internal/proto"
)

func TestCpioRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("streamed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	c.File("/etc/passwd", 0o644, []byte("root:x:0:0::/root:/bin/sh\n"))
	c.Dir("tmp", 0o1777)
	c.Symlink("/usr/bin/sh", "/bin/busybox")
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CopyFile("a/b/c/odd", 0o755, src)
	c.File("empty", 0o644, nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive is %d bytes, not 4-aligned", buf.Len())
	}
	ents, err := readCpio(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]cpioEntry{}
	for _, e := range ents {
		names = append(names, e.Name)
		byName[e.Name] = e
	}
	// Parents come before their children: the kernel does not make them.
	want := "etc etc/passwd tmp usr usr/bin usr/bin/sh dev dev/console a a/b a/b/c a/b/c/odd empty"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("entries\n got %s\nwant %s", got, want)
	}
	check := func(name string, mode uint32, data string) {
		t.Helper()
		e := byName[name]
		if e.Mode != mode || string(e.Data) != data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, e.Mode, e.Data, mode, data)
		}
	}
	check("etc/passwd", 0o100644, "root:x:0:0::/root:/bin/sh\n")
	check("tmp", 0o41777, "")
	check("usr/bin/sh", 0o120777, "/bin/busybox")
	check("a/b/c/odd", 0o100755, "streamed\n")
	check("etc", 0o40755, "")
	if e := byName["dev/console"]; e.Mode != 0o20600 || e.RMaj != 5 || e.RMin != 1 {
		t.Errorf("dev/console: %+v", e)
	}

	// The real cpio agrees, where it is installed.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		if got := strings.Join(strings.Fields(string(out)), " "); got != want {
			t.Errorf("cpio -t lists\n%s\nwant\n%s", got, want)
		}
	}
}

// fakeBzImage wraps payload the way the boot protocol header describes.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 3
	bz := make([]byte, (setupSects+1)*512+100)
	bz[0x1f1] = setupSects
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint32(bz[0x248:], 100)
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)))
	return append(bz, payload...)
}

func TestExtractVmlinux(t *testing.T) {
	elf := append([]byte("\x7fELF"), bytes.Repeat([]byte("kernel"), 1000)...)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(elf)
	zw.Close()
	z.Write([]byte{1, 2, 3, 4}) // the size the kernel build appends
	got, err := extractVmlinux(fakeBzImage(z.Bytes()))
	if err != nil || !bytes.Equal(got, elf) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	if _, err := extractVmlinux([]byte("MZ not a kernel")); err == nil {
		t.Error("a non-bzImage was accepted")
	}
	if _, err := extractVmlinux(fakeBzImage([]byte("garbage!"))); err == nil {
		t.Error("an unknown payload was accepted")
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: "vm| "}
	w.Write([]byte("one\r\ntw"))
	w.Write([]byte("o\nthree"))
	if got := out.String(); got != "vm| one\nvm| two\n" {
		t.Errorf("got %q", got)
	}
}

// The init mounts filesystems and powers off: outside a VM it must refuse
// to do anything.
func TestInitRefusesToRunOnAHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the init")
	}
	bin := filepath.Join(t.TempDir(), "init")
	if out, err := exec.Command("go", "build", "-o", bin, initPkg).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "not PID 1") {
		t.Fatalf("init on a host: %v, %q", err, out)
	}
}

func TestTestArgs(t *testing.T) {
	got := strings.Join(testArgs(options{timeout: 15 * 60e9, run: "TestX"}), " ")
	if got != "-test.v -test.count=1 -test.timeout=13m30s -test.run=TestX" {
		t.Errorf("got %s", got)
	}
}

func TestParseMarker(t *testing.T) {
	var rep proto.Report
	for _, l := range []struct{ line, kind string }{
		{"=== RUN   TestX", ""},
		{"@@vmtest env ok kernel 6.1.0; cgroup2 at /sys/fs/cgroup", "env"},
		{"@@vmtest run example.com/p", ""},
		{`@@vmtest result example.com/p exit=1 time=1.5s error=""`, "result"},
		{`@@vmtest result example.com/q exit=-1 time=2ms error="killed by \"killed\""`, "result"},
		{"@@vmtest done", "done"},
	} {
		if got := parseMarker(&rep, l.line); got != l.kind {
			t.Errorf("%q: kind %q, want %q", l.line, got, l.kind)
		}
	}
	want := proto.Report{Env: "kernel 6.1.0; cgroup2 at /sys/fs/cgroup", EnvOK: true, Results: []proto.Result{
		{Pkg: "example.com/p", Exit: 1, Duration: 1500 * time.Millisecond},
		{Pkg: "example.com/q", Exit: -1, Duration: 2 * time.Millisecond, Error: `killed by "killed"`},
	}}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("got %+v\nwant %+v", rep, want)
	}
}

// A failure must be repeated at the end: CI keeps only the console's tail.
func TestFailureLogKeepsFailuresNotLoggerLines(t *testing.T) {
	var f failureLog
	for _, l := range []string{
		"=== RUN   TestA",
		"    a_test.go:69: 2026-12-04T14:35:02.275Z [DEBUG] cgroup: removed",
		"    a_test.go:12: want 3, got 4",
		"--- FAIL: TestA (0.30s)",
		"--- PASS: TestB (0.30s)",
	} {
		f.see(l)
	}
	if len(f.failed) != 1 || f.failed[0] != "--- FAIL: TestA (0.30s)" {
		t.Errorf("failed = %q", f.failed)
	}
	if len(f.messages) != 1 || f.messages[0] != "a_test.go:12: want 3, got 4" {
		t.Errorf("messages = %q", f.messages)
	}
	for i := 0; i < 2*maxMessages; i++ {
		f.see("    a_test.go:1: m")
	}
	if len(f.messages) != maxMessages {
		t.Errorf("kept %d messages, want %d", len(f.messages), maxMessages)
	}
}
