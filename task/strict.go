package task

import (
	"bytes"
	"encoding/json"
	"strings"
)

// fields names the keys an object may hold, spelt exactly; a key with a
// nested object maps to that object's fields, a leaf to nil.
type fields map[string]fields

var sigFields = fields{"key": nil, "ts": nil, "mac": nil}

// freeKey marks an object whose keys are data (constraints): any key
// may appear, but each only once, since readers disagree on which of two
// copies wins.
const freeKey = "\x00any"

var constraintFields = fields{freeKey: nil}

var (
	taskFields = fields{
		"id": nil, "type": nil, "tube": nil,
		"task":        {"cmdline": nil, "cmd_args": nil, "timeout": nil},
		"sig":         sigFields,
		"constraints": constraintFields,
	}
	controlFields = fields{"id": nil, "type": nil, "sig": sigFields}
)

// PeekBytes is how much of an oversized message is read to find its id:
// the id is read only from this prefix, never from the whole message.
const PeekBytes = 4 << 10

// scanned is what scanKeys found.
type scanned struct {
	id, typ string // "" when none can be read
	err     error  // the first problem with the keys, if any
}

// scanKeys walks the keys of a message: every object of the schema must
// spell its keys exactly and hold each once. It also reads the top-level
// id and type the way Decode would, from a message that may be invalid in
// any other way or cut short, so that a refusal can be reported on the id.
//
// Key names compare the way encoding/json matches them to fields
// (strings.EqualFold: Unicode simple folding, so the Kelvin sign K is a
// "k"): anything encoding/json would take for a known field, but spelt
// otherwise, is refused rather than silently matched.
func scanKeys(raw []byte, schema fields) scanned {
	var s scanned
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return s // decodeStrict says what is wrong
	}
	var ids, typs []string
	seen := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			// Cut short or malformed: the keys so far still count.
			s.noteKey(seen, schema, "", k)
			break
		}
		s.noteKey(seen, schema, "", k)
		if strings.EqualFold(k, "id") {
			ids = append(ids, readID(v))
		}
		if strings.EqualFold(k, "type") {
			typs = append(typs, readString(v, "type", MaxTypeBytes))
		}
		if sub := schema[k]; sub != nil && s.err == nil {
			s.err = checkObject(v, sub, k+".")
		}
	}
	// One id, under one key: with two (a duplicate, or "id" and "ID") no
	// one can tell which the sender meant, so neither is answered.
	if len(ids) == 1 {
		s.id = ids[0]
	}
	if len(typs) == 1 {
		s.typ = typs[0]
	}
	return s
}

// noteKey records k in seen and the first problem with it in s.err.
func (s *scanned) noteKey(seen map[string]string, schema fields, path, k string) {
	if err := keyProblem(seen, schema, path, k); err != nil && s.err == nil {
		s.err = err
	}
}

func keyProblem(seen map[string]string, schema fields, path, k string) error {
	if _, free := schema[freeKey]; free {
		if _, dup := seen[k]; dup {
			return invalid("key %q appears twice; each key may appear once", path+k)
		}
		seen[k] = k
		return nil
	}
	fold := foldKey(k)
	if prev, dup := seen[fold]; dup {
		if prev == k {
			return invalid("key %q appears twice; each key may appear once", path+k)
		}
		return invalid("keys %q and %q differ only in case; each key may appear once, spelt in lowercase", path+prev, path+k)
	}
	seen[fold] = k
	if _, ok := schema[k]; ok {
		return nil
	}
	for name := range schema {
		if strings.EqualFold(name, k) {
			return invalid("key %q must be spelt %q: keys are case-sensitive", path+k, path+name)
		}
	}
	if path != "" {
		return invalid("unknown field %q in %s", k, strings.TrimSuffix(path, "."))
	}
	return invalid("unknown field %q", k)
}

// foldKey maps every spelling strings.EqualFold calls equal to one string.
func foldKey(k string) string {
	return strings.ToLower(strings.ToUpper(k))
}

// checkObject checks the keys of a nested object (and its own nested
// objects). Anything but an object is left to decodeStrict to refuse.
func checkObject(raw json.RawMessage, schema fields, path string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		if err := keyProblem(seen, schema, path, k); err != nil {
			return err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		if sub := schema[k]; sub != nil {
			if err := checkObject(v, sub, path+k+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// readID reads an id value: a string that would pass Validate, or an
// integer, taken as its digits, so that a client that sent "id":101 is
// told why it was refused, on "101".
func readID(v json.RawMessage) string {
	if len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		if len(v) > MaxIDBytes || bytes.ContainsAny(v, ".eE") {
			return ""
		}
		return string(v)
	}
	return readString(v, "id", MaxIDBytes)
}

func readString(v json.RawMessage, field string, max int) string {
	var s string
	if json.Unmarshal(v, &s) != nil || checkText(field, s, max, field == "id") != nil {
		return ""
	}
	return s
}

// PeekID returns the top-level id and type of a message that may be
// invalid in every other way — wrong types, unknown fields, even cut short
// after the id — so that its rejection can still be reported to whoever
// waits on that id. It reads them exactly as Decode does (it is the same
// scan), so the id a refusal is reported on is never another than the one
// an accepted message runs as. It returns "" when no single usable id can
// be read: none, several ("id" twice, or "id" and "ID"), or one that is
// not a valid id.
func PeekID(raw []byte) (id, typ string) {
	s := scanKeys(raw, taskFields)
	return s.id, s.typ
}
