package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// extractVmlinux returns the uncompressed ELF kernel inside a bzImage, the
// way the kernel's scripts/extract-vmlinux does, but locating the payload
// through the boot protocol header instead of scanning for magic bytes.
// QEMU boots that ELF through its PVH entry, in about half the time the
// bzImage takes to decompress itself under emulation.
func extractVmlinux(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage")
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if off <= 0 || n <= 0 || off+n > len(bz) {
		return nil, fmt.Errorf("bzImage payload %d+%d lies outside its %d bytes", off, n, len(bz))
	}
	payload := bz[off : off+n]
	var out []byte
	var err error
	switch {
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		out, err = gunzip(payload)
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		out, err = decompressWith(payload, "xz", "-dc", "--single-stream")
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		out, err = decompressWith(payload, "zstd", "-dcq")
	case bytes.HasPrefix(payload, []byte{0x5d, 0x00, 0x00}):
		out, err = decompressWith(payload, "xz", "-dc", "--format=lzma")
	case bytes.HasPrefix(payload, []byte("BZh")):
		out, err = decompressWith(payload, "bzip2", "-dc")
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}):
		out, err = decompressWith(payload, "lz4", "-dc")
	default:
		return nil, fmt.Errorf("unknown bzImage compression (payload starts % x)", payload[:min(8, len(payload))])
	}
	// The kernel build appends the uncompressed size, which some tools
	// report as trailing garbage: what matters is a whole ELF came out.
	if !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, fmt.Errorf("decompressed kernel is not an ELF file (%d bytes, %v)", len(out), err)
	}
	return out, nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return io.ReadAll(zr)
}

// decompressWith pipes b through an external decompressor; the standard
// library has only gzip.
func decompressWith(b []byte, tool string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("%s is needed to decompress the kernel: %w", tool, err)
	}
	cmd := exec.Command(tool, args...)
	cmd.Stdin = bytes.NewReader(b)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", tool, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), err
}

// decompressModule returns a kernel module as finit_module takes it without
// flags, decompressing .ko.xz, .ko.zst and .ko.gz files.
func decompressModule(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		return b, nil
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return gunzip(b)
	case bytes.HasPrefix(b, []byte("\xfd7zXZ\x00")):
		return decompressWith(b, "xz", "-dc")
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return decompressWith(b, "zstd", "-dcq")
	}
	return nil, fmt.Errorf("%s: not an ELF module", path)
}
