package jail

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
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
	if !j.chroot {
		_, err := j.trustedHost(loader, depth+1)
		var re *RefusedError
		if errors.As(err, &re) {
			re.Reason = fmt.Sprintf("%s is run by %s, which on the host cannot be trusted: %s", prog, loader, re.Reason)
		}
		return err
	}
	resolved, _, err := j.resolveFile(strings.TrimPrefix(loader, "/"))
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			re.Reason = fmt.Sprintf("%s is run by %s, which in chroot mode lies inside cmd_dir and cannot be trusted: %s", prog, loader, re.Reason)
		}
		return err
	}
	return j.checkLoaders(resolved, depth+1)
}

// trustedHost applies rule 5 to a host program outside chroot mode (resolveHost) and to what it
// loads, at loader depth depth, and returns its resolved path. A pass stands for hostRecheck: the
// walk costs a few dozen system calls, twice for a script (its interpreter, then the ELF loader).
// A refusal is never remembered.
func (j *Jail) trustedHost(path string, depth int) (string, error) {
	if v, ok := j.hostChecked.Load(path); ok {
		if c := v.(hostCheck); time.Since(c.at) < hostRecheck {
			return c.resolved, nil
		}
	}
	resolved, err := j.resolveHost(path)
	if err == nil {
		err = j.checkLoaders(resolved, depth)
	}
	if err != nil {
		return "", err
	}
	j.hostChecked.Store(path, hostCheck{resolved: resolved, at: time.Now()})
	return resolved, nil
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
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)) && len(head) >= 64 && elf.Class(head[elf.EI_CLASS]) == elf.ELFCLASS64:
		return elf64Interp(f, head)
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

// elf64Interp reads the PT_INTERP of a 64-bit ELF file from its program
// headers alone, as the kernel does; debug/elf parses the whole file, a
// cost every task paid once host loaders were checked too.
func elf64Interp(f *os.File, head []byte) (string, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	if elf.Data(head[elf.EI_DATA]) == elf.ELFDATA2MSB {
		bo = binary.BigEndian
	}
	const phdrSize = 56 // sizeof(Elf64_Phdr)
	phoff, phentsize, phnum := bo.Uint64(head[32:40]), bo.Uint16(head[54:56]), bo.Uint16(head[56:58])
	if phnum == 0 {
		return "", nil
	}
	if phentsize != phdrSize || phoff > 1<<30 {
		return "", fmt.Errorf("unusual ELF program headers (size %d at %d)", phentsize, phoff)
	}
	phdrs := make([]byte, int(phnum)*phdrSize)
	if _, err := f.ReadAt(phdrs, int64(phoff)); err != nil {
		return "", err
	}
	for i := range int(phnum) {
		ph := phdrs[i*phdrSize:]
		if elf.ProgType(bo.Uint32(ph[0:4])) != elf.PT_INTERP {
			continue
		}
		off, size := bo.Uint64(ph[8:16]), bo.Uint64(ph[32:40])
		if size == 0 || size > 4096 || off > 1<<30 { // the kernel refuses a PT_INTERP over PATH_MAX
			return "", fmt.Errorf("unusual ELF interpreter entry (%d bytes at %d)", size, off)
		}
		b := make([]byte, size)
		if _, err := f.ReadAt(b, int64(off)); err != nil {
			return "", err
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}
