// Package jail turns an untrusted cmdline (from a task) plus extra arguments into a program and
// argv confined to cmd_dir. It is a security boundary and defaults to refusing: anything it cannot
// show to be a trusted file beneath cmd_dir is refused with a reason a person can act on.
//
// The rules (SPEC §3):
//
//  1. The cmdline is split into words as a POSIX shell would, but no shell runs it (see Split).
//  2. A first word that names an interpreter (Options.Interpreters, by default bash and sh) runs
//     the script named by the second word. Interpreter options (-c, -i, --rcfile, +O, …) are
//     refused, since they would let the cmdline run code that is not a file in cmd_dir.
//  3. Otherwise the first word, taken as a path relative to cmd_dir, must resolve to a regular
//     file beneath it. Symlinks are followed one component at a time and only while every step
//     stays beneath cmd_dir. A file with no exec bit at all is run with bash, as the original
//     tool did.
//  4. Anything else is refused.
//  5. Trust, as sshd's StrictModes: the program or script must be owned by a trusted uid and
//     not be group- or world-writable; every directory from / down to it, and every directory
//     and symlink met on the way, must be owned by a trusted uid, and directories must not be
//     writable by others unless they carry the sticky bit (as /tmp does). That is what makes
//     running the resolved path later safe: nobody else can swap the file or a directory in
//     between. What the kernel loads to run the program — the interpreter word's program, a
//     #! line's interpreter, an ELF loader — passes the same rule, from / (in chroot mode,
//     inside cmd_dir).
//
// Decisions where the contract is silent:
//   - Interpreter words are checked before files (the contract lists files first). A file named
//     "bash" in cmd_dir is still reachable as "./bash", but with the default cmd_dir /tmp nobody
//     can block or hijack "bash install.sh" by dropping a file called bash there.
//   - Every path Command reports is fully resolved (no symlinks), so what runs is what was
//     checked.
//   - On systems without Unix ownership and permission bits (Windows), rule 5 cannot be applied
//     and every regular file counts as executable; no interpreters are configured by default.
//
// A Jail only decides what may run. It does not limit what the program can read or do once
// started: that is the sandbox's job.
package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits on cmd_args. They keep one task's argv far below the kernel's ARG_MAX, so an exec never
// fails half-way for a reason the submitter cannot see.
const (
	maxArgs      = 4096
	maxArgsBytes = 1 << 20
)

// ErrRefused is matched (errors.Is) by every refusal, so callers can tell "this task may not run"
// apart from their own failures.
var ErrRefused = errors.New("jail: refused")

// RefusedError carries a reason a person understands, e.g. `jail: "../../etc/hostname" leaves cmd_dir`,
// `jail: interpreter options are refused: "bash -c"`, `jail: "x.sh" is writable by other users (mode 0666)`.
type RefusedError struct {
	Cmdline string // the cmdline as submitted
	Reason  string // what is wrong and what to do about it, without the "jail: " prefix
	Err     error  // the underlying failure, if one caused the refusal (e.g. a permission error)
}

// Error returns the reason; the cmdline is left out because it can be long and is logged apart.
func (e *RefusedError) Error() string { return "jail: " + e.Reason }

// Is reports whether target is ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Unwrap returns the underlying failure, if any.
func (e *RefusedError) Unwrap() error { return e.Err }

// Options configures a Jail.
type Options struct {
	Dir          string            // cmd_dir; made absolute and symlink-resolved once by New
	Interpreters map[string]string // word -> absolute program path; nil means {"bash": "/bin/bash", "sh": "/bin/sh"}
	TrustedUIDs  []int             // owners whose files/dirs may be trusted; nil means {0, os.Geteuid()}
	// Chroot is the sandbox's chroot mode, where a task sees only cmd_dir, as /: every
	// absolute path the task's programs name — an interpreter word's program, a script's #!
	// line, an ELF program's loader — means that path inside cmd_dir, so each is resolved
	// there and passes rule 5 like the program itself. cmd_dir may then not be writable by
	// other users at all (sticky is not enough), and system programs cannot be run.
	Chroot bool
}

