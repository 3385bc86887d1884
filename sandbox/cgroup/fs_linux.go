package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroupfs files are read and written with bare syscalls: os.File would try
// to register each one with the netpoller, which costs more than the write.

// writeFile writes s to a cgroupfs file in one write(2), which is how the
// kernel wants a value.
func writeFile(path, s string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(s))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", s, path, err)
	}
	return nil
}

// readFile reads a whole cgroupfs file.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

func exists(path string) bool {
	return unix.Access(path, unix.F_OK) == nil
}

// readInt reads a file holding one decimal number.
func readInt(path string) (int64, error) {
	b, err := readFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s does not hold a number: %w", path, err)
	}
	return v, nil
}

// readKey returns the value of "key value" in a flat-keyed file such as
// cpu.stat, memory.events or memory.oom_control; found is false when the
// kernel does not write that key.
func readKey(path, key string) (v uint64, found bool, err error) {
	b, err := readFile(path)
	if err != nil {
		return 0, false, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		k, val, ok := bytes.Cut(line, []byte(" "))
		if !ok || string(k) != key {
			continue
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %q is not a number: %w", path, line, err)
		}
		return v, true, nil
	}
	return 0, false, nil
}

// readPids lists the pids in a cgroup.procs file.
func readPids(path string) ([]int, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var pids []int
	for f := range bytes.FieldsSeq(b) {
		pid, err := strconv.Atoi(string(f))
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a pid: %w", path, f, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// subdirs lists the child groups of a cgroup directory. cgroupfs gives a
// directory 2 + (number of child directories) links, so the common case, no
// child group, costs one stat instead of reading a directory of ~30 files.
func subdirs(dir string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Nlink <= 2 {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// treePids lists the pids in a group and in every group below it: a task
// running as root may have made child groups of its own.
func treePids(dir string) ([]int, error) {
	pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	subs, err := subdirs(dir)
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		p, err := treePids(s)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		pids = append(pids, p...)
	}
	return pids, nil
}

// removeTree removes a group and the groups below it, deepest first. A
// group whose last process has just exited can answer EBUSY for a moment, so
// that is retried briefly. A directory already gone is not an error.
func removeTree(dir string) error {
	subs, err := subdirs(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, s := range subs {
		if err := removeTree(s); err != nil {
			return err
		}
	}
	delay := 100 * time.Microsecond
	for i := 0; ; i++ {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || i == 12 {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}
