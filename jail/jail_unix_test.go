//go:build unix

package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// nobody is a uid no test file is otherwise owned by.
const nobody = 65534

// fixture is a cmd_dir full of the files the rules are about, next to a directory outside it.
type fixture struct {
	root    string // holds cmd and outside
	dir     string // cmd_dir, resolved
	outside string
}

// setup builds a fixture. Entries that need root (chown to another uid, device nodes) are only
// made when asRoot is true.
func setup(t testing.TB, asRoot bool) *fixture {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{root: root, dir: filepath.Join(root, "cmd"), outside: filepath.Join(root, "outside")}
	file := func(path string, mode fs.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\necho ok\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		chmod(t, path, mode)
	}
	dir := func(path string, mode fs.FileMode) {
		t.Helper()
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		chmod(t, path, mode)
	}
	link := func(target, path string) {
		t.Helper()
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	d, o := fx.dir, fx.outside
	dir(d, 0o755)
	dir(o, 0o755)
	file(d+"/run.sh", 0o755)
	file(d+"/plain.sh", 0o644)
	file(d+"/owner-only-x.sh", 0o744)
	file(d+"/has space.sh", 0o755)
	file(d+"/bash", 0o755)
	file(d+"/sub/tool.sh", 0o755)
	file(d+"/world-writable.sh", 0o666)
	file(d+"/group-writable.sh", 0o775)
	dir(d+"/open", 0o777)
	file(d+"/open/x.sh", 0o755)
	dir(d+"/sticky", 0o1777)
	file(d+"/sticky/x.sh", 0o755)
	dir(d+"/adir", 0o755)
	if err := syscall.Mkfifo(d+"/fifo", 0o755); err != nil {
		t.Fatal(err)
	}
	file(o+"/x.sh", 0o755)

	link("run.sh", d+"/link-in")
	link(d+"/run.sh", d+"/link-abs-in")
	link("sub", d+"/link-dir")
	link("../run.sh", d+"/sub/up")
	link("/etc/passwd", d+"/link-passwd")
	link("../outside/x.sh", d+"/link-out")
	link("../outside", d+"/link-outdir")
	link(d+"/../cmd/run.sh", d+"/link-abs-dotdot")
	link("../outside/back", d+"/link-reenter")
	link(d+"/run.sh", o+"/back")
	link("/etc/../"+strings.TrimPrefix(d, "/")+"/run.sh", d+"/link-abs-reenter")
	link("loop2", d+"/loop1")
	link("loop1", d+"/loop2")
	link("self", d+"/self")
	link(".", d+"/link-dot")
	link(d, d+"/link-abs-dir")
	link("run.sh/", d+"/link-slash")
	link("adir", d+"/link-adir")
	link("fifo", d+"/link-fifo")
	link("missing.sh", d+"/dangling")
	// chain-40 follows exactly 40 symlinks to run.sh; chain-41 one more.
	link("run.sh", d+"/chain-1")
	for i := 2; i <= 41; i++ {
		link(fmt.Sprintf("chain-%d", i-1), fmt.Sprintf("%s/chain-%d", d, i))
	}
	link("chain-40", d+"/chain-ok")

	if asRoot {
		file(d+"/nobody.sh", 0o755)
		lchown(t, d+"/nobody.sh", nobody)
		file(d+"/nobody-dir/x.sh", 0o755)
		lchown(t, d+"/nobody-dir", nobody)
		file(d+"/sticky/nobody.sh", 0o755)
		lchown(t, d+"/sticky/nobody.sh", nobody)
		link("run.sh", d+"/nobody-link")
		lchown(t, d+"/nobody-link", nobody)
		if err := syscall.Mknod(d+"/null", syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

func chmod(t testing.TB, path string, mode fs.FileMode) {
	t.Helper()
	// os.Chmod takes Go's mode bits, which do not include the sticky bit's Unix value.
	if err := syscall.Chmod(path, uint32(mode.Perm())|uint32(mode>>9&0o7)<<9); err != nil {
		t.Fatal(err)
	}
}

func lchown(t testing.TB, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// needRoot reports whether root-only cases can run. In CI they must: there the test fails
// instead of skipping.
func needRoot(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() == 0 {
		return true
	}
	if os.Getenv("CI") != "" {
		t.Fatal("these tests chown files to another uid and need root, which CI provides")
	}
	return false
}

func newJail(t testing.TB, fx *fixture) *Jail {
	t.Helper()
	j, err := New(Options{Dir: fx.dir})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return j
}

func TestResolve(t *testing.T) {
	t.Parallel()
	asRoot := needRoot(t)
	fx := setup(t, asRoot)
	j := newJail(t, fx)

	// want lists Path, then Args after Args[0]; "D" stands for cmd_dir.
	type want struct {
		path   string
		args   []string
		script string
	}
	tests := []struct {
		name     string
		cmdline  string
		args     []string
		want     want
		wantErr  string
		rootOnly bool
	}{
		// Rule 2: a file in cmd_dir is the program.
		{name: "program", cmdline: "run.sh", want: want{path: "D/run.sh"}},
		{name: "program with words and args", cmdline: "run.sh a 'b c'", args: []string{"feature/homestead", "x y", ""},
			want: want{path: "D/run.sh", args: []string{"a", "b c", "feature/homestead", "x y", ""}}},
		{name: "args are never split or expanded", cmdline: "run.sh", args: []string{"$(id); rm -rf / *", "a\nb"},
			want: want{path: "D/run.sh", args: []string{"$(id); rm -rf / *", "a\nb"}}},
		{name: "dot slash", cmdline: "./run.sh", want: want{path: "D/run.sh"}},
		{name: "subdirectory", cmdline: "sub/tool.sh", want: want{path: "D/sub/tool.sh"}},
		{name: "doubled slashes", cmdline: "sub//tool.sh", want: want{path: "D/sub/tool.sh"}},
		{name: "escaped space", cmdline: `has\ space.sh`, want: want{path: "D/has space.sh"}},
		{name: "quoted name", cmdline: `"has space.sh" 'x'`, want: want{path: "D/has space.sh", args: []string{"x"}}},
		{name: "exec bit for owner only", cmdline: "owner-only-x.sh", want: want{path: "D/owner-only-x.sh"}},
		{name: "file named like an interpreter, by path", cmdline: "./bash", want: want{path: "D/bash"}},
		{name: "sticky directory", cmdline: "sticky/x.sh", want: want{path: "D/sticky/x.sh"}},
		{name: "no exec bit runs with bash", cmdline: "plain.sh a", args: []string{"b"},
			want: want{path: "/bin/bash", args: []string{"D/plain.sh", "a", "b"}, script: "D/plain.sh"}},

		// Rule 2: symlinks that stay beneath cmd_dir are followed, and the result is resolved.
		{name: "relative symlink", cmdline: "link-in", want: want{path: "D/run.sh"}},
		{name: "absolute symlink into cmd_dir", cmdline: "link-abs-in", want: want{path: "D/run.sh"}},
		{name: "symlinked directory", cmdline: "link-dir/tool.sh", want: want{path: "D/sub/tool.sh"}},
		{name: "symlink with .. that stays inside", cmdline: "sub/up", want: want{path: "D/run.sh"}},
		{name: "symlink to cmd_dir itself", cmdline: "link-abs-dir/run.sh", want: want{path: "D/run.sh"}},
		{name: "symlink to dot", cmdline: "link-dot/run.sh", want: want{path: "D/run.sh"}},
		{name: "40 symlinks", cmdline: "chain-40", want: want{path: "D/run.sh"}},

		// Rule 3: interpreters.
		{name: "bash script", cmdline: "bash run.sh x", args: []string{"y"},
			want: want{path: "/bin/bash", args: []string{"D/run.sh", "x", "y"}, script: "D/run.sh"}},
		{name: "sh with a non-exec script", cmdline: "sh plain.sh",
			want: want{path: "/bin/sh", args: []string{"D/plain.sh"}, script: "D/plain.sh"}},
		{name: "interpreter script through a symlink", cmdline: "bash link-in",
			want: want{path: "/bin/bash", args: []string{"D/run.sh"}, script: "D/run.sh"}},
		{name: "interpreter word wins over a file of that name", cmdline: "bash run.sh",
			want: want{path: "/bin/bash", args: []string{"D/run.sh"}, script: "D/run.sh"}},
		{name: "bash -c", cmdline: "bash -c id", wantErr: `interpreter options are refused: "bash -c"`},
		{name: "bash -i", cmdline: "bash -i", wantErr: `interpreter options are refused: "bash -i"`},
		{name: "sh --rcfile", cmdline: "sh --rcfile x", wantErr: `interpreter options are refused: "sh --rcfile"`},
		{name: "bash --", cmdline: "bash -- run.sh", wantErr: "interpreter options are refused"},
		{name: "bash +O", cmdline: "bash +O extglob run.sh", wantErr: "interpreter options are refused"},
		{name: "bash alone", cmdline: "bash", wantErr: `"bash" needs a script in cmd_dir`},
		{name: "bash ../x", cmdline: "bash ../x", wantErr: `"../x" leaves cmd_dir`},
		{name: "bash /etc/x", cmdline: "bash /etc/x", wantErr: `"/etc/x" is an absolute path`},
		{name: "bash on a missing script", cmdline: "bash nope.sh", wantErr: `"nope.sh" is not a file in cmd_dir`},
		{name: "bash on an untrusted script", cmdline: "bash world-writable.sh", wantErr: "writable by other users (mode 0666)"},
		{name: "bash on a symlink out", cmdline: "bash link-passwd", wantErr: "leads out of cmd_dir"},

		// Rule 4 and hostile paths.
		{name: "escape with dots", cmdline: "../../../../etc/hostname", wantErr: `"../../../../etc/hostname" leaves cmd_dir`},
		{name: "absolute path", cmdline: "/etc/passwd", wantErr: `"/etc/passwd" is an absolute path`},
		{name: "dots that leave and return", cmdline: "./x/../../y", wantErr: "leaves cmd_dir"},
		{name: "dots that stay inside", cmdline: "sub/../run.sh", wantErr: `has a ".." component`},
		{name: "not in cmd_dir", cmdline: "foo", wantErr: `"foo" is not a file in cmd_dir ` + fx.dir},
		{name: "system program", cmdline: "id", wantErr: `"id" is not a file in cmd_dir`},
		{name: "environment assignment", cmdline: "PATH=/x run.sh", wantErr: "looks like an environment assignment"},
		{name: "empty first word", cmdline: "'' run.sh", wantErr: "an empty word cannot name a program"},
		{name: "symlink to /etc/passwd", cmdline: "link-passwd", wantErr: `"link-passwd" leads out of cmd_dir: symlink ` + fx.dir + `/link-passwd points to /etc/passwd`},
		{name: "relative symlink out", cmdline: "link-out", wantErr: `"link-out" leaves cmd_dir through a symlink`},
		{name: "symlinked directory out", cmdline: "link-outdir/x.sh", wantErr: "leaves cmd_dir through a symlink"},
		{name: "chain that leaves and re-enters", cmdline: "link-reenter", wantErr: "leaves cmd_dir through a symlink"},
		{name: "absolute target that steps out and back", cmdline: "link-abs-reenter", wantErr: "leads out of cmd_dir"},
		{name: "absolute target with .. at cmd_dir", cmdline: "link-abs-dotdot", wantErr: "leaves cmd_dir through a symlink"},
		{name: "symlink loop", cmdline: "loop1", wantErr: "more than 40 symlinks"},
		{name: "symlink to itself", cmdline: "self", wantErr: "more than 40 symlinks"},
		{name: "41 symlinks", cmdline: "chain-41", wantErr: "more than 40 symlinks"},
		{name: "dangling symlink", cmdline: "dangling", wantErr: "is not a file in cmd_dir"},
		{name: "symlink with trailing slash to a file", cmdline: "link-slash", wantErr: "is not a directory"},
		{name: "file used as a directory", cmdline: "run.sh/x", wantErr: "is not a directory"},
		{name: "trailing slash on a file", cmdline: "run.sh/", wantErr: "is not a directory"},
		{name: "directory as program", cmdline: "adir", wantErr: `"adir" is a directory, not a program`},
		{name: "cmd_dir as program", cmdline: ".", wantErr: "is a directory"},
		{name: "symlink to a directory as program", cmdline: "link-adir", wantErr: "is a directory"},
		{name: "fifo as program", cmdline: "fifo", wantErr: `"fifo" is a named pipe, not a regular file`},
		{name: "symlink to a fifo", cmdline: "link-fifo", wantErr: "is a named pipe"},
		{name: "device as program", cmdline: "null", wantErr: `"null" is a character device`, rootOnly: true},

		// Rule 1: the cmdline is never given to a shell.
		{name: "semicolon", cmdline: "run.sh;id", wantErr: "shell operator"},
		{name: "command substitution", cmdline: "$(id)", wantErr: "shell expansion"},
		{name: "backticks", cmdline: "run.sh `id`", wantErr: "shell expansion"},
		{name: "glob", cmdline: "x.sh *", wantErr: "would be a glob"},
		{name: "newline", cmdline: "run.sh\nid", wantErr: "control character"},
		{name: "NUL", cmdline: "run.sh\x00", wantErr: "control character"},
		{name: "very long input", cmdline: "run.sh " + strings.Repeat("a", 70000), wantErr: "at most 65536 are accepted"},
		{name: "NUL in args", cmdline: "run.sh", args: []string{"ok", "a\x00b"}, wantErr: "cmd_args[1] contains a NUL byte"},
		{name: "too many args", cmdline: "run.sh", args: make([]string, 4097), wantErr: "4097 cmd_args given"},
		{name: "args too large", cmdline: "run.sh", args: []string{strings.Repeat("a", 1<<20), "b"}, wantErr: "at most 1048576 are accepted"},

		// Rule 5: trust.
		{name: "world-writable script", cmdline: "world-writable.sh", wantErr: `"world-writable.sh" is writable by other users (mode 0666); run chmod go-w on it`},
		{name: "group-writable script", cmdline: "group-writable.sh", wantErr: "writable by other users (mode 0775)"},
		{name: "script in a world-writable directory", cmdline: "open/x.sh", wantErr: "directory " + fx.dir + "/open is writable by other users (mode 0777) and not sticky"},
		{name: "script owned by another user", cmdline: "nobody.sh", wantErr: `"nobody.sh" is owned by uid 65534, which is not trusted`, rootOnly: true},
		{name: "another user's script in a sticky directory", cmdline: "sticky/nobody.sh", wantErr: "owned by uid 65534", rootOnly: true},
		{name: "interpreter on another user's script", cmdline: "bash nobody.sh", wantErr: "owned by uid 65534", rootOnly: true},
		{name: "directory owned by another user", cmdline: "nobody-dir/x.sh", wantErr: "directory " + fx.dir + "/nobody-dir is owned by uid 65534", rootOnly: true},
		{name: "symlink owned by another user", cmdline: "nobody-link", wantErr: "symlink " + fx.dir + "/nobody-link is owned by uid 65534", rootOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.rootOnly && !asRoot {
				t.Skip("needs root to chown files or make device nodes; runs in CI as root")
			}
			cmd, err := j.Resolve(tt.cmdline, tt.args)
			if tt.wantErr != "" {
				assertRefused(t, err, tt.cmdline, tt.wantErr)
				if cmd != nil {
					t.Errorf("got a Command %+v with the error", cmd)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.cmdline, err)
			}
			d := func(s string) string { return strings.Replace(s, "D/", fx.dir+"/", 1) }
			wantArgs := []string{d(tt.want.path)}
			for _, a := range tt.want.args {
				wantArgs = append(wantArgs, d(a))
			}
			if cmd.Path != d(tt.want.path) || cmd.Script != d(tt.want.script) || cmd.Dir != fx.dir || !slices.Equal(cmd.Args, wantArgs) {
				t.Errorf("Resolve(%q) =\n\t%+v\nwant\n\t{Path:%s Args:%q Script:%s Dir:%s}",
					tt.cmdline, *cmd, d(tt.want.path), wantArgs, d(tt.want.script), fx.dir)
			}
		})
	}
}

func TestResolveRechecksCmdDir(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	j := newJail(t, fx)
	if _, err := j.Resolve("run.sh", nil); err != nil {
		t.Fatalf("before chmod: %v", err)
	}
	chmod(t, fx.dir, 0o777)
	_, err := j.Resolve("run.sh", nil)
	assertRefused(t, err, "run.sh", "directory "+fx.dir+" is writable by other users (mode 0777) and not sticky")
}

func TestResolveCustomInterpreters(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	j, err := New(Options{Dir: fx.dir, Interpreters: map[string]string{"python3": "/usr/bin/python3"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := j.Resolve("python3 run.sh", nil)
	if err != nil || cmd.Path != "/usr/bin/python3" || cmd.Script != fx.dir+"/run.sh" {
		t.Fatalf("python3 run.sh: %+v, %v", cmd, err)
	}
	// bash is no longer an interpreter word, so it names the file cmd_dir/bash; and nothing
	// runs a file without an exec bit.
	cmd, err = j.Resolve("bash run.sh", nil)
	if err != nil || cmd.Path != fx.dir+"/bash" || cmd.Script != "" {
		t.Fatalf("bash run.sh without a bash interpreter: %+v, %v; want cmd_dir/bash as the program", cmd, err)
	}
	_, err = j.Resolve("plain.sh", nil)
	assertRefused(t, err, "plain.sh", `"plain.sh" has no exec bit and no "bash" interpreter is configured`)
}

func TestNew(t *testing.T) {
	t.Parallel()
	asRoot := needRoot(t)
	fx := setup(t, asRoot)
	tests := []struct {
		name     string
		opts     Options
		wantErr  string
		rootOnly bool
	}{
		{name: "symlinked cmd_dir is resolved", opts: Options{Dir: fx.dir + "/link-dir"}},
		{name: "empty", opts: Options{}, wantErr: "jail: cmd_dir is empty"},
		{name: "missing", opts: Options{Dir: fx.dir + "/missing"}, wantErr: "cannot be used (create it, or fix cmd_dir in the config)"},
		{name: "a file", opts: Options{Dir: fx.dir + "/run.sh"}, wantErr: "is not a directory"},
		{name: "world-writable", opts: Options{Dir: fx.dir + "/open"}, wantErr: "cannot be trusted: directory " + fx.dir + "/open is writable by other users"},
		{name: "sticky is fine", opts: Options{Dir: fx.dir + "/sticky"}},
		{name: "nobody trusted", opts: Options{Dir: fx.dir, TrustedUIDs: []int{}}, wantErr: "cannot be trusted: directory / is owned by uid 0, which is not trusted"},
		{name: "owned by another user", opts: Options{Dir: fx.dir + "/nobody-dir"}, wantErr: "is owned by uid 65534", rootOnly: true},
		{name: "relative interpreter", opts: Options{Dir: fx.dir, Interpreters: map[string]string{"bash": "bash"}}, wantErr: `interpreter "bash" must be an absolute path`},
		{name: "interpreter option as name", opts: Options{Dir: fx.dir, Interpreters: map[string]string{"-c": "/bin/sh"}}, wantErr: `interpreter name "-c" must be one plain word`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.rootOnly && !asRoot {
				t.Skip("needs root to chown files; runs in CI as root")
			}
			j, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New(%+v): %v", tt.opts, err)
				}
				if real, _ := filepath.EvalSymlinks(tt.opts.Dir); !filepath.IsAbs(j.Dir()) || j.Dir() != mustAbs(t, real) {
					t.Errorf("Dir() = %q, want the resolved absolute %q", j.Dir(), real)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "jail: ") {
				t.Fatalf("New(%+v) error %v, want one containing %q", tt.opts, err, tt.wantErr)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestRefusedErrorUnwraps(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	_, err := newJail(t, fx).Resolve("missing.sh", nil)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v should match both ErrRefused and fs.ErrNotExist", err)
	}
}

// FuzzResolve checks that Resolve never panics and that whatever it accepts runs a regular file
// beneath cmd_dir, directly or through a configured interpreter.
func FuzzResolve(f *testing.F) {
	fx := setup(f, false)
	j := newJail(f, fx)
	for _, s := range []string{
		"run.sh", "bash run.sh", "sh plain.sh x", "plain.sh", "link-in", "link-dir/tool.sh", "sub/up",
		"../../../../etc/hostname", "/etc/passwd", "./x/../../y", "link-passwd", "link-reenter", "loop1",
		"bash -c id", "bash ../x", "bash /etc/x", "adir", "fifo", "run.sh;id", "$(id)", "x.sh *",
		`"has space.sh"`, "link-abs-dir/run.sh", "link-outdir/x.sh", "chain-41", "./bash", "sticky/x.sh",
	} {
		f.Add(s, "arg")
	}
	interps := map[string]bool{"/bin/bash": true, "/bin/sh": true}
	f.Fuzz(func(t *testing.T, cmdline, arg string) {
		cmd, err := j.Resolve(cmdline, []string{arg})
		if err != nil {
			if !errors.Is(err, ErrRefused) || cmd != nil {
				t.Fatalf("Resolve(%q): %v, %+v", cmdline, err, cmd)
			}
			return
		}
		beneath := func(p string) bool {
			fi, err := os.Lstat(p)
			return strings.HasPrefix(p, fx.dir+"/") && err == nil && fi.Mode().IsRegular()
		}
		switch {
		case cmd.Script != "" && (!interps[cmd.Path] || !beneath(cmd.Script)):
			t.Fatalf("Resolve(%q) runs script %q with %q", cmdline, cmd.Script, cmd.Path)
		case cmd.Script == "" && !beneath(cmd.Path):
			t.Fatalf("Resolve(%q) runs %q, not a regular file beneath %s", cmdline, cmd.Path, fx.dir)
		case cmd.Dir != fx.dir || cmd.Args[0] != cmd.Path || cmd.Args[len(cmd.Args)-1] != arg:
			t.Fatalf("Resolve(%q) = %+v", cmdline, *cmd)
		}
	})
}

func BenchmarkResolve(b *testing.B) {
	fx := setup(b, false)
	j := newJail(b, fx)
	for _, cmdline := range []string{"run.sh feature/homestead", "bash sub/tool.sh a b", "link-dir/tool.sh", "../etc/passwd"} {
		b.Run(cmdline, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = j.Resolve(cmdline, []string{"x"})
			}
		})
	}
}

func TestResolveSystem(t *testing.T) {
	j, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	env, err := filepath.EvalSymlinks("/usr/bin/env")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := j.ResolveSystem(env+" true", []string{"x"})
	if err != nil {
		t.Fatalf("ResolveSystem(%s) = %v", env, err)
	}
	if cmd.Path != env || strings.Join(cmd.Args, " ") != env+" true x" || cmd.Dir != j.Dir() {
		t.Errorf("command = %+v", cmd)
	}
	// What admission allowed: by a rule, the system program; without one
	// (no policy), the absolute path is refused like any other.
	if cmd, err := j.ResolveAllowed(env+" true", nil, true); err != nil || cmd.Path != env {
		t.Errorf("ResolveAllowed by a rule = %+v, %v; want the system program", cmd, err)
	}
	if _, err := j.ResolveAllowed(env+" true", nil, false); err == nil {
		t.Error("ResolveAllowed without a rule allowed an absolute path")
	}
	mine := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(mine, []byte("#!/bin/sh\n"), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(mine, 0o777)
	for _, cmdline := range []string{
		"env",                 // not absolute
		"/usr/bin/../bin/env", // not clean
		"/usr/bin/no-such-program",
		"/usr/bin",  // not a regular file
		"/dev/null", // not a regular file
		mine,        // writable by others
	} {
		if _, err := j.ResolveSystem(cmdline, nil); err == nil {
			t.Errorf("ResolveSystem(%q) allowed it", cmdline)
		}
	}
}
