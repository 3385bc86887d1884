package task

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestParseAcceptsTheOriginalMessage(t *testing.T) {
	raw := `{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600}}`
	got, err := Parse([]byte(raw), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "101" || got.Type != "test" || got.Task.Cmdline != "install.sh" ||
		len(got.Task.CmdArgs) != 1 || got.Task.CmdArgs[0] != "feature/homestead" || got.Task.Timeout.Duration() != time.Hour {
		t.Fatalf("parsed %+v", got)
	}
}

func TestParseRefusesBadInput(t *testing.T) {
	long := strings.Repeat("a", MaxIDBytes+1)
	tests := []struct {
		name, raw, want string
	}{
		{"empty", ``, "empty"},
		{"not json", `hello`, "malformed JSON"},
		{"array", `[1,2]`, "must be a JSON"},
		{"truncated", `{"id":"1","task":{"cmdline":"a"`, "cut short"},
		{"missing id", `{"task":{"cmdline":"a.sh"}}`, "id is missing"},
		{"id number", `{"id":101,"task":{"cmdline":"a.sh"}}`, "id must be a JSON string"},
		{"long id", `{"id":"` + long + `","task":{"cmdline":"a.sh"}}`, "over the limit"},
		{"control char id", `{"id":"a\nb","task":{"cmdline":"a.sh"}}`, "control character"},
		{"no cmdline", `{"id":"1","task":{}}`, "cmdline is empty"},
		{"blank cmdline", `{"id":"1","task":{"cmdline":"   "}}`, "cmdline is empty"},
		{"args not array", `{"id":"1","task":{"cmdline":"a.sh","cmd_args":"x y"}}`, "cmd_args must be a JSON array"},
		{"args numbers", `{"id":"1","task":{"cmdline":"a.sh","cmd_args":[1]}}`, "must be a JSON string"},
		{"NUL arg", `{"id":"1","task":{"cmdline":"a.sh","cmd_args":["a\u0000b"]}}`, "NUL"},
		{"NUL cmdline", `{"id":"1","task":{"cmdline":"a\u0000.sh"}}`, "NUL"},
		{"timeout string", `{"id":"1","task":{"cmdline":"a.sh","timeout":"10"}}`, "timeout must be a JSON number"},
		{"timeout huge", `{"id":"1","task":{"cmdline":"a.sh","timeout":1e300}}`, "timeout"},
		{"unknown field", `{"id":"1","task":{"cmdline":"a.sh","cmd_arg":["x"]}}`, `unknown field "cmd_arg"`},
		{"trailing", `{"id":"1","task":{"cmdline":"a.sh"}} {}`, "trailing data"},
		{"bad tube", `{"id":"1","tube":"a b","task":{"cmdline":"a.sh"}}`, "tube"},
		{"too big", `{"id":"1","task":{"cmdline":"` + strings.Repeat("x", 2000) + `"}}`, "over the limit of 1024 (max_task_bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.raw), 1024)
			if err == nil {
				t.Fatalf("accepted %q", tc.raw)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestTimeoutZeroOrNegativeMeansNone(t *testing.T) {
	for _, v := range []string{`0`, `-5`, `null`} {
		got, err := Parse([]byte(`{"id":"1","task":{"cmdline":"a.sh","timeout":`+v+`}}`), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Task.Timeout.Duration() != 0 {
			t.Errorf("timeout %s gave %v", v, got.Task.Timeout.Duration())
		}
	}
}

func TestPeekIDReadsTheIDOfAnInvalidTask(t *testing.T) {
	tests := []struct{ raw, id, typ string }{
		{`{"id":"7","type":"t","task":{"cmdline":""}}`, "7", "t"},
		{`{"task":5,"id":"8"}`, "8", ""},
		{`{"id":8}`, "8", ""},
		{`{"id":8.5}`, "", ""},
		{`{"ID":"up","task":{}}`, "up", ""},
		{`{"id":"a","ID":"b"}`, "", ""},
		{`{"id":"a\u202eb"}`, "", ""},
		{`not json`, "", ""},
		{`{"id":"cut","task":{"cmdline":"a`, "cut", ""},
		{`{"id":"1","id":5}`, "", ""},
		{`{"id":"9","task":{"cmdline":"` + strings.Repeat("x", 1<<20) + `"}}`, "9", ""},
	}
	for _, tc := range tests {
		id, typ := PeekID([]byte(tc.raw))
		if id != tc.id || typ != tc.typ {
			t.Errorf("PeekID(%.40q) = %q,%q; want %q,%q", tc.raw, id, typ, tc.id, tc.typ)
		}
	}
}

func TestParseControl(t *testing.T) {
	c, err := ParseControl([]byte(`{"id":"101","type":"kill"}`))
	if err != nil || c.ID != "101" {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, raw := range []string{`{"id":"101","type":"pause"}`, `{"type":"kill"}`, `{"id":"1","type":"kill","x":1}`, `[]`} {
		if _, err := ParseControl([]byte(raw)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseControl(%s) = %v, want an invalid error", raw, err)
		}
	}
}

func TestAppendLineMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 1, 2, 3, 4, time.UTC)
	for _, data := range []string{"", "plain", `quote " and \ back`, "tab\tcr\r\x00\x1f\b\f", "<a&b>", "é漢字🙂", "bad \xff\xfe utf8", "\u2028\u2029"} {
		got := AppendLine(nil, "id-1", "ty\"pe", "tube", MsgStdout, "ex", 42, at, []byte(data))
		want := (&Log{ID: "id-1", Type: "ty\"pe", MsgType: MsgStdout, Data: data, Seq: 42, Time: at.Format(TimeFormat), Executor: "ex", Tube: "tube"}).Marshal()
		if string(got) != string(want) {
			t.Errorf("data %q:\n got %s\nwant %s", data, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600}}`))
	f.Add([]byte(`{"id":"1","task":{"cmdline":"a","timeout":-1e308}}`))
	f.Add([]byte(`{"id":"\u0000","task":null}`))
	f.Add([]byte(`{"id":"1","id":"2","task":{"cmdline":"x"}}`))
	// The attacks of issue 14: a case variant that encoding/json alone
	// would match to "id", the Kelvin sign folding to "k", a numeric id, a
	// bidi override, a nested duplicate.
	f.Add([]byte(`{"id":"NEW","ID":"signed","task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"Id":"1","task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"id":"1","task":{"cmdline":"x"},"sig":{"Key":"web","ts":1,"mac":"` + strings.Repeat("0", 64) + `"}}`))
	f.Add([]byte(`{"id":101,"task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"id":"a\u202eb","task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"id":"1","task":{"cmdline":"x","cmdline":"y","CMD_ARGS":[]}}`))
	f.Add([]byte(`{"id":"1","id":"2","task":{"cmdline":"x"}}`))
	// Constraints: a label map, a duplicate key, a wrong type, a case
	// variant of the field.
	f.Add([]byte(`{"id":"1","constraints":{"gpu":"a100","zone":"b"},"task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"id":"1","constraints":{"gpu":"a","gpu":"b"},"task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"id":"1","constraints":{"gpu":1},"task":{"cmdline":"x"}}`))
	f.Add([]byte(`{"id":"1","CONSTRAINTS":{"gpu":"a"},"constraints":{},"task":{"cmdline":"x"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, rid, _, err := Decode(raw, 1<<16)
		id, _ := PeekID(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if len(raw) <= 1<<16 && rid != id {
				t.Fatalf("refused; Decode names id %q but PeekID %q", rid, id)
			}
			return
		}
		if got.ID == "" || got.ID != id || rid != got.ID {
			t.Fatalf("accepted task id %q but PeekID says %q, Decode %q", got.ID, id, rid)
		}
		// Whatever encoding/json alone would make of it, the strict parse
		// agrees: no key was matched loosely or shadowed by another.
		var loose Task
		if err := json.Unmarshal(raw, &loose); err != nil || loose.ID != got.ID || loose.Task.Cmdline != got.Task.Cmdline ||
			strings.Join(loose.Task.CmdArgs, "\x00") != strings.Join(got.Task.CmdArgs, "\x00") || !maps.Equal(loose.Constraints, got.Constraints) {
			t.Fatalf("encoding/json reads %+v (%v), the strict parse %+v", loose, err, got)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted a task that does not validate: %v", err)
		}
	})
}

func FuzzAppendLine(f *testing.F) {
	f.Add("id", "type", []byte("data \xff <>&\u2028"))
	f.Fuzz(func(t *testing.T, id, typ string, data []byte) {
		b := AppendLine(nil, id, typ, "", MsgStderr, "", 1, time.Unix(0, 0), data)
		var l Log
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		want := (&Log{ID: id, Type: typ, MsgType: MsgStderr, Data: string(data), Seq: 1, Time: time.Unix(0, 0).UTC().Format(TimeFormat)}).Marshal()
		if string(b) != string(want) {
			t.Fatalf("got %s want %s", b, want)
		}
	})
}

func TestParseSignature(t *testing.T) {
	mac := strings.Repeat("ab", 32)
	good := `{"id":"1","task":{"cmdline":"a.sh"},"sig":{"key":"web","ts":1764000000,"mac":"` + mac + `"}}`
	got, err := Parse([]byte(good), 0)
	if err != nil {
		t.Fatalf("Parse(signed) = %v", err)
	}
	if got.Sig == nil || got.Sig.Key != "web" || got.Sig.TS != 1764000000 || got.Sig.MAC != mac {
		t.Fatalf("Sig = %+v", got.Sig)
	}
	for name, raw := range map[string]string{
		"short mac":   `{"id":"1","task":{"cmdline":"a.sh"},"sig":{"key":"web","ts":1,"mac":"abc"}}`,
		"upper hex":   `{"id":"1","task":{"cmdline":"a.sh"},"sig":{"key":"web","ts":1,"mac":"` + strings.ToUpper(mac) + `"}}`,
		"no key":      `{"id":"1","task":{"cmdline":"a.sh"},"sig":{"ts":1,"mac":"` + mac + `"}}`,
		"unknown sig": `{"id":"1","task":{"cmdline":"a.sh"},"sig":{"key":"web","ts":1,"mac":"` + mac + `","x":1}}`,
		"ts string":   `{"id":"1","task":{"cmdline":"a.sh"},"sig":{"key":"web","ts":"1","mac":"` + mac + `"}}`,
	} {
		if _, err := Parse([]byte(raw), 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse = %v, want an ErrInvalid", name, err)
		}
	}
}

func FuzzParseControl(f *testing.F) {
	f.Add([]byte(`{"id":"101","type":"kill"}`))
	f.Add([]byte(`{"id":"101","type":"kill","sig":{"key":"web","ts":1764000000,"mac":"` + strings.Repeat("ab", 32) + `"}}`))
	f.Add([]byte(`{"id":"101","ID":"102","type":"kill"}`))
	f.Add([]byte(`{"id":"101","type":"kill","sig":{"key":"a","KEY":"b","ts":1,"mac":""}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseControl(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		var loose Control
		if err := json.Unmarshal(raw, &loose); err != nil || loose.ID != c.ID || loose.Type != c.Type {
			t.Fatalf("encoding/json reads %+v (%v), the strict parse %+v", loose, err, c)
		}
	})
}

// Issue 14 item 5: encoding/json matches keys case-insensitively and lets
// the last of two equal keys win, so a signed message resubmitted as
// {"id":"NEW","ID":"<signed id>"} ran as NEW under a signature for the
// other id. Every such message is refused, with a reason naming the keys.
func TestDecodeRefusesCaseVariantAndDuplicateKeys(t *testing.T) {
	mac := strings.Repeat("ab", 32)
	tests := []struct{ name, raw, want, id string }{
		{"id and ID", `{"id":"NEW","ID":"signed","task":{"cmdline":"a.sh"}}`, `keys "id" and "ID" differ only in case`, ""},
		{"ID alone", `{"ID":"up","task":{"cmdline":"a.sh"}}`, `key "ID" must be spelt "id"`, "up"},
		{"duplicate id", `{"id":"1","id":"2","task":{"cmdline":"a.sh"}}`, `key "id" appears twice`, ""},
		{"escaped duplicate", `{"id":"1","\u0069d":"2","task":{"cmdline":"a.sh"}}`, `key "id" appears twice`, ""},
		{"nested case", `{"id":"3","task":{"Cmdline":"a.sh"}}`, `key "task.Cmdline" must be spelt "task.cmdline"`, "3"},
		{"nested duplicate", `{"id":"4","task":{"cmdline":"a.sh","cmdline":"b.sh"}}`, `key "task.cmdline" appears twice`, "4"},
		{"kelvin sign", `{"id":"5","task":{"cmdline":"a.sh"},"sig":{"Key":"web","ts":1,"mac":"` + mac + `"}}`, `must be spelt "sig.key"`, "5"},
		{"numeric id", `{"id":101,"task":{"cmdline":"a.sh"}}`, "id must be a JSON string", "101"},
		{"bidi id", `{"id":"abc\u202egpj.exe","task":{"cmdline":"a.sh"}}`, "bidirectional control character", ""},
		{"invisible id", `{"id":"a\u200db","task":{"cmdline":"a.sh"}}`, "invisible format character", ""},
		{"escaped case variant", `{"\u0049D":"7","id":"8","task":{"cmdline":"a.sh"}}`, `must be spelt "id"`, ""},
		{"bidi type", `{"id":"6","type":"\u2067x","task":{"cmdline":"a.sh"}}`, "bidirectional control character", "6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, id, _, err := Decode([]byte(tc.raw), 1<<20)
			if err == nil {
				t.Fatalf("accepted %s as %+v", tc.raw, got)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if id != tc.id {
				t.Errorf("refusal reported on id %q, want %q", id, tc.id)
			}
		})
	}
	// The documented keys, spelt as section 1 of the contract spells them,
	// keep working byte for byte.
	raw := `{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600},"sig":{"key":"web","ts":1764000000,"mac":"` + mac + `"}}`
	if got, id, typ, err := Decode([]byte(raw), 1<<20); err != nil || id != "101" || typ != "test" || got.Sig.Key != "web" {
		t.Fatalf("Decode(documented keys) = %+v %q %q %v", got, id, typ, err)
	}
	for _, raw := range []string{`{"id":"1","ID":"2","type":"kill"}`, `{"id":"1","type":"kill","Type":"kill"}`, `{"Id":"1","type":"kill"}`, `{"id":"1","\u0069d":"2","type":"kill"}`, `{"id":"abc\u202e","type":"kill"}`} {
		if _, err := ParseControl([]byte(raw)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseControl(%s) = %v, want a refusal", raw, err)
		}
	}
}

// An oversized message is refused without being decoded; its id is read
// from the first PeekBytes only.
func TestDecodeOversizedReadsOnlyAPrefix(t *testing.T) {
	raw := `{"id":"big","task":{"cmdline":"` + strings.Repeat("x", 2*PeekBytes) + `"}}`
	if _, id, _, err := Decode([]byte(raw), 1024); err == nil || id != "big" {
		t.Fatalf("Decode(oversized) = %q, %v", id, err)
	}
	late := `{"task":{"cmdline":"` + strings.Repeat("x", 2*PeekBytes) + `"},"id":"late"}`
	if _, id, _, err := Decode([]byte(late), 1024); err == nil || id != "" {
		t.Fatalf("Decode(oversized, id after the prefix) = %q, %v", id, err)
	}
}

// Constraints are optional: absent, null or empty mean none; a string map
// within the label rules is kept; anything else is refused, saying why.
func TestParseConstraints(t *testing.T) {
	for _, raw := range []string{
		`{"id":"1","task":{"cmdline":"a.sh"}}`,
		`{"id":"1","constraints":null,"task":{"cmdline":"a.sh"}}`,
		`{"id":"1","constraints":{},"task":{"cmdline":"a.sh"}}`,
	} {
		got, err := Parse([]byte(raw), 0)
		if err != nil || len(got.Constraints) != 0 {
			t.Errorf("%s: %+v, %v; want no constraints", raw, got, err)
		}
	}
	got, err := Parse([]byte(`{"id":"1","constraints":{"gpu":"a100","zone":"b","Zone":"c"},"task":{"cmdline":"a.sh"}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Constraints) != 3 || got.Constraints["gpu"] != "a100" || got.Constraints["zone"] != "b" || got.Constraints["Zone"] != "c" {
		t.Errorf("constraints %v", got.Constraints)
	}
	many := map[string]string{}
	for i := range MaxConstraints + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	tooMany, _ := json.Marshal(map[string]any{"id": "1", "constraints": many, "task": map[string]string{"cmdline": "a.sh"}})
	for _, tc := range []struct{ name, raw, want string }{
		{"not an object", `{"id":"1","constraints":"gpu=a100","task":{"cmdline":"a.sh"}}`, "constraints must be a JSON object of strings"},
		{"array", `{"id":"1","constraints":["gpu"],"task":{"cmdline":"a.sh"}}`, "constraints must be a JSON object of strings"},
		{"number value", `{"id":"1","constraints":{"gpu":1},"task":{"cmdline":"a.sh"}}`, "must be a JSON string, not number"},
		{"object value", `{"id":"1","constraints":{"gpu":{}},"task":{"cmdline":"a.sh"}}`, "must be a JSON string"},
		{"duplicate key", `{"id":"1","constraints":{"gpu":"a","gpu":"b"},"task":{"cmdline":"a.sh"}}`, `key "constraints.gpu" appears twice`},
		{"case variant", `{"id":"1","Constraints":{"gpu":"a"},"task":{"cmdline":"a.sh"}}`, `must be spelt "constraints"`},
		{"bad key", `{"id":"1","constraints":{"g p u":"a"},"task":{"cmdline":"a.sh"}}`, "constraints key \"g p u\" must be 1 to 63"},
		{"empty key", `{"id":"1","constraints":{"":"a"},"task":{"cmdline":"a.sh"}}`, "constraints key \"\""},
		{"long key", `{"id":"1","constraints":{"` + strings.Repeat("k", 64) + `":"a"},"task":{"cmdline":"a.sh"}}`, "must be 1 to 63"},
		{"long value", `{"id":"1","constraints":{"gpu":"` + strings.Repeat("v", 257) + `"},"task":{"cmdline":"a.sh"}}`, "constraints.gpu is 257 bytes, over the limit of 256"},
		{"control value", `{"id":"1","constraints":{"gpu":"a\nb"},"task":{"cmdline":"a.sh"}}`, "control character"},
		{"too many", string(tooMany), "constraints has 65 entries, over the limit of 64"},
	} {
		_, err := Parse([]byte(tc.raw), 0)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid error mentioning %q", tc.name, err, tc.want)
		}
	}
}
