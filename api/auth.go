package api

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"unicode"
)

// Role is what a token may do. Each role includes the ones before it.
type Role int

const (
	// RoleRead may look at everything: tasks, logs, executors, queues, audit.
	RoleRead Role = iota + 1
	// RoleOperate may also kill and retry tasks.
	RoleOperate
	// RoleAdmin may also submit new tasks.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleOperate:
		return "operate"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role's name: read, operate or admin.
func ParseRole(s string) (Role, bool) { return parseRole(s) }

func parseRole(s string) (Role, bool) {
	for _, r := range []Role{RoleRead, RoleOperate, RoleAdmin} {
		if r.String() == s {
			return r, true
		}
	}
	return 0, false
}

// Identity is who made a request.
type Identity struct {
	Name string
	Role Role
	// Tubes limits the identity to tasks of these tubes; nil = all. The
	// default tube (no tube) is written "-".
	Tubes []string
}

// CanSee reports whether the identity may see or act on a task of tube.
func (id *Identity) CanSee(tube string) bool {
	if id.Tubes == nil {
		return true
	}
	if tube == "" {
		tube = "-"
	}
	return slices.Contains(id.Tubes, tube)
}

// loopbackIdentity is everyone, when no tokens file is configured and the
// server listens on loopback only.
var loopbackIdentity = &Identity{Name: "loopback", Role: RoleAdmin}

type tokenEntry struct {
	Identity
	sum [sha256.Size]byte
}

// Tokens are the bearer tokens the server accepts. The file holds only
// their SHA-256, so reading it does not give a usable token.
type Tokens struct {
	entries []tokenEntry
}

// ErrTokens prefixes every problem with a tokens file.
var ErrTokens = errors.New("api: tokens file")

// LoadTokens reads a tokens file: one token a line,
//
//	NAME ROLE sha256:HEX [tubes=TUBE,TUBE]
//
// with '#' comments. ROLE is read, operate or admin. Every problem is
// reported, with its line.
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokens, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s is writable by others, who could add a token of their own; chmod go-w it", ErrTokens, path)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses the contents of a tokens file (see LoadTokens).
func ParseTokens(b []byte) (*Tokens, error) {
	t := &Tokens{}
	var problems []string
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("line %d: ", n)+fmt.Sprintf(format, args...))
		}
		if len(f) < 3 || len(f) > 4 {
			bad("want NAME ROLE sha256:HEX [tubes=A,B], got %d fields", len(f))
			continue
		}
		e := tokenEntry{Identity: Identity{Name: f[0]}}
		if strings.IndexFunc(e.Name, func(r rune) bool {
			return !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.@", r))
		}) >= 0 || len(e.Name) > 64 {
			bad("name %q: use up to 64 letters, digits and - _ . @", e.Name)
			continue
		}
		if names[e.Name] {
			bad("name %q is used twice; audit records name the token, so names must be unique", e.Name)
			continue
		}
		names[e.Name] = true
		var ok bool
		if e.Role, ok = parseRole(f[1]); !ok {
			bad("role %q: want read, operate or admin", f[1])
			continue
		}
		h, found := strings.CutPrefix(f[2], "sha256:")
		raw, err := hex.DecodeString(h)
		if !found || err != nil || len(raw) != sha256.Size {
			bad("want sha256: and 64 hex digits (make one with 'task-job server -new-token NAME ROLE')")
			continue
		}
		copy(e.sum[:], raw)
		if len(f) == 4 {
			list, found := strings.CutPrefix(f[3], "tubes=")
			if !found || list == "" {
				bad("the fourth field must be tubes=A,B (use - for the default tube)")
				continue
			}
			e.Tubes = strings.Split(list, ",")
		}
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrTokens, strings.Join(problems, "; "))
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%w: no tokens in it; without tokens the server listens on loopback only", ErrTokens)
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// lookup finds the token's identity. Every entry is compared, in constant
// time each, so the time taken says nothing about which one (nearly)
// matched.
func (t *Tokens) lookup(token string) *Identity {
	sum := sha256.Sum256([]byte(token))
	var found *Identity
	for i := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], t.entries[i].sum[:]) == 1 {
			found = &t.entries[i].Identity
		}
	}
	return found
}

// NewToken makes a random token and the tokens-file line that accepts it.
func NewToken(name string, role Role) (token, line string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token = "tj_" + hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	return token, fmt.Sprintf("%s %s sha256:%s", name, role, hex.EncodeToString(sum[:]))
}

// tokenCookie carries the token for the web page, set by its login form.
const tokenCookie = "taskjob_token"

// identify returns who sent r, nil when its token is missing or wrong.
func (s *Server) identify(r *http.Request) *Identity {
	if s.opt.Tokens == nil {
		return loopbackIdentity
	}
	tok := ""
	if h := r.Header.Get("Authorization"); h != "" {
		if v, ok := strings.CutPrefix(h, "Bearer "); ok {
			tok = strings.TrimSpace(v)
		}
	} else if c, err := r.Cookie(tokenCookie); err == nil {
		tok = c.Value
	}
	if tok == "" {
		return nil
	}
	return s.opt.Tokens.lookup(tok)
}
