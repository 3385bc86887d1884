package jail

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxLoaders bounds the chain of #! interpreters, as the kernel's own limit does.
const maxLoaders = 4

// checkLoaders applies rule 5 to what the kernel loads to run prog: the interpreter of a #!
// line (and its own, in turn) and an ELF program's loader (PT_INTERP). In chroot mode both are
// paths inside cmd_dir, where a file no trusted user wrote must not run; outside it they are the
// host's, and pass the same check from / (a #! line may name a directory others can write).
func (j *Jail) checkLoaders(prog string, depth int) error {
	if !j.chroot && !permsChecked {
		return nil
	}
	if depth >= maxLoaders {
		return refusef("", "%s: more than %d nested #! interpreters", prog, maxLoaders)
	}
	loader, err := loaderOf(prog)
	if err != nil {
		return &RefusedError{Reason: fmt.Sprintf("%s cannot be checked: %v", prog, err), Err: err}
	}
	if loader == "" {
		return nil
	}
	if !strings.HasPrefix(loader, "/") {
		return refusef("", "%s names its interpreter %q by a relative path, which would depend on the working directory; use an absolute path", prog, loader)
	}
	var resolved string
	if j.chroot {
		resolved, _, err = j.resolveFile(strings.TrimPrefix(loader, "/"))
	} else {
		resolved, err = j.resolveHost(loader)
	}
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			where := "on the host"
			if j.chroot {
				where = "in chroot mode lies inside cmd_dir and"
			}
			re.Reason = fmt.Sprintf("%s is run by %s, which %s cannot be trusted: %s", prog, loader, where, re.Reason)
		}
		return err
	}
	return j.checkLoaders(resolved, depth+1)
}

// loaderOf returns the interpreter named by prog's #! line or ELF PT_INTERP, "" if none.
func loaderOf(prog string) (string, error) {
	f, err := os.Open(prog)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 256) // the kernel reads no more of a #! line
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("#!")):
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return "", nil
		}
		return fields[0], nil
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		ef, err := elf.NewFile(f)
		if err != nil {
			return "", err
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				b, err := io.ReadAll(p.Open())
				if err != nil {
					return "", err
				}
				return string(bytes.TrimRight(b, "\x00")), nil
			}
		}
	}
	return "", nil
}