// Jail resolves cmdlines against one cmd_dir. Its settings are fixed once made; it is safe for
// concurrent use.
type Jail struct {
	chroot       bool
	dir          string   // absolute and free of symlinks
	chain        []string // every directory from the root down to dir, checked on each Resolve
	interpreters map[string]string
	trusted      []int
	hostChecked  *sync.Map // host program path -> hostCheck, see trustedHost
}

// hostRecheck is how long a host program's passed check stands (see trustedHost): a chmod of a
// system directory is noticed within it, and a burst of tasks pays for the walk once.
const hostRecheck = time.Second

// hostCheck is a host program that passed rule 5 with what it loads, and when.
type hostCheck struct {
	resolved string
	at       time.Time
}

// New validates Dir exists, is a directory, and itself passes the ownership checks of rule 5.
func New(opts Options) (*Jail, error) {
	if opts.Dir == "" {
		return nil, errors.New("jail: cmd_dir is empty; set it to the directory that holds the scripts tasks may run")
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("jail: cmd_dir %q cannot be made absolute: %w", opts.Dir, err)
	}
	dir, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("jail: cmd_dir %q cannot be used (create it, or fix cmd_dir in the config): %w", opts.Dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("jail: cmd_dir %q cannot be used: %w", opts.Dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("jail: cmd_dir %q is not a directory; point cmd_dir at the directory that holds the scripts", opts.Dir)
	}

	j := &Jail{dir: dir, trusted: slices.Clone(opts.TrustedUIDs), chroot: opts.Chroot, hostChecked: &sync.Map{}}
	if opts.TrustedUIDs == nil {
		j.trusted = []int{0, os.Geteuid()}
	}
	if j.interpreters, err = interpreters(opts.Interpreters); err != nil {
		return nil, err
	}
	for p := dir; ; p = filepath.Dir(p) {
		j.chain = append(j.chain, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	slices.Reverse(j.chain)
	if err := j.checkChain(); err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("jail: cmd_dir %s cannot be trusted: %s", dir, re.Reason)
		}
		return nil, err
	}
	if j.chroot && permsChecked && fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("jail: cmd_dir %s is writable by other users (mode %04o); in chroot mode it holds the tasks' interpreters and libraries too, so only its owner may write it: run chmod go-w on it", dir, unixMode(fi.Mode()))
	}
	return j, nil
}

// interpreters validates and copies the configured interpreters, or returns the defaults.
func interpreters(m map[string]string) (map[string]string, error) {
	if m == nil {
		return defaultInterpreters(), nil
	}
	out := make(map[string]string, len(m))
	for word, path := range m {
		if word == "" || strings.HasPrefix(word, "-") || strings.ContainsAny(word, " \t/\\") {
			return nil, fmt.Errorf("jail: interpreter name %q must be one plain word, like \"bash\"", word)
		}
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("jail: interpreter %q must be an absolute path, not %q", word, path)
		}
		out[word] = filepath.Clean(path)
	}
	return out, nil
}

// Dir returns the resolved cmd_dir.
func (j *Jail) Dir() string { return j.dir }

// Command is what to execute for a task.
type Command struct {
	Path   string   // absolute path to execute (the program, or the interpreter)
	Args   []string // full argv, Args[0] == Path; cmd_args appended verbatim as separate entries
	Script string   // the resolved script when run through an interpreter or because it lacks an exec bit; else ""
	Dir    string   // working directory = the resolved cmd_dir
}

// Resolve applies SPEC §3 rules 1–5 to cmdline and appends args (each must not contain NUL; at most 4096 args,
// 1 MiB total). Every error is a *RefusedError carrying cmdline.
func (j *Jail) Resolve(cmdline string, args []string) (*Command, error) {
	cmd, err := j.resolve(cmdline, args)
	if err != nil {
		return nil, refusal(cmdline, err)
	}
	return cmd, nil
}

