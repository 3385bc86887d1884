package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// cpioWriter writes an uncompressed newc ("070701") archive, the format the
// kernel unpacks as an initramfs. Parent directories are added on demand,
// because the kernel's unpacker does not create them.
type cpioWriter struct {
	w    *bufio.Writer
	off  int64
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), dirs: map[string]bool{".": true, "/": true, "": true}, ino: 1}
}

const (
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// header writes an entry's header and name; the data follows.
func (c *cpioWriter) header(name string, mode uint32, size int64, rmaj, rmin uint32) {
	if c.err == nil && size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s is too large for newc", name)
	}
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	c.ino++
	fields := []uint32{c.ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmaj, rmin, uint32(len(name) + 1), 0}
	var sb strings.Builder
	sb.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&sb, "%08x", f)
	}
	sb.WriteString(name)
	sb.WriteByte(0)
	c.write([]byte(sb.String()))
	c.pad()
}

// clean turns an image path into the archive's relative form.
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (c *cpioWriter) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.parents(dir)
	c.dirs[dir] = true
	c.header(dir, modeDir|0o755, 0, 0, 0)
}

// Dir adds a directory (once).
func (c *cpioWriter) Dir(name string, perm uint32) {
	name = clean(name)
	if c.dirs[name] {
		return
	}
	c.parents(name)
	c.dirs[name] = true
	c.header(name, modeDir|perm, 0, 0, 0)
}

// File adds a regular file with the given content.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	name = clean(name)
	c.parents(name)
	c.header(name, modeReg|perm, int64(len(data)), 0, 0)
	c.write(data)
	c.pad()
}

// CopyFile adds the host file src as name, streaming its content.
func (c *cpioWriter) CopyFile(name string, perm uint32, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	name = clean(name)
	c.parents(name)
	c.header(name, modeReg|perm, st.Size(), 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, io.LimitReader(f, st.Size()))
	c.off += n
	if err == nil && n != st.Size() {
		err = fmt.Errorf("cpio: %s shrank while being copied", src)
	}
	c.err = err
	c.pad()
}

// Symlink adds a symbolic link; its target is the entry's data.
func (c *cpioWriter) Symlink(name, target string) {
	name = clean(name)
	c.parents(name)
	c.header(name, modeLink|0o777, int64(len(target)), 0, 0)
	c.write([]byte(target))
	c.pad()
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	name = clean(name)
	c.parents(name)
	c.header(name, modeChr|perm, 0, major, minor)
}

// Close writes the trailer and flushes.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// cpioEntry is what readCpio returns; the harness's own test uses it.
type cpioEntry struct {
	Name       string
	Mode       uint32
	RMaj, RMin uint32
	Data       []byte
}

// readCpio parses a newc archive up to its trailer.
func readCpio(r io.Reader) ([]cpioEntry, error) {
	br := bufio.NewReader(r)
	var off int64
	read := func(n int64) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		off += n
		return b, err
	}
	skipPad := func() error {
		if r := off % 4; r != 0 {
			_, err := read(4 - r)
			return err
		}
		return nil
	}
	var out []cpioEntry
	for {
		h, err := read(110)
		if err != nil {
			return out, fmt.Errorf("cpio header: %w", err)
		}
		if string(h[:6]) != "070701" {
			return out, errors.New("cpio: bad magic " + strconv.Quote(string(h[:6])))
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return out, err
			}
			f[i] = uint32(v)
		}
		name, err := read(int64(f[11]))
		if err != nil {
			return out, err
		}
		if err := skipPad(); err != nil {
			return out, err
		}
		e := cpioEntry{Name: strings.TrimSuffix(string(name), "\x00"), Mode: f[1], RMaj: f[9], RMin: f[10]}
		if e.Name == "TRAILER!!!" {
			return out, nil
		}
		if e.Data, err = read(int64(f[6])); err != nil {
			return out, err
		}
		if err := skipPad(); err != nil {
			return out, err
		}
		out = append(out, e)
	}
}
