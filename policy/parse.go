package policy

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/taskjob/task-job/jail"
)

// MaxFileBytes bounds a policy file. Real policies are a few kilobytes; a
// bigger file is a mistake (the wrong path), and parsing it would cost
// memory for nothing.
const MaxFileBytes = 1 << 20

// Bounds on values, so that a typo is an error rather than a limit nobody meant.
const (
	maxCPU       = 1024
	maxPids      = 1 << 22 // the kernel's own ceiling for pid_max
	maxNameBytes = 256     // users, groups, key ids (as task.MaxIDBytes)
	maxDescBytes = 4096
)

var (
	ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

var limitAttrs = []hcl.AttributeSchema{
	{Name: "user"}, {Name: "group"}, {Name: "memory"}, {Name: "cpu"},
	{Name: "pids"}, {Name: "timeout"}, {Name: "network"}, {Name: "env"},
	{Name: "secret_env"},
}

var (
	rootSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "defaults"},
		{Type: "rule", LabelNames: []string{"name"}},
	}}
	defaultsSchema = &hcl.BodySchema{Attributes: limitAttrs}
	ruleSchema     = &hcl.BodySchema{Attributes: append(slices.Clone(limitAttrs),
		hcl.AttributeSchema{Name: "cmdline", Required: true},
		hcl.AttributeSchema{Name: "args"},
		hcl.AttributeSchema{Name: "args_rest"},
		hcl.AttributeSchema{Name: "keys"},
		hcl.AttributeSchema{Name: "description"},
		// Rules only, not defaults: a writable cmd_dir is a choice made
		// for one program, in the open.
		hcl.AttributeSchema{Name: "cmd_dir_writable"},
	)}
)

// Load reads and parses the policy file at path. A file over MaxFileBytes
// is refused unread beyond that size.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy: reading %s: %w", path, err)
	}
	return Parse(src, path)
}

// Parse parses a policy file's content; filename is used in error
// positions. Every problem is reported at once in a *Error.
func Parse(src []byte, filename string) (*Policy, error) {
	if len(src) > MaxFileBytes {
		return nil, &Error{Problems: []Problem{{File: filename, Line: 1, Column: 1,
			Message: fmt.Sprintf("the policy file is over %d bytes (1 MiB); is this the right file?", MaxFileBytes)}}}
	}
	ps := &parser{}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	ps.diags = append(ps.diags, diags...)
	if f == nil || f.Body == nil {
		return nil, newError(filename, ps.diags)
	}
	content, diags := f.Body.Content(rootSchema)
	ps.diags = append(ps.diags, diags...)

	var (
		defaults     settings
		defaultsLine int
		rules        []rule
		own          []settings
		seen         = map[string]int{}
	)
	for _, b := range content.Blocks {
		switch b.Type {
		case "defaults":
			if defaultsLine != 0 {
				ps.errorf(b.DefRange, "only one defaults block is allowed; the first is at line %d", defaultsLine)
				continue
			}
			defaultsLine = b.DefRange.Start.Line
			c, d := b.Body.Content(defaultsSchema)
			ps.diags = append(ps.diags, d...)
			defaults = ps.settings(c.Attributes)
		case "rule":
			name := b.Labels[0]
			switch first, dup := seen[name]; {
			case dup:
				ps.errorf(b.LabelRanges[0], "rule %q is defined twice; the first is at line %d", name, first)
			case !ruleNameRE.MatchString(name):
				ps.errorf(b.LabelRanges[0], "rule name %q must be 1 to 64 letters, digits and . _ : - starting with a letter or digit", name)
			default:
				seen[name] = b.DefRange.Start.Line
			}
			c, d := b.Body.Content(ruleSchema)
			ps.diags = append(ps.diags, d...)
			ru := ps.rule(name, c.Attributes)
			ru.line = b.DefRange.Start.Line
			rules = append(rules, ru)
			own = append(own, ps.settings(c.Attributes))
		}
	}
	if ps.diags.HasErrors() {
		return nil, newError(filename, ps.diags)
	}

	p := &Policy{file: filename, defaults: defaults.merge(settings{}), rules: rules, byWords: map[string][]int{}}
	for i := range p.rules {
		ru := &p.rules[i]
		ru.limits = defaults.merge(own[i])
		ru.limits.CmdDirWritable = ru.cmdDirWritable
		ru.capFrom = "defaults'"
		if own[i].timeout != nil {
			ru.capFrom = "rule's"
		}
		k := wordsKey(ru.words)
		p.byWords[k] = append(p.byWords[k], i)
	}
	return p, nil
}

// settings are the limit attributes of a defaults block or a rule; nil
// means not set there.
type settings struct {
	user, group *string
	memory      *int64
	cpu         *float64
	pids        *int64
	timeout     *time.Duration
	network     *bool
	env         map[string]string
	secretEnv   []string
}

