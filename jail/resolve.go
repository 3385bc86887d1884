package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxSymlinks bounds how many symlinks one resolution follows, as the kernel's own limit does, so
// a loop ends in a clear refusal.
const maxSymlinks = 40

// resolveFile resolves word, a path relative to cmd_dir, to the absolute, symlink-free path of a
// trusted regular file beneath cmd_dir (rules 2 and 5).
//
// It walks one component at a time with Lstat and Readlink rather than asking the kernel to
// resolve the whole path, so that it sees every symlink and every directory on the way: a symlink
// may lead elsewhere beneath cmd_dir, never out of it, not even briefly, and each directory a name
// is looked up in must be trusted. cmd_dir and its ancestors have already been checked
// (checkChain), and cur is always a real directory beneath cmd_dir, so ".." is exact.
func (j *Jail) resolveFile(word string) (string, fs.FileInfo, error) {
	switch {
	case word == "":
		return "", nil, refusef("", "an empty word cannot name a program; name a script in cmd_dir")
	case filepath.IsAbs(word) || strings.HasPrefix(word, "/"):
		return "", nil, refusef("", "%q is an absolute path; only files in cmd_dir %s can be run, so name it relative to cmd_dir", word, j.dir)
	case !filepath.IsLocal(word):
		return "", nil, refusef("", "%q leaves cmd_dir", word)
	}
	pending := strings.Split(filepath.ToSlash(word), "/")
	if slices.Contains(pending, "..") {
		return "", nil, refusef("", "%q has a \"..\" component; name the file in cmd_dir without it", word)
	}

	var (
		cur   = j.dir
		depth = 0         // components of cur below cmd_dir
		last  fs.FileInfo // what the last component named; nil for cmd_dir or a ".." step
		links = 0
	)
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if depth == 0 {
				return "", nil, refusef("", "%q leaves cmd_dir through a symlink", word)
			}
			cur, depth, last = filepath.Dir(cur), depth-1, nil
			continue
		}

		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", nil, &RefusedError{Reason: fmt.Sprintf("%q is not a file in cmd_dir %s", word, j.dir), Err: err}
			}
			return "", nil, &RefusedError{Reason: fmt.Sprintf("%q cannot be checked: %v", word, err), Err: err}
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if links++; links > maxSymlinks {
				return "", nil, refusef("", "%q passes through more than %d symlinks (a loop?)", word, maxSymlinks)
			}
			if err := j.checkOwner(fmt.Sprintf("symlink %s", next), fi); err != nil {
				return "", nil, err
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", nil, &RefusedError{Reason: fmt.Sprintf("%q cannot be checked: %v", word, err), Err: err}
			}
			if filepath.IsAbs(target) {
				rest, ok := j.beneath(target)
				if !ok {
					return "", nil, refusef("", "%q leads out of cmd_dir: symlink %s points to %s", word, next, target)
				}
				cur, depth, last, target = j.dir, 0, nil, rest
			}
			if target == "" {
				return "", nil, refusef("", "%q passes through symlink %s with an empty target", word, next)
			}
			pending = append(strings.Split(filepath.ToSlash(target), "/"), pending...)
		case fi.IsDir():
			if err := j.checkDir(next, fi); err != nil {
				return "", nil, err
			}
			cur, depth, last = next, depth+1, fi
		default:
			if len(pending) > 0 {
				return "", nil, refusef("", "%q cannot be resolved: %s is not a directory", word, next)
			}
			cur, last = next, fi
		}
	}

	switch {
	case last == nil || last.IsDir():
		return "", nil, refusef("", "%q is a directory, not a program; name a script in it", word)
	case !last.Mode().IsRegular():
		return "", nil, refusef("", "%q is %s, not a regular file; only scripts and programs can be run", word, describe(last.Mode()))
	}
	if err := j.checkFile(word, last); err != nil {
		return "", nil, err
	}
	return cur, last, nil
}