// refusal makes err a *RefusedError carrying cmdline.
func refusal(cmdline string, err error) error {
	var re *RefusedError
	if !errors.As(err, &re) {
		re = &RefusedError{Reason: err.Error(), Err: err}
	}
	re.Cmdline = cmdline
	return re
}

func (j *Jail) resolve(cmdline string, args []string) (*Command, error) {
	words, err := Split(cmdline)
	if err != nil {
		return nil, err
	}
	if err := checkArgs(args); err != nil {
		return nil, err
	}
	if err := j.checkChain(); err != nil {
		return nil, err
	}

	first := words[0]
	if interp, ok := j.interpreters[first]; ok {
		if len(words) < 2 {
			return nil, refusef("", "%q needs a script in cmd_dir to run, e.g. \"%s install.sh\"", first, first)
		}
		if script := words[1]; strings.HasPrefix(script, "-") || strings.HasPrefix(script, "+") {
			return nil, refusef("", "interpreter options are refused: %q; name a script in cmd_dir instead", first+" "+script)
		}
		script, _, err := j.resolveFile(words[1])
		if err != nil {
			return nil, err
		}
		if interp, err = j.interpreter(first, interp); err != nil {
			return nil, err
		}
		return j.command(interp, script, words[2:], args), nil
	}

	prog, fi, err := j.resolveFile(first)
	if err != nil {
		if k, _, ok := strings.Cut(first, "="); ok && isName(k) && errors.Is(err, fs.ErrNotExist) {
			return nil, refusef("", "%q looks like an environment assignment, which is not supported; the first word must name a script in cmd_dir", first)
		}
		return nil, err
	}
	if !isExecutable(fi.Mode()) {
		bash, ok := j.interpreters["bash"]
		if !ok {
			return nil, refusef("", "%q has no exec bit and no \"bash\" interpreter is configured; make it executable (chmod +x)", first)
		}
		if bash, err = j.interpreter("bash", bash); err != nil {
			return nil, err
		}
		return j.command(bash, prog, words[1:], args), nil
	}
	if err := j.checkLoaders(prog, 0); err != nil {
		return nil, err
	}
	return j.command("", prog, words[1:], args), nil
}

// interpreter returns the program an interpreter word runs. Outside chroot mode that is the
// configured host path, which must pass rule 5 from / (every directory and symlink on the way
// trusted), as must what it loads. In chroot mode the same path names a file inside cmd_dir,
// which must pass rule 5 like any program there, and so must what it loads.
func (j *Jail) interpreter(word, path string) (string, error) {
	if !j.chroot {
		if !permsChecked {
			return path, nil
		}
		if _, err := j.trustedHost(path, 0); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				re.Reason = fmt.Sprintf("interpreter %q (%s) cannot be trusted: %s", word, path, re.Reason)
			}
			return "", err
		}
		// The configured path, not the resolved one: every symlink on the way was checked,
		// and argv[0] and the audit log keep the name the operator wrote.
		return path, nil
	}
	prog, _, err := j.resolveFile(strings.TrimPrefix(filepath.ToSlash(path), "/"))
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			re.Reason = fmt.Sprintf("in chroot mode %q runs %s inside cmd_dir, which cannot be trusted: %s", word, path, re.Reason)
		}
		return "", err
	}
	if err := j.checkLoaders(prog, 0); err != nil {
		return "", err
	}
	return prog, nil
}

// command builds the Command that runs prog, directly (interp == "") or as interp's script.
func (j *Jail) command(interp, prog string, rest, args []string) *Command {
	c := &Command{Path: prog, Dir: j.dir}
	if interp != "" {
		c.Path, c.Script = interp, prog
	}
	c.Args = make([]string, 0, 2+len(rest)+len(args))
	c.Args = append(c.Args, c.Path)
	if c.Script != "" {
		c.Args = append(c.Args, c.Script)
	}
	c.Args = append(c.Args, rest...)
	c.Args = append(c.Args, args...)
	return c
}