// merge overlays own on s: own's values win, env is merged by name.
func (s settings) merge(own settings) Limits {
	var l Limits
	pick := func(a, b *string) string {
		if b != nil {
			return *b
		}
		if a != nil {
			return *a
		}
		return ""
	}
	l.User, l.Group = pick(s.user, own.user), pick(s.group, own.group)
	l.MemoryBytes = *cmpOr(own.memory, s.memory, new(int64))
	l.CPUCores = *cmpOr(own.cpu, s.cpu, new(float64))
	l.Pids = *cmpOr(own.pids, s.pids, new(int64))
	l.Timeout = *cmpOr(own.timeout, s.timeout, new(time.Duration))
	l.Network = *cmpOr(own.network, s.network, new(bool))
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range own.env {
		env[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		l.Env = append(l.Env, k+"="+env[k])
	}
	// secret_env is merged too: a name the defaults call secret stays so.
	if secret := slices.Concat(s.secretEnv, own.secretEnv); len(secret) > 0 {
		slices.Sort(secret)
		l.SecretEnv = slices.Compact(secret)
	}
	return l
}

// cmpOr returns the first non-nil pointer.
func cmpOr[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

type parser struct {
	diags hcl.Diagnostics
}

func (ps *parser) errorf(rng hcl.Range, format string, args ...any) {
	ps.diags = append(ps.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

// settings reads the limit attributes present in attrs; others are left
// to the caller.
func (ps *parser) settings(attrs hcl.Attributes) settings {
	var s settings
	for _, name := range []string{"user", "group", "memory", "cpu", "pids", "timeout", "network", "env", "secret_env"} {
		a := attrs[name]
		if a == nil {
			continue
		}
		if name == "secret_env" {
			s.secretEnv = ps.secretEnv(a)
			continue
		}
		v, ok := ps.value(a)
		if !ok {
			continue
		}
		rng := a.Expr.Range()
		switch name {
		case "user", "group":
			if id, ok := ps.account(name, v, rng); ok {
				if name == "user" {
					s.user = &id
				} else {
					s.group = &id
				}
			}
		case "memory":
			if v.Type() == cty.Number {
				ps.errorf(rng, "memory = %s has no unit; write it as a string, e.g. \"256MiB\" or \"1048576\" for bytes", v.AsBigFloat().Text('g', -1))
				continue
			}
			if str, ok := ps.str(name, v, rng); ok {
				n, err := ParseSize(str)
				if err != nil {
					ps.errorf(rng, "memory: %v", err)
					continue
				}
				s.memory = &n
			}
		case "cpu":
			if v.Type() != cty.Number {
				ps.errorf(rng, "cpu must be a number of cores, e.g. 1.5, not %s", v.Type().FriendlyName())
				continue
			}
			f, _ := v.AsBigFloat().Float64()
			if !finite(f) || f <= 0 || f > maxCPU {
				ps.errorf(rng, "cpu = %s must be more than 0 and at most %d cores", v.AsBigFloat().Text('g', 10), maxCPU)
				continue
			}
			s.cpu = &f
		case "pids":
			if v.Type() != cty.Number {
				ps.errorf(rng, "pids must be a whole number, e.g. 128, not %s", v.Type().FriendlyName())
				continue
			}
			bf := v.AsBigFloat()
			if !bf.IsInt() || bf.Cmp(big.NewFloat(1)) < 0 || bf.Cmp(big.NewFloat(maxPids)) > 0 {
				ps.errorf(rng, "pids = %s must be a whole number from 1 to %d", bf.Text('g', 10), maxPids)
				continue
			}
			n, _ := bf.Int64()
			s.pids = &n
		case "timeout":
			if v.Type() == cty.Number {
				ps.errorf(rng, "timeout = %s has no unit; write it as a string, e.g. \"%ss\"", v.AsBigFloat().Text('g', -1), v.AsBigFloat().Text('g', -1))
				continue
			}
			if str, ok := ps.str(name, v, rng); ok {
				d, err := parseDuration(str)
				if err != nil {
					ps.errorf(rng, "%v", err)
					continue
				}
				s.timeout = &d
			}
		case "network":
			if v.Type() != cty.Bool {
				ps.errorf(rng, "network must be true or false, not %s", v.Type().FriendlyName())
				continue
			}
			b := v.True()
			s.network = &b
		case "env":
			s.env = ps.env(a, v)
		}
	}
	return s
}

// rule reads a rule's own attributes (its limits are read by settings).
func (ps *parser) rule(name string, attrs hcl.Attributes) rule {
	ru := rule{name: name}
	if a := attrs["cmdline"]; a != nil {
		if v, ok := ps.value(a); ok {
			if s, ok := ps.str("cmdline", v, a.Expr.Range()); ok {
				words, err := jail.Split(s)
				if err != nil {
					var re *jail.RefusedError
					why := err.Error()
					if errors.As(err, &re) {
						why = re.Reason
					}
					ps.errorf(a.Expr.Range(), "cmdline %q cannot be split into words: %s", s, why)
				} else {
					ru.cmdline, ru.words = s, words
				}
			}
		}
	}
	if a := attrs["args"]; a != nil {
		for i, e := range ps.strings(a) {
			if re, ok := ps.regexp(fmt.Sprintf("args[%d]", i), e.s, e.rng); ok {
				ru.args = append(ru.args, re)
				ru.argSrc = append(ru.argSrc, e.s)
			}
		}
	}
	if a := attrs["args_rest"]; a != nil {
		s, ok := "", false
		if v, vok := ps.value(a); vok {
			s, ok = ps.str("args_rest", v, a.Expr.Range())
		}
		switch {
		case !ok:
		case s == "":
			ps.errorf(a.Expr.Range(), "args_rest is empty, which would allow only empty extra arguments; remove it to allow no extra arguments")
		default:
			if re, ok := ps.regexp("args_rest", s, a.Expr.Range()); ok {
				ru.rest, ru.restSrc = re, s
			}
		}
	}
	if a := attrs["keys"]; a != nil {
		elems := ps.strings(a)
		ru.keys = []string{}
		for _, e := range elems {
			if e.s == "" || len(e.s) > maxNameBytes || hasControl(e.s) {
				ps.errorf(e.rng, "key id %q must be 1 to %d bytes of printable text", e.s, maxNameBytes)
				continue
			}
			ru.keys = append(ru.keys, e.s)
		}
		if len(elems) == 0 && !ps.hasErrorAt(a.Expr.Range()) {
			ps.errorf(a.Expr.Range(), "keys is empty, so no task could use rule %q; list key ids, or remove keys to let any task use it", name)
		}
	}
	if a := attrs["cmd_dir_writable"]; a != nil {
		if v, ok := ps.value(a); ok {
			if v.Type() != cty.Bool {
				ps.errorf(a.Expr.Range(), "cmd_dir_writable must be true or false, not %s", v.Type().FriendlyName())
			} else {
				ru.cmdDirWritable = v.True()
			}
		}
	}
	if a := attrs["description"]; a != nil {
		if v, ok := ps.value(a); ok {
			if s, ok := ps.str("description", v, a.Expr.Range()); ok {
				if len(s) > maxDescBytes || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
					ps.errorf(a.Expr.Range(), "description must be at most %d bytes of printable text", maxDescBytes)
				} else {
					ru.desc = s
				}
			}
		}
	}
	return ru
}

func (ps *parser) hasErrorAt(rng hcl.Range) bool {
	for _, d := range ps.diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && d.Subject.Overlaps(rng) {
			return true
		}
	}
	return false
}

// regexp compiles a whole-argument pattern. The author's text is compiled
// alone first, so that a pattern such as "a)|(b" cannot escape the anchors
// wrapped around it.
func (ps *parser) regexp(what, src string, rng hcl.Range) (*regexp.Regexp, bool) {
	if _, err := regexp.Compile(src); err != nil {
		ps.errorf(rng, "%s: regexp %q does not compile: %s", what, src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil, false
	}
	re, err := regexp.Compile(`^(?:` + src + `)$`)
	if err != nil {
		ps.errorf(rng, "%s: regexp %q does not compile: %s", what, src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil, false
	}
	return re, true
}

// value evaluates an attribute as a literal: no variables, no functions.
func (ps *parser) value(a *hcl.Attribute) (cty.Value, bool) {
	v, d := a.Expr.Value(nil)
	ps.diags = append(ps.diags, d...)
	if d.HasErrors() {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		if ps.hasErrorAt(a.Expr.Range()) {
			return cty.NilVal, false // a syntax error, already reported, left a hole
		}
		ps.errorf(a.Expr.Range(), "%s must be a literal value", a.Name)
		return cty.NilVal, false
	}
	if v.IsNull() {
		ps.errorf(a.Expr.Range(), "%s is null; remove the line to leave it unset", a.Name)
		return cty.NilVal, false
	}
	return v, true
}

func (ps *parser) str(name string, v cty.Value, rng hcl.Range) (string, bool) {
	if v.Type() != cty.String {
		ps.errorf(rng, "%s must be a string, not %s", name, v.Type().FriendlyName())
		return "", false
	}
	return v.AsString(), true
}

// account reads a user or group: a name or a numeric id, as text or a number.
func (ps *parser) account(name string, v cty.Value, rng hcl.Range) (string, bool) {
	if v.Type() == cty.Number {
		bf := v.AsBigFloat()
		if n, acc := bf.Uint64(); acc != big.Exact || n >= 1<<32-1 {
			ps.errorf(rng, "%s = %s is not a valid numeric id", name, bf.Text('g', 10))
			return "", false
		} else {
			return strconv.FormatUint(n, 10), true
		}
	}
	s, ok := ps.str(name, v, rng)
	if !ok {
		return "", false
	}
	switch {
	case s == "":
		ps.errorf(rng, "%s is empty; name a %s or give its numeric id", name, name)
		return "", false
	case len(s) > maxNameBytes || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == ':' || r == '/'
	}):
		ps.errorf(rng, "%s %q is not a valid %s name: at most %d bytes, no spaces, control characters, ':' or '/'", name, s, name, maxNameBytes)
		return "", false
	}
	if strings.Trim(s, "0123456789") == "" {
		if n, err := strconv.ParseUint(s, 10, 32); err != nil || n == 1<<32-1 {
			ps.errorf(rng, "%s %q is not a valid numeric id", name, s)
			return "", false
		}
	}
	return s, true
}

type strElem struct {
	s   string
	rng hcl.Range
}

// strings reads a list of strings, each with its own position when the
// list is written out literally.
func (ps *parser) strings(a *hcl.Attribute) []strElem {
	v, ok := ps.value(a)
	if !ok {
		return nil
	}
	if !v.Type().IsTupleType() && !v.Type().IsListType() {
		ps.errorf(a.Expr.Range(), "%s must be a list of strings, e.g. [\"a\", \"b\"], not %s", a.Name, v.Type().FriendlyName())
		return nil
	}
	exprs, d := hcl.ExprList(a.Expr)
	if d.HasErrors() || len(exprs) != v.LengthInt() {
		exprs = nil
	}
	out := []strElem{}
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		rng := a.Expr.Range()
		if exprs != nil {
			rng = exprs[i].Range()
		}
		if ev.IsNull() || ev.Type() != cty.String {
			what := "null"
			if !ev.IsNull() {
				what = ev.Type().FriendlyName()
			}
			ps.errorf(rng, "%s[%d] must be a string, not %s", a.Name, i, what)
			continue
		}
		out = append(out, strElem{ev.AsString(), rng})
	}
	return out
}

// secretEnv reads secret_env: a list of variable names whose values are
// masked wherever env is shown. A name the env does not set is allowed (it
// may come from the defaults, or a later edit), so is a repeat.
func (ps *parser) secretEnv(a *hcl.Attribute) []string {
	out := []string{}
	for _, e := range ps.strings(a) {
		if !envNameRE.MatchString(e.s) {
			ps.errorf(e.rng, "secret_env name %q must be letters, digits and _, not starting with a digit", e.s)
			continue
		}
		out = append(out, e.s)
	}
	return out
}

// env reads a map of variable names to values.
func (ps *parser) env(a *hcl.Attribute, v cty.Value) map[string]string {
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		ps.errorf(a.Expr.Range(), "env must be a map of names to strings, e.g. { LANG = \"C.UTF-8\" }, not %s", v.Type().FriendlyName())
		return nil
	}
	// Positions of each entry, when the map is written out literally.
	keyRng, valRng := map[string]hcl.Range{}, map[string]hcl.Range{}
	if pairs, d := hcl.ExprMap(a.Expr); !d.HasErrors() {
		for _, kv := range pairs {
			if k, d := kv.Key.Value(nil); !d.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
				keyRng[k.AsString()], valRng[k.AsString()] = kv.Key.Range(), kv.Value.Range()
			}
		}
	}
	at := func(m map[string]hcl.Range, k string) hcl.Range {
		if r, ok := m[k]; ok {
			return r
		}
		return a.Expr.Range()
	}
	env := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		kv, ev := it.Element()
		k := kv.AsString()
		if !envNameRE.MatchString(k) {
			ps.errorf(at(keyRng, k), "env name %q must be letters, digits and _, not starting with a digit", k)
			continue
		}
		if ev.IsNull() || (ev.Type() != cty.String && ev.Type() != cty.Number && ev.Type() != cty.Bool) {
			what := "null"
			if !ev.IsNull() {
				what = ev.Type().FriendlyName()
			}
			ps.errorf(at(valRng, k), "env %s must be a string, not %s", k, what)
			continue
		}
		var s string
		switch ev.Type() {
		case cty.String:
			s = ev.AsString()
		case cty.Number:
			s = ev.AsBigFloat().Text('f', -1)
		case cty.Bool:
			s = strconv.FormatBool(ev.True())
		}
		if strings.IndexByte(s, 0) >= 0 {
			ps.errorf(at(valRng, k), "env %s holds a NUL byte, which no environment variable can", k)
			continue
		}
		env[k] = s
	}
	return env
}

func hasControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl)
}
