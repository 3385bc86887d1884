package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/taskjob/task-job/bytesize"
	"github.com/taskjob/task-job/internal/suggest"
)

// maxCommaRepairs bounds how many missing commas one file may lack. Real
// files lack one or two; the bound keeps a pathological file from costing a
// re-parse per member.
const maxCommaRepairs = 32

// maxPasswordFileBytes bounds redis_password_file: a password is short, and
// a large file is a wrong path.
const maxPasswordFileBytes = 64 * KiB

// Load reads the config file at path and parses it like Parse. It then
// checks what only the file system can tell: that cmd_dir exists and is a
// directory, and that redis_password_file can be read (its content, trailing
// newlines trimmed, becomes RedisPassword). A relative redis_password_file
// is taken relative to the config file's directory.
//
// The error is Errors when the file has problems, listing all of them.
func Load(path string) (*Config, []Warning, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, nil, err
	}
	p := newParser(path, data)
	p.parse()
	if p.cfg != nil {
		p.checkFiles()
	}
	return p.result()
}

// Parse parses the content of a config file; filename is used only in
// positions. It touches no file: cmd_dir and redis_password_file are
// checked by Load.
//
// The error is Errors when the content has problems, listing all of them.
// Warnings are returned even then.
func Parse(filename string, data []byte) (*Config, []Warning, error) {
	p := newParser(filename, data)
	p.parse()
	return p.result()
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w; pass the config file with -config=PATH", err)
	}
	defer f.Close()
	// One byte more than allowed, so that Parse sees the file is too large.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return data, nil
}

// parser holds the state of one Parse or Load.
type parser struct {
	file string
	data []byte // the content as given; positions refer to it
	// buf is data with each accepted missing comma inserted; inserted holds
	// their offsets in buf, ascending, to map buf offsets back to data.
	buf      []byte
	inserted []int
	lines    []int // offset in data of each line's first byte

	cfg      *Config        // nil when the file could not be read as an object
	keyPos   map[string]Pos // where each key's value is
	warnings []Warning
	errs     Errors
}

func newParser(file string, data []byte) *parser {
	p := &parser{file: file, data: data, keyPos: make(map[string]Pos), lines: []int{0}}
	for i, b := range data {
		if b == '\n' {
			p.lines = append(p.lines, i+1)
		}
	}
	return p
}

// pos maps an offset in buf to a position in the original content.
func (p *parser) pos(off int) Pos {
	n, _ := slices.BinarySearch(p.inserted, off) // inserted commas before off
	off -= n
	line, found := slices.BinarySearch(p.lines, off)
	if !found {
		line-- // off lies inside the previous line
	}
	return Pos{File: p.file, Line: line + 1, Col: off - p.lines[line] + 1}
}

// fileErr records a problem with the file as a whole.
func (p *parser) fileErr(format string, args ...any) {
	p.errs = append(p.errs, Error{Pos: Pos{File: p.file}, Msg: fmt.Sprintf(format, args...)})
}

