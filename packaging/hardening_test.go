package main

import (
	"regexp"
	"strings"
	"testing"
)

// The unit's options and packaging/README.md's account of them agree: every
// option the unit sets is explained in the "On" table, and no option of the
// "Off" table is set.
func TestHardeningDocumented(t *testing.T) {
	unit := readFile(t, "files/task-job.service")
	doc := readFile(t, "README.md")
	on, off, ok := strings.Cut(doc, "### Off, and why")
	if !ok {
		t.Fatal("README.md has no \"### Off, and why\" section")
	}
	off, _, _ = strings.Cut(off, "### What is tested")
	service, _, _ := strings.Cut(unit[strings.Index(unit, "[Service]"):], "[Install]")
	option := regexp.MustCompile(`(?m)^([A-Z][A-Za-z]+)=`)
	set := map[string]bool{}
	for _, m := range option.FindAllStringSubmatch(service, -1) {
		set[m[1]] = true
	}
	// Options that say where things are, not how hardened they are.
	plain := map[string]bool{"Type": true, "ExecStart": true, "TimeoutStopSec": true, "StandardError": true,
		"SyslogIdentifier": true, "StateDirectory": true, "StateDirectoryMode": true, "RuntimeDirectory": true, "RuntimeDirectoryMode": true}
	for name := range set {
		if plain[name] {
			continue
		}
		if !strings.Contains(on, "`"+name+"=") {
			t.Errorf("the unit sets %s= but README.md's \"On\" table does not explain it", name)
		}
	}
	offName := regexp.MustCompile("(?m)^\\| `([A-Z][A-Za-z]+)=")
	names := offName.FindAllStringSubmatch(off, -1)
	if len(names) < 8 {
		t.Fatalf("README.md's \"Off\" table lists %d options; expected the known ones", len(names))
	}
	for _, m := range names {
		if set[m[1]] {
			t.Errorf("README.md says %s= is off, but the unit sets it", m[1])
		}
	}
}
