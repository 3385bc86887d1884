package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// rotatedSuffix matches what rotation appends to the base name:
// ".<first seq>-<last seq>.<UTC time>", seq zero-padded so names sort by seq.
var rotatedSuffix = regexp.MustCompile(`^\.(\d{20})-(\d{20})\.(\d{8}T\d{6}\.\d{9}Z)$`)

const rotatedTimeLayout = "20060102T150405.000000000Z"

func rotatedName(base string, first, last uint64, t time.Time) string {
	return fmt.Sprintf("%s.%020d-%020d.%s", base, first, last, t.UTC().Format(rotatedTimeLayout))
}

// chainFile is one file of a log: a rotated one or the current one.
type chainFile struct {
	Path        string
	First, Last uint64 // from a rotated file's name; 0 for the current file
	Rotated     bool
}

// chainFiles lists the files of the log at base in chain order: rotated
// files by first seq, then the current file if it exists.
func chainFiles(base string) ([]chainFile, error) {
	dir, name := filepath.Split(base)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot list %s: %w", dir, err)
	}
	var files []chainFile
	for _, e := range entries {
		n := e.Name()
		if len(n) <= len(name) || n[:len(name)] != name || e.IsDir() {
			continue
		}
		m := rotatedSuffix.FindStringSubmatch(n[len(name):])
		if m == nil {
			continue
		}
		first, _ := strconv.ParseUint(m[1], 10, 64)
		last, _ := strconv.ParseUint(m[2], 10, 64)
		files = append(files, chainFile{Path: filepath.Join(dir, n), First: first, Last: last, Rotated: true})
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].First != files[j].First {
			return files[i].First < files[j].First
		}
		return files[i].Path < files[j].Path
	})
	if st, err := os.Stat(base); err == nil && st.Mode().IsRegular() {
		files = append(files, chainFile{Path: base})
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return files, nil
}

// fileState is what Open needs to know about a file to continue its chain.
type fileState struct {
	size      int64
	firstSeq  uint64 // 0 when the file holds no complete record
	lastSeq   uint64
	lastHash  string
	tornLen   int64 // bytes after the last '\n', when the file does not end with one
	tornStart int64
	// tornWhole: the bytes after the last '\n' are one whole record that
	// continues the chain, cut short only before its newline. It is part
	// of the chain (lastSeq is its seq); only the newline is missing.
	tornWhole bool
}

// maxRecordLine bounds how much of a torn tail is read to see whether it
// is a whole record; audit records are far smaller.
const maxRecordLine = 1 << 20

// adoptTail makes a torn tail that is a whole record continuing the chain
// the last record. A write that stopped just before its newline left the
// record whole; treating it as torn would write its seq a second time.
func adoptTail(f *os.File, st *fileState) {
	if st.tornLen == 0 || st.tornLen > maxRecordLine {
		return
	}
	buf := make([]byte, st.tornLen)
	if _, err := f.ReadAt(buf, st.tornStart); err != nil {
		return
	}
	r, err := ParseLine(buf)
	if err != nil {
		return
	}
	prev := st.lastHash
	if st.lastSeq == 0 {
		prev = ZeroHash
	}
	if r.Seq != st.lastSeq+1 || r.Prev != prev {
		return
	}
	if st.firstSeq == 0 {
		st.firstSeq = r.Seq
	}
	st.lastSeq, st.lastHash, st.tornWhole = r.Seq, r.Hash, true
}

// readFileState reads the first and the last complete line of path. A
// missing file is an empty state.
func readFileState(path string) (fileState, error) {
	var st fileState
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("audit: cannot read %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return st, fmt.Errorf("audit: cannot read %s: %w", path, err)
	}
	st.size = info.Size()
	if st.size == 0 {
		return st, nil
	}
	// Find the last '\n' and the one before it, reading backwards in chunks.
	const chunk = 64 << 10
	var tail []byte
	off := st.size
	lastNL := int64(-1)
	for off > 0 && (lastNL < 0 || bytes.Count(tail, []byte{'\n'}) < 2) {
		n := int64(chunk)
		if off < n {
			n = off
		}
		off -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil {
			return st, fmt.Errorf("audit: cannot read %s: %w", path, err)
		}
		tail = append(buf, tail...)
		if lastNL < 0 {
			if i := bytes.LastIndexByte(tail, '\n'); i >= 0 {
				lastNL = off + int64(i)
			}
		}
	}
	if lastNL < 0 {
		// Not one complete line: the whole file is a torn write.
		st.tornStart, st.tornLen = 0, st.size
		adoptTail(f, &st)
		return st, nil
	}
	st.tornStart = lastNL + 1
	st.tornLen = st.size - st.tornStart
	body := tail[:lastNL-off] // everything up to the last '\n', from off
	lineStart := bytes.LastIndexByte(body, '\n') + 1
	last := body[lineStart:]
	r, err := ParseLine(last)
	if err != nil {
		return st, fmt.Errorf("audit: the last record of %s %v; the chain cannot be continued: run 'task-job audit -verify' and move the damaged file aside", path, err)
	}
	st.lastSeq, st.lastHash = r.Seq, r.Hash
	// The first seq names the file when it is rotated.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return st, fmt.Errorf("audit: cannot read %s: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 4096)
	first, err := br.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return st, fmt.Errorf("audit: cannot read %s: %w", path, err)
	}
	var head struct {
		Seq uint64 `json:"seq"`
	}
	st.firstSeq = st.lastSeq
	if fr, err := ParseLine(bytes.TrimSuffix(first, []byte{'\n'})); err == nil {
		st.firstSeq = fr.Seq
	} else if json.Unmarshal(first, &head) == nil && head.Seq != 0 {
		st.firstSeq = head.Seq
	}
	adoptTail(f, &st)
	return st, nil
}

// lines calls fn for each line of path (without '\n'), with its 1-based
// number; a last line without '\n' is passed with complete=false.
func lines(path string, fn func(n int, line []byte, complete bool) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: cannot read %s: %w", path, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			n++
			complete := line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			if ferr := fn(n, line, complete); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: cannot read %s: %w", path, err)
		}
	}
}
