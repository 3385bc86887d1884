package signature

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/taskjob/task-job/task"
)

// fuzzFields is everything the canonical form covers.
type fuzzFields struct {
	key, id, typ, tube, cmdline string
	ts                          int64
	ms                          int64
	args                        []string
}

func fieldsOf(tk *task.Task, key string, ts int64) fuzzFields {
	return fuzzFields{key: key, id: tk.ID, typ: tk.Type, tube: tk.Tube, cmdline: tk.Task.Cmdline,
		ts: ts, ms: TimeoutMillis(tk.Task.Timeout), args: slices.Clone(tk.Task.CmdArgs)}
}

func (f fuzzFields) equal(g fuzzFields) bool {
	return f.key == g.key && f.id == g.id && f.typ == g.typ && f.tube == g.tube && f.cmdline == g.cmdline &&
		f.ts == g.ts && f.ms == g.ms && slices.Equal(f.args, g.args)
}

// parseCanonical decodes a canonical form back into its fields. That it
// recovers every field proves the encoding injective: two inputs with
// equal bytes decode to equal fields.
func parseCanonical(b []byte) (fuzzFields, bool) {
	next := func() (string, bool) {
		i := bytes.IndexByte(b, ':')
		if i <= 0 {
			return "", false
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || n < 0 || strconv.Itoa(n) != string(b[:i]) || len(b) < i+1+n+1 || b[i+1+n] != '\n' {
			return "", false
		}
		s := string(b[i+1 : i+1+n])
		b = b[i+1+n+1:]
		return s, true
	}
	var f fuzzFields
	var ver, ts, ms, nargs string
	ok := true
	for _, p := range []*string{&ver, &f.key, &ts, &f.id, &f.typ, &f.tube, &f.cmdline, &ms, &nargs} {
		var s string
		if s, ok = next(); !ok {
			return f, false
		}
		*p = s
	}
	var err1, err2, err3 error
	f.ts, err1 = strconv.ParseInt(ts, 10, 64)
	f.ms, err2 = strconv.ParseInt(ms, 10, 64)
	n, err3 := strconv.Atoi(nargs)
	if ver != Version || err1 != nil || err2 != nil || err3 != nil || n < 0 {
		return f, false
	}
	for range n {
		s, ok := next()
		if !ok {
			return f, false
		}
		f.args = append(f.args, s)
	}
	return f, len(b) == 0
}

// FuzzCanonical builds a task from the input and a second one by changing
// one field to another input value (or to the same value), and checks the
// two canonical forms are equal exactly when all fields are. It also
// checks every form decodes back to its fields.
func FuzzCanonical(f *testing.F) {
	f.Add("web", "101", "test", "", "install.sh", "feature/homestead", int64(1764000000), 3600.0, uint8(0), "x", int64(1), 1.0)
	f.Add("k", "1:a", "\n", "2:", "", "", int64(-1), 0.0005, uint8(5), "1:a\n", int64(0), 0.0004)
	f.Add("a", "b", "c", "d", "e", "f\x00g\x00", int64(0), -1.0, uint8(9), "f", int64(0), 0.0)
	f.Add("web", "1", "", "", "x", "a\x00b", int64(7), 1.0, uint8(10), "a\x00b\x00", int64(7), 1.0)
	f.Fuzz(func(t *testing.T, key, id, typ, tube, cmdline, args string, ts int64, timeout float64,
		which uint8, alt string, altTS int64, altTimeout float64) {
		// NUL separates arguments, which cannot hold one anyway.
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "\x00")
		}
		a := &task.Task{ID: id, Type: typ, Tube: tube, Task: task.Spec{Cmdline: cmdline, CmdArgs: split(args), Timeout: task.Seconds(timeout)}}
		b := &task.Task{ID: id, Type: typ, Tube: tube, Task: task.Spec{Cmdline: cmdline, CmdArgs: split(args), Timeout: task.Seconds(timeout)}}
		keyB, tsB := key, ts
		switch which % 11 {
		case 0:
			keyB = alt
		case 1:
			b.ID = alt
		case 2:
			b.Type = alt
		case 3:
			b.Tube = alt
		case 4:
			b.Task.Cmdline = alt
		case 5:
			b.Task.CmdArgs = split(alt)
		case 6:
			if len(b.Task.CmdArgs) > 0 {
				b.Task.CmdArgs[int(altTS&0xffff)%len(b.Task.CmdArgs)] = alt
			}
		case 7:
			b.Task.CmdArgs = append(b.Task.CmdArgs, alt)
		case 8:
			tsB = altTS
		case 9:
			b.Task.Timeout = task.Seconds(altTimeout)
		case 10:
			// Move text between neighbouring fields: a classic ambiguity.
			b.ID, b.Type = id+typ[:len(typ)/2], typ[len(typ)/2:]
		}
		ca, cb := Canonical(a, key, ts), Canonical(b, keyB, tsB)
		fa, fb := fieldsOf(a, key, ts), fieldsOf(b, keyB, tsB)
		if bytes.Equal(ca, cb) != fa.equal(fb) {
			t.Fatalf("canonical forms equal: %v, fields equal: %v\n%q\n%q", bytes.Equal(ca, cb), fa.equal(fb), ca, cb)
		}
		for _, c := range []struct {
			raw    []byte
			fields fuzzFields
		}{{ca, fa}, {cb, fb}} {
			got, ok := parseCanonical(c.raw)
			if !ok || !got.equal(c.fields) {
				t.Fatalf("canonical form %q does not decode back to its fields (ok %v)", c.raw, ok)
			}
		}
		if MAC(secretA, a, key, ts) != MAC(secretA, b, keyB, tsB) && fa.equal(fb) {
			t.Fatal("equal fields, different MACs")
		}
	})
}