// resolveHost resolves path, an absolute host path the kernel will load outside chroot mode (a
// configured interpreter, a #! line's, an ELF loader), to the symlink-free path of a trusted
// regular file (rule 5). Like resolveFile it walks one component at a time, so that every
// directory and symlink on the way is checked, but from /, since these are the host's files.
func (j *Jail) resolveHost(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", refusef("", "%q is not an absolute path", path)
	}
	fi, err := os.Lstat("/")
	if err != nil {
		return "", &RefusedError{Reason: fmt.Sprintf("/ cannot be checked: %v", err), Err: err}
	}
	if err := j.checkDir("/", fi); err != nil {
		return "", err
	}
	var (
		pending = strings.Split(filepath.ToSlash(path), "/")
		cur     = "/"
		last    fs.FileInfo
		links   = 0
	)
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur, last = filepath.Dir(cur), nil // cur is a real directory, so ".." is exact
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", &RefusedError{Reason: fmt.Sprintf("%s cannot be checked: %v", next, err), Err: err}
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if links++; links > maxSymlinks {
				return "", refusef("", "%s passes through more than %d symlinks (a loop?)", path, maxSymlinks)
			}
			if err := j.checkOwner("symlink "+next, fi); err != nil {
				return "", err
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", &RefusedError{Reason: fmt.Sprintf("%s cannot be checked: %v", next, err), Err: err}
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			pending = append(strings.Split(filepath.ToSlash(target), "/"), pending...)
		case fi.IsDir():
			if err := j.checkDir(next, fi); err != nil {
				return "", err
			}
			cur, last = next, fi
		default:
			if len(pending) > 0 {
				return "", refusef("", "%s cannot be resolved: %s is not a directory", path, next)
			}
			cur, last = next, fi
		}
	}
	if last == nil || !last.Mode().IsRegular() {
		return "", refusef("", "%s is not a regular file", path)
	}
	if err := j.checkFile(path, last); err != nil {
		return "", err
	}
	return cur, nil
}

// beneath reports whether the absolute symlink target lies beneath cmd_dir, and returns the rest
// of it. It compares text, not resolved paths: a target such as /etc/../tmp/x is refused even if
// it would land in cmd_dir, because it steps outside on the way.
func (j *Jail) beneath(target string) (string, bool) {
	prefix := j.dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	if target == j.dir {
		return ".", true
	}
	rest, ok := strings.CutPrefix(target, prefix)
	if !ok {
		return "", false
	}
	if rest == "" {
		rest = "."
	}
	return rest, true
}

// checkChain checks every directory from the root down to cmd_dir. It runs on every Resolve, not
// only in New, because an operator's chmod after start-up must not go unnoticed; it costs one
// Lstat per level.
func (j *Jail) checkChain() error {
	for _, p := range j.chain {
		fi, err := os.Lstat(p)
		if err != nil {
			return &RefusedError{Reason: fmt.Sprintf("cmd_dir cannot be checked: %v", err), Err: err}
		}
		if !fi.IsDir() {
			return refusef("", "%s, on the way to cmd_dir %s, is no longer a directory", p, j.dir)
		}
		if err := j.checkDir(p, fi); err != nil {
			return err
		}
	}
	return nil
}

// checkDir applies rule 5 to a directory: a trusted owner, and not writable by others unless
// sticky (where others may add files but cannot remove or rename ours).
func (j *Jail) checkDir(path string, fi fs.FileInfo) error {
	if err := j.checkOwner("directory "+path, fi); err != nil {
		return err
	}
	if permsChecked && fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return refusef("", "directory %s is writable by other users (mode %04o) and not sticky, so anyone could swap what runs; run chmod go-w on it", path, unixMode(fi.Mode()))
	}
	return nil
}

// checkFile applies rule 5 to the program or script that word resolved to.
func (j *Jail) checkFile(word string, fi fs.FileInfo) error {
	if err := j.checkOwner(fmt.Sprintf("%q", word), fi); err != nil {
		return err
	}
	if permsChecked && fi.Mode().Perm()&0o022 != 0 {
		return refusef("", "%q is writable by other users (mode %04o); run chmod go-w on it", word, unixMode(fi.Mode()))
	}
	return nil
}

// checkOwner refuses what is owned by a uid outside TrustedUIDs.
func (j *Jail) checkOwner(what string, fi fs.FileInfo) error {
	if !permsChecked {
		return nil
	}
	uid, ok := fileOwner(fi)
	if !ok {
		return refusef("", "the owner of %s cannot be determined", what)
	}
	if !slices.Contains(j.trusted, uid) {
		return refusef("", "%s is owned by uid %d, which is not trusted (trusted uids: %v); chown it to a trusted user if it is meant to run", what, uid, j.trusted)
	}
	return nil
}

// isExecutable reports whether a program has any exec bit; without one it is run with bash.
func isExecutable(m fs.FileMode) bool { return !permsChecked || m&0o111 != 0 }

// unixMode returns m as the octal mode ls and chmod use, including setuid, setgid and sticky.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// describe names a non-regular file type for error messages.
func describe(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	default:
		return "a special file"
	}
}
