//go:build unix

package jail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChrootChecksInterpreters is the chroot attack: in chroot mode
// "bash victim.sh" runs cmd_dir/bin/bash, which a nobody task had planted.
// Every program the kernel would load there — the interpreter word's, a #!
// line's, an ELF loader — must pass rule 5 like the program itself.
func TestChrootChecksInterpreters(t *testing.T) {
	if !needRoot(t) {
		t.Skip("needs root to make files owned by another uid")
	}
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chmod(t, root, 0o755)
	dir := filepath.Join(root, "cmd")
	write := func(name, body string, mode os.FileMode, uid int) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		chmod(t, p, mode)
		lchown(t, p, uid)
	}
	write("victim.sh", "echo victim\n", 0o644, 0)
	write("bin/sh", "not a script, not ELF\n", 0o755, 0) // trusted
	if err := os.Mkdir(filepath.Join(dir, "planted"), 0o755); err != nil {
		t.Fatal(err)
	}
	lchown(t, filepath.Join(dir, "planted"), nobody)
	write("planted/bash", "#!/bin/sh\n", 0o755, nobody)
	write("evil", "anything\n", 0o755, nobody)
	write("uses-evil.sh", "#!/evil\n", 0o755, 0)
	write("uses-sh.sh", "#!/bin/sh -e\necho ok\n", 0o755, 0)
	write("no-exec-bit.sh", "echo ok\n", 0o644, 0)
	self, err := os.ReadFile("/bin/true") // dynamically linked: its loader is not in cmd_dir
	if err != nil {
		t.Fatal(err)
	}
	write("elf", string(self), 0o755, 0)

	j, err := New(Options{Dir: dir, Chroot: true, Interpreters: map[string]string{"bash": "/planted/bash", "sh": "/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cmdline, path, refusal string
	}{
		{"bash victim.sh", "", "in chroot mode \"bash\" runs /planted/bash inside cmd_dir"},
		{"sh victim.sh", dir + "/bin/sh", ""},
		{"uses-evil.sh", "", "is run by /evil"},
		{"uses-sh.sh", dir + "/uses-sh.sh", ""},
		{"no-exec-bit.sh", "", "\"bash\" runs /planted/bash"},
		{"elf", "", "is run by /lib"},
	}
	for _, tt := range tests {
		cmd, err := j.Resolve(tt.cmdline, nil)
		switch {
		case tt.refusal != "":
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.refusal) {
				t.Errorf("%q: %v, want a refusal containing %q", tt.cmdline, err, tt.refusal)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.cmdline, err)
		case cmd.Path != tt.path:
			t.Errorf("%q runs %s, want %s", tt.cmdline, cmd.Path, tt.path)
		}
	}
	if _, err := j.ResolveSystem("/usr/bin/id", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("a system program in chroot mode: %v, want a refusal", err)
	}

	// Outside chroot mode the interpreter is the host's, as before.
	j2, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if cmd, err := j2.Resolve("bash victim.sh", nil); err != nil || cmd.Path != "/bin/bash" {
		t.Errorf("without chroot: %+v, %v; want /bin/bash", cmd, err)
	}
	// A cmd_dir others may write (sticky or not) cannot hold a chroot.
	chmod(t, dir, 0o1777)
	if _, err := New(Options{Dir: dir, Chroot: true}); err == nil {
		t.Error("chroot mode accepted a world-writable cmd_dir")
	}
}