func checkArgs(args []string) error {
	if len(args) > maxArgs {
		return refusef("", "%d cmd_args given; at most %d are accepted", len(args), maxArgs)
	}
	total := 0
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return refusef("", "cmd_args[%d] contains a NUL byte, which no program can receive in its arguments", i)
		}
		total += len(a)
	}
	if total > maxArgsBytes {
		return refusef("", "cmd_args total %d bytes; at most %d are accepted (pass bulk data in a file)", total, maxArgsBytes)
	}
	return nil
}

// isName reports whether s is a shell variable name, to recognise "FOO=bar script.sh".
func isName(s string) bool {
	for i, r := range s {
		ok := r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9'
		if !ok {
			return false
		}
	}
	return s != ""
}

// ResolveAllowed resolves the cmdline of a task that admission allowed:
// when a policy rule allowed it (byRule) and its first word is an absolute
// path, as the system program that rule named word for word (SPEC §3.4,
// ResolveSystem); anything else by SPEC §3 rules 1–5 (Resolve), which
// refuse absolute paths.
func (j *Jail) ResolveAllowed(cmdline string, args []string, byRule bool) (*Command, error) {
	if byRule {
		if words, err := Split(cmdline); err == nil && len(words) > 0 && filepath.IsAbs(words[0]) {
			return j.ResolveSystem(cmdline, args)
		}
	}
	return j.Resolve(cmdline, args)
}

// ResolveSystem resolves a cmdline whose first word is an absolute path to
// a system program, which only a policy rule naming it word for word may
// allow (SPEC §3.4): the caller must have checked that. The program must be
// a regular executable file, reached without symlinks, owned by a trusted
// user and writable by no one else, in directories with the same
// properties all the way from /. The working directory is cmd_dir.
func (j *Jail) ResolveSystem(cmdline string, args []string) (*Command, error) {
	cmd, err := j.resolveSystem(cmdline, args)
	if err != nil {
		return nil, refusal(cmdline, err)
	}
	return cmd, nil
}

func (j *Jail) resolveSystem(cmdline string, args []string) (*Command, error) {
	words, err := Split(cmdline)
	if err != nil {
		return nil, err
	}
	if j.chroot {
		return nil, refusef("", "%q is a system program, and in chroot mode a task sees only cmd_dir; put the program in cmd_dir, or turn sandbox_chroot off", words[0])
	}
	if err := checkArgs(args); err != nil {
		return nil, err
	}
	prog := words[0]
	if !filepath.IsAbs(prog) || filepath.Clean(prog) != prog {
		return nil, refusef("", "%q is not a clean absolute path to a system program", prog)
	}
	for dir := filepath.Dir(prog); ; dir = filepath.Dir(dir) {
		fi, err := os.Lstat(dir)
		if err != nil {
			return nil, &RefusedError{Reason: fmt.Sprintf("%s cannot be checked: %v", dir, err), Err: err}
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// /bin -> usr/bin on merged-/usr systems: name the real path.
			return nil, refusef("", "%s is a symlink; name the program by its real path", dir)
		}
		if err := j.checkDir(dir, fi); err != nil {
			return nil, err
		}
		if dir == "/" {
			break
		}
	}
	fi, err := os.Lstat(prog)
	switch {
	case err != nil:
		return nil, &RefusedError{Reason: fmt.Sprintf("system program %s: %v", prog, err), Err: err}
	case !fi.Mode().IsRegular():
		return nil, refusef("", "system program %s is not a regular file", prog)
	case permsChecked && fi.Mode()&0o111 == 0:
		return nil, refusef("", "system program %s is not executable", prog)
	}
	if err := j.checkFile(prog, fi); err != nil {
		return nil, err
	}
	if err := j.checkLoaders(prog, 0); err != nil {
		return nil, err
	}
	return j.command("", prog, words[1:], args), nil
}
