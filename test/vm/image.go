package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/taskjob/task-job/test/vm/internal/proto"
)

// testArgs are the flags every test binary gets.
func testArgs(o options) []string {
	// Below the VM's limit, so a hung test dies with its goroutine dump
	// instead of being cut off by the harness.
	t := o.timeout - max(30*time.Second, o.timeout/10)
	if t < time.Minute {
		t = o.timeout
	}
	args := []string{"-test.v", "-test.count=1", "-test.timeout=" + t.String()}
	if o.run != "" {
		args = append(args, "-test.run="+o.run)
	}
	return args
}

func writeImage(dst string, o options, b *built, k *kernel, busybox string, applets []string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	c := newCpioWriter(f)

	c.CopyFile("init", 0o755, b.init)
	c.CharDev("dev/console", 0o600, 5, 1)
	for _, d := range []struct {
		name string
		perm uint32
	}{
		{"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"run", 0o755}, {"mnt", 0o755},
		{"root", 0o700}, {"tmp", 0o1777}, {"var/tmp", 0o1777}, {"usr/local/bin", 0o755},
		{"vmtest/out", 0o755},
	} {
		c.Dir(d.name, d.perm)
	}
	c.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
	c.File("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	c.File("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost vmtest\n::1\tlocalhost ip6-localhost ip6-loopback\n"))
	c.File("etc/hostname", 0o644, []byte("vmtest\n"))

	// Helper binaries first: an applet never hides one of them.
	taken := map[string]bool{}
	for _, p := range sortedKeys(b.extras) {
		c.CopyFile(p, 0o755, b.extras[p])
		taken[p] = true
	}
	c.CopyFile("bin/busybox", 0o755, busybox)
	taken["/bin/busybox"] = true
	for _, dir := range []string{"/bin", "/usr/bin", "/sbin", "/usr/sbin"} {
		for _, a := range applets {
			p := path.Join(dir, a)
			if !taken[p] {
				c.Symlink(p, "/bin/busybox")
				taken[p] = true
			}
		}
	}

	cfg := proto.Config{Args: testArgs(o), Tests: b.tests, Delegate: o.delegate}
	for _, m := range k.Modules {
		p := "/vmtest/modules/" + filepath.Base(m)
		c.CopyFile(p, 0o644, m)
		cfg.Modules = append(cfg.Modules, p)
	}
	cfg.Env = []string{
		"CI=true",
		"HOME=/root",
		"TMPDIR=/tmp",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"USER=root",
		"LOGNAME=root",
		"TERM=dumb",
		"TASK_JOB_VMTEST=1",
	}
	if b.initEnv != "" {
		cfg.Env = append(cfg.Env, b.initEnv)
	}
	for _, t := range b.tests {
		c.CopyFile(t.Bin, 0o755, b.local[t.Bin])
		c.Dir(t.Dir, 0o755)
		if src := b.dirs[t.Dir]; src != "" {
			if err := copyPkgDir(c, src, t.Dir); err != nil {
				return err
			}
		}
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	c.File(proto.ConfigPath, 0o644, js)
	if err := c.Close(); err != nil {
		return err
	}
	return f.Close()
}

// copyPkgDir copies a package's own files and its testdata tree, which tests
// read relative to their working directory.
func copyPkgDir(c *cpioWriter, src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			info, err := e.Info()
			if err != nil {
				return err
			}
			c.CopyFile(path.Join(dst, e.Name()), uint32(info.Mode().Perm()), filepath.Join(src, e.Name()))
		}
	}
	td := filepath.Join(src, "testdata")
	if _, err := os.Stat(td); err != nil {
		return nil
	}
	return filepath.WalkDir(td, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			c.Dir(name, uint32(info.Mode().Perm()))
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.Symlink(name, target)
		case e.Type().IsRegular():
			c.CopyFile(name, uint32(info.Mode().Perm()), p)
		}
		return nil
	})
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