// TestHostLoadersAreChecked: outside chroot mode too, every program the
// kernel loads passes rule 5, here from /: a configured interpreter, a
// script's #! line and an ELF loader. A #! naming a file another user
// planted in a sticky directory (a shared /tmp) would otherwise run as
// whatever user the task's rule names.
func TestHostLoadersAreChecked(t *testing.T) {
	if !needRoot(t) {
		t.Skip("needs root to make files owned by another uid")
	}
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chmod(t, root, 0o755)
	dir := filepath.Join(root, "cmd")
	write := func(p, body string, mode os.FileMode, uid int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		chmod(t, p, mode)
		lchown(t, p, uid)
	}
	shared := filepath.Join(root, "shared") // like /tmp: anyone may add files
	open := filepath.Join(root, "open")     // anyone may swap files
	for _, d := range []string{shared, open} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chmod(t, shared, 0o1777)
	chmod(t, open, 0o777)
	write(shared+"/planted", "#!/bin/sh\n", 0o755, nobody)
	write(shared+"/trusted", "#!/bin/sh\n", 0o755, 0)
	write(open+"/interp", "#!/bin/sh\n", 0o755, 0)
	if err := os.Symlink("/bin/sh", shared+"/sh-link"); err != nil {
		t.Fatal(err)
	}
	lchown(t, shared+"/sh-link", nobody) // its owner may point it elsewhere at any time
	write(dir+"/victim.sh", "echo victim\n", 0o644, 0)
	write(dir+"/uses-planted.sh", "#!"+shared+"/planted\n", 0o755, 0)
	write(dir+"/uses-open.sh", "#!"+open+"/interp -e\n", 0o755, 0)
	write(dir+"/uses-link.sh", "#!"+shared+"/sh-link\n", 0o755, 0)
	write(dir+"/uses-trusted.sh", "#!"+shared+"/trusted\n", 0o755, 0)
	write(dir+"/uses-sh.sh", "#!/bin/sh -e\necho ok\n", 0o755, 0)
	write(dir+"/uses-env.sh", "#!/usr/bin/env sh\necho ok\n", 0o755, 0)
	self, err := os.ReadFile("/bin/true") // dynamically linked: its loader is the host's
	if err != nil {
		t.Fatal(err)
	}
	write(dir+"/elf", string(self), 0o755, 0)

	j, err := New(Options{Dir: dir, Interpreters: map[string]string{
		"bash": "/bin/bash", "sh": "/bin/sh", "planted": shared + "/planted", "linked": shared + "/sh-link", "open": open + "/interp",
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ cmdline, path, refusal string }{
		{"bash victim.sh", "/bin/bash", ""},
		{"sh victim.sh", "/bin/sh", ""},
		{"planted victim.sh", "", `interpreter "planted" (` + shared + `/planted) cannot be trusted: "` + shared + `/planted" is owned by uid 65534`},
		{"linked victim.sh", "", "symlink " + shared + "/sh-link is owned by uid 65534"},
		{"open victim.sh", "", "directory " + open + " is writable by other users"},
		{"uses-planted.sh", "", "is run by " + shared + "/planted, which on the host cannot be trusted"},
		{"uses-open.sh", "", "directory " + open + " is writable by other users"},
		{"uses-link.sh", "", "symlink " + shared + "/sh-link is owned by uid 65534"},
		{"uses-trusted.sh", dir + "/uses-trusted.sh", ""},
		{"uses-sh.sh", dir + "/uses-sh.sh", ""},
		{"uses-env.sh", dir + "/uses-env.sh", ""},
		{"elf", dir + "/elf", ""},
	}
	for _, tt := range tests {
		cmd, err := j.Resolve(tt.cmdline, nil)
		switch {
		case tt.refusal != "":
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.refusal) {
				t.Errorf("%q: %v, want a refusal containing %q", tt.cmdline, err, tt.refusal)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.cmdline, err)
		case cmd.Path != tt.path:
			t.Errorf("%q runs %s, want %s", tt.cmdline, cmd.Path, tt.path)
		}
	}
	// A pass stands for hostRecheck, then the walk is made again: a file
	// that changed hands since is refused.
	lchown(t, shared+"/trusted", nobody)
	if _, err := j.Resolve("uses-trusted.sh", nil); err != nil {
		t.Errorf("within hostRecheck of its check: %v", err)
	}
	j.hostChecked.Range(func(k, v any) bool {
		c := v.(hostCheck)
		c.at = c.at.Add(-hostRecheck)
		j.hostChecked.Store(k, c)
		return true
	})
	if _, err := j.Resolve("uses-trusted.sh", nil); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "is owned by uid 65534") {
		t.Errorf("after hostRecheck, an interpreter now owned by nobody: %v, want a refusal", err)
	}
	if _, err := j.ResolveSystem(shared+"/planted", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("a planted system program: %v, want a refusal", err)
	}
	if cmd, err := j.ResolveSystem("/usr/bin/id", nil); err != nil || cmd.Path != "/usr/bin/id" {
		t.Errorf("/usr/bin/id: %+v, %v", cmd, err)
	}
}

// FuzzLoaderOf: the loader of whatever bytes a program file holds (a #!
// line, an ELF file's program headers) is read without a panic, and what it
// names comes from the file: at most the kernel's limits long.
func FuzzLoaderOf(f *testing.F) {
	for _, p := range []string{"/bin/true", "/bin/sh"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b[:min(len(b), 8192)])
		}
	}
	f.Add([]byte("#!/bin/sh -e\necho\n"))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	path := filepath.Join(f.TempDir(), "prog")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		loader, err := loaderOf(path)
		if err == nil && len(loader) > 4096 {
			t.Errorf("a loader of %d bytes", len(loader))
		}
	})
}