// keyErr records a problem at pos with key.
func (p *parser) keyErr(pos Pos, key, format string, args ...any) {
	p.errs = append(p.errs, Error{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warn(pos Pos, format string, args ...any) {
	p.warnings = append(p.warnings, Warning{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// parse reads the content into p.cfg, recording every problem.
func (p *parser) parse() {
	if len(p.data) > MaxFileBytes {
		p.fileErr("the file is larger than %s; is it really the config file?", bytesize.Format(MaxFileBytes))
		return
	}
	if len(bytes.TrimSpace(p.data)) == 0 {
		p.fileErr(`the file is empty; it must hold a JSON object, like {"redis_addr": "127.0.0.1:6379"}`)
		return
	}
	root, ok := p.parseHuJSON()
	if !ok {
		return
	}
	obj, ok := root.Value.(*hujson.Object)
	if !ok {
		p.keyErr(p.pos(root.StartOffset), "", "the file holds %s; it must hold one JSON object { ... }", kindName(root.Value))
		return
	}
	p.cfg = newConfig()
	p.readMembers(obj)
	p.cfg.fillDefaults()
	p.errs = append(p.errs, p.cfg.validate(p.posOf)...)
}

// readMembers sets the Config field of each member, reporting unknown and
// duplicate keys and values of the wrong type.
func (p *parser) readMembers(obj *hujson.Object) {
	seen := make(map[string]Pos)
	for _, m := range obj.Members {
		key := m.Name.Value.(hujson.Literal).String() // hujson guarantees a string
		namePos := p.pos(m.Name.StartOffset)
		if first, dup := seen[key]; dup {
			p.keyErr(namePos, key, "duplicate key, first set at line %d:%d; keep one", first.Line, first.Col)
			continue
		}
		seen[key] = namePos
		set, known := fields[key]
		if !known {
			if s := suggest.Nearest(key, fieldNames); s != "" {
				p.keyErr(namePos, key, "unknown key; did you mean %q?", s)
			} else {
				p.keyErr(namePos, key, "unknown key; known keys are %s", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
			}
			continue
		}
		valuePos := p.pos(m.Value.StartOffset)
		p.keyPos[key] = valuePos
		if m.Value.Value.Kind() == 'n' {
			continue // null keeps the default
		}
		if err := set(p.cfg, m.Value.Value); err != nil {
			p.keyErr(valuePos, key, "%v", err)
		}
	}

	c := p.cfg
	if c.RedisPassword != "" {
		if c.RedisPasswordFile != "" {
			p.keyErr(p.keyPos["redis_password_file"], "redis_password_file", "redis_password is set too; keep only redis_password_file")
		} else {
			p.warn(p.keyPos["redis_password"], "redis_password: the password is stored in the config file; "+
				"move it to a file only task-job can read and set redis_password_file")
		}
	}
	if c.SandboxUser == "root" || c.SandboxUser == "0" {
		p.warn(p.posOf("sandbox_user"), "sandbox_user: tasks run as root by default; "+
			"prefer an unprivileged user and allow root per policy rule")
	}
	if c.SandboxNetwork {
		p.warn(p.keyPos["sandbox_network"], "sandbox_network: every task gets the host's network; "+
			"prefer allowing it per policy rule")
	}
	if c.Isolation == IsolationOff {
		p.warn(p.keyPos["isolation"], `isolation: "off" runs tasks without cgroups or namespaces: `+
			"a task can see and signal every process on the host and use all its memory")
	}
}

// derivedFrom maps each key whose default derives from another key to that key.
var derivedFrom = map[string]string{
	"queue_control_name": "queue_name",
	"logs_channel":       "queue_name",
	"spool_dir":          "state_dir",
	"work_dir":           "state_dir",
	"audit_stream":       "queue_name",
}

// posOf says where a key was set. A derived default points at the key it
// derives from; any other default points at the file.
func (p *parser) posOf(key string) Pos {
	if pos, ok := p.keyPos[key]; ok {
		return pos
	}
	if pos, ok := p.keyPos[derivedFrom[key]]; ok {
		return pos
	}
	return Pos{File: p.file}
}

// checkFiles checks cmd_dir and reads redis_password_file.
func (p *parser) checkFiles() {
	c := p.cfg
	p.checkKafkaFiles()
	if filepath.IsAbs(c.CmdDir) { // otherwise validate has said so already
		fi, err := os.Stat(c.CmdDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.errs = append(p.errs, Error{Pos: p.posOf("cmd_dir"), Key: "cmd_dir", Err: err,
				Msg: fmt.Sprintf("%s does not exist; create it or set cmd_dir to an existing directory", c.CmdDir)})
		case err != nil:
			p.errs = append(p.errs, Error{Pos: p.posOf("cmd_dir"), Key: "cmd_dir", Err: err,
				Msg: fmt.Sprintf("cannot be checked: %v", err)})
		case !fi.IsDir():
			p.keyErr(p.posOf("cmd_dir"), "cmd_dir", "%s is not a directory", c.CmdDir)
		}
	}
	if c.RedisPasswordFile == "" {
		return
	}
	path := c.RedisPasswordFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.file), path)
	}
	c.RedisPasswordFile = path
	pos := p.posOf("redis_password_file")
	password, mode, err := readPassword(path)
	if err != nil {
		p.errs = append(p.errs, Error{Pos: pos, Key: "redis_password_file", Err: err,
			Msg: fmt.Sprintf("%v; check the path and that task-job may read the file", err)})
		return
	}
	if password == "" {
		p.keyErr(pos, "redis_password_file", "%s is empty; write the Redis password in it", path)
		return
	}
	if runtime.GOOS != "windows" && mode.Perm()&0o077 != 0 {
		p.warn(pos, "redis_password_file: %s can be read by other users (mode %04o); run chmod 600 %s", path, mode.Perm(), path)
	}
	if c.RedisPassword == "" {
		c.RedisPassword = password
	}
}

func readPassword(path string) (string, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordFileBytes+1))
	if err != nil {
		return "", 0, err
	}
	if len(data) > maxPasswordFileBytes {
		return "", 0, fmt.Errorf("%s is larger than %s, too large for a password", path, bytesize.Format(maxPasswordFileBytes))
	}
	return strings.TrimRight(string(data), "\r\n"), fi.Mode(), nil
}

// result returns what Parse and Load return: the Config only when there is
// no problem, and everything sorted by position.
func (p *parser) result() (*Config, []Warning, error) {
	slices.SortStableFunc(p.warnings, func(a, b Warning) int { return comparePos(a.Pos, b.Pos) })
	if len(p.errs) > 0 {
		p.errs.sortByPos()
		return nil, p.warnings, p.errs
	}
	return p.cfg, p.warnings, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// parseHuJSON parses p.data, accepting a comma missing between two members
// on separate lines (the original sample lacked one) with a warning. Other
// syntax errors are recorded with their position.
func (p *parser) parseHuJSON() (hujson.Value, bool) {
	p.buf = bytes.Clone(p.data)
	if bytes.HasPrefix(p.buf, utf8BOM) {
		// Editors on Windows add a byte order mark. Blanking it to spaces
		// keeps every offset, so positions stay right.
		copy(p.buf, "   ")
	}
	for {
		v, err := hujson.Parse(p.buf)
		if err == nil {
			return v, true
		}
		off, msg := p.syntaxError(err)
		if p.acceptMissingComma(off, msg) {
			continue
		}
		p.keyErr(p.pos(off), "", "%s", p.explain(off, msg))
		return v, false
	}
}

var hujsonErrorPattern = regexp.MustCompile(`^hujson: line (\d+), column (\d+): `)

// syntaxError finds the offset in p.buf that a hujson error points at and
// the error's own message. hujson reports only line and column, in text.
func (p *parser) syntaxError(err error) (off int, msg string) {
	msg = err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		msg = inner.Error()
	}
	m := hujsonErrorPattern.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, msg
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	off = 0
	for range line - 1 {
		i := bytes.IndexByte(p.buf[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return min(off+col-1, len(p.buf)), msg
}

// acceptMissingComma inserts a comma at off when hujson stopped there for
// want of one, and the next member starts on a later line than the previous
// value ends: the slip the original sample made. On the same line a missing
// comma is more likely a real mistake, and stays an error.
func (p *parser) acceptMissingComma(off int, msg string) bool {
	if !isMissingComma(p.buf, off, msg) || len(p.inserted) >= maxCommaRepairs {
		return false
	}
	if n := len(p.inserted); n > 0 && off <= p.inserted[n-1] {
		return false // no progress; cannot happen, but never loop
	}
	end := valueEndBefore(p.buf, off)
	if !bytes.Contains(p.buf[end:off], []byte("\n")) {
		return false
	}
	p.warn(p.pos(end), "missing ',' after this value accepted; add it to keep the file valid JSON")
	p.buf = slices.Insert(p.buf, off, ',')
	p.inserted = append(p.inserted, off)
	return true
}

func isMissingComma(buf []byte, off int, msg string) bool {
	return off < len(buf) && buf[off] == '"' && strings.Contains(msg, "after object value")
}

// valueEndBefore returns the offset just past the last JSON token (not
// whitespace or comment) that ends at or before off.
func valueEndBefore(b []byte, off int) int {
	end := 0
	for i := 0; i < off && i < len(b); {
		switch {
		case b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n':
			i++
		case bytes.HasPrefix(b[i:], []byte("//")):
			if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(b)
			}
		case bytes.HasPrefix(b[i:], []byte("/*")):
			if j := bytes.Index(b[i+2:], []byte("*/")); j >= 0 {
				i += 2 + j + 2
			} else {
				i = len(b)
			}
		case b[i] == '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			i++
			end = min(i, len(b))
		default:
			i++
			end = i
		}
	}
	return end
}

// atObjectName reports whether off is where an object member's name
// belongs: just after '{' or ','.
func (p *parser) atObjectName(off int) bool {
	end := valueEndBefore(p.buf, off)
	return end > 0 && (p.buf[end-1] == '{' || p.buf[end-1] == ',')
}

// explain turns a hujson message into one that says what to do.
func (p *parser) explain(off int, msg string) string {
	var next byte
	if off < len(p.buf) {
		next = p.buf[off]
	}
	switch {
	case strings.Contains(msg, io.ErrUnexpectedEOF.Error()):
		return "unexpected end of file; a closing '}', ']' or '\"' is missing"
	case isMissingComma(p.buf, off, msg) && len(p.inserted) >= maxCommaRepairs:
		return "missing ','; too many are missing to accept, add them"
	case isMissingComma(p.buf, off, msg):
		return "missing ',' between members on the same line"
	case next == '\'':
		return msg + "; strings and keys need double quotes"
	case strings.HasPrefix(msg, "invalid literal: ") && p.atObjectName(off):
		word := strings.TrimPrefix(msg, "invalid literal: ")
		return fmt.Sprintf("key %s needs double quotes: %q", word, word)
	case strings.Contains(msg, "at start of object name"):
		return msg + "; keys need double quotes"
	case strings.Contains(msg, "after top-level value"):
		return msg + "; the file must hold exactly one JSON object"
	case strings.HasPrefix(msg, "invalid literal"):
		return msg + "; values are strings in double quotes, numbers, true, false or null"
	}
	return msg
}
