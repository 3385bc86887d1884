package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// The spill part of the queue is a list of segment files. Each holds records
// back to back, each record being
//
//	uint32 little-endian length of Data | Kind | Data
//
// There is no checksum or file header: a segment lives only as long as the
// Spool that wrote it (leftovers are deleted by New), so it is never read
// across a crash or by another version of this code. Splitting the spill into
// segments lets the disk budget shrink as the consumer catches up, instead of
// one file growing for as long as producers stay ahead of the reader.
const (
	segPrefix = "spool-"
	segSuffix = ".seg"
	hdrLen    = 5
)

// segment is one spill file. Records are appended at size and read back from
// off; recs counts those written but not yet read.
type segment struct {
	f    *os.File
	path string
	size int64
	off  int64
	recs int
}

func createSegment(dir string, seq uint64) (*segment, error) {
	path := filepath.Join(dir, fmt.Sprintf("%s%016d%s", segPrefix, seq, segSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: create spill file: %w", err)
	}
	return &segment{f: f, path: path}, nil
}

// remove closes and deletes the segment. A file already gone is not an error:
// the directory may have been cleaned up under us.
func (g *segment) remove() error {
	errClose := g.f.Close()
	errRemove := os.Remove(g.path)
	if errors.Is(errRemove, fs.ErrNotExist) {
		errRemove = nil
	}
	if err := errors.Join(errClose, errRemove); err != nil {
		return fmt.Errorf("spool: remove spill file: %w", err)
	}
	return nil
}

// spillable reports whether r can be encoded at all.
func spillable(r Record) bool { return uint64(len(r.Data)) <= math.MaxUint32 }

func appendRecord(buf []byte, r Record) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(r.Data)))
	buf = append(buf, r.Kind)
	return append(buf, r.Data...)
}

// write appends buf, which encodes n records, with a single positioned write.
// On failure the logical size stays where it was, so whatever part of buf
// reached the file is overwritten by the next successful write and never read.
func (g *segment) write(buf []byte, n int) error {
	if _, err := g.f.WriteAt(buf, g.size); err != nil {
		return fmt.Errorf("spool: write spill file: %w", err)
	}
	g.size += int64(len(buf))
	g.recs += n
	return nil
}

// read appends to dst the records that follow the read offset, up to limit
// bytes of memory cost but always at least one, so that a record larger than
// the memory budget still comes back. The records' Data share one freshly
// allocated buffer per call: one allocation per chunk, and the caller may keep
// them after they are acknowledged.
func (g *segment) read(dst []Record, limit int64) ([]Record, error) {
	left := g.size - g.off
	buf := make([]byte, min(left, max(limit, hdrLen)))
	if _, err := g.f.ReadAt(buf, g.off); err != nil {
		return dst, fmt.Errorf("spool: read spill file: %w", err)
	}
	var p int
	var cost int64
	for len(buf)-p >= hdrLen {
		n := int(binary.LittleEndian.Uint32(buf[p:]))
		end := p + hdrLen + n
		if end > len(buf) || (p > 0 && cost+memCost(n) > limit) {
			break
		}
		dst = append(dst, Record{Kind: buf[p+4], Data: buf[p+hdrLen : end : end]})
		cost += memCost(n)
		p = end
		g.recs--
	}
	if p == 0 {
		// The first record alone is larger than the chunk: read just it.
		if len(buf) < hdrLen {
			return dst, fmt.Errorf("spool: read spill file %s: truncated record header at offset %d", g.path, g.off)
		}
		n := int64(binary.LittleEndian.Uint32(buf))
		if hdrLen+n > left {
			return dst, fmt.Errorf("spool: read spill file %s: record of %d bytes at offset %d overruns the file", g.path, n, g.off)
		}
		data := make([]byte, n)
		if _, err := g.f.ReadAt(data, g.off+hdrLen); err != nil {
			return dst, fmt.Errorf("spool: read spill file: %w", err)
		}
		dst = append(dst, Record{Kind: buf[4], Data: data})
		p = hdrLen + int(n)
		g.recs--
	}
	g.off += int64(p)
	return dst, nil
}

// removeLeftovers deletes spill files a previous run left in dir. Their
// records were either delivered or are beyond recovery: the Spool that wrote
// them kept its position only in memory.
func removeLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: list spill directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: remove leftover spill files: %w", err)
	}
	return nil
}
