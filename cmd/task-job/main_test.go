package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command line answers mistakes with a clear message and a non-zero exit
// before it connects to anything.
func TestCommandLineMistakes(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(bad, []byte("{\n  \"queue_nam\": \"x\",\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "commands:"},
		{"version", []string{"version"}, 0, "task-job dev"},
		{"unknown flag", []string{"-confg=x.json"}, 2, "flag provided but not defined: -confg"},
		{"bad log format", []string{"-log_format=xml"}, 2, `-log_format "xml"`},
		{"missing config", []string{"-config=" + filepath.Join(t.TempDir(), "none.json")}, 1, "none.json"},
		{"bad config", []string{"-config=" + bad}, 1, bad + ":2:3"},
		{"did you mean", []string{"-config=" + bad}, 1, "queue_name"},
		{"submit without cmdline", []string{"submit"}, 2, "usage: task-job submit"},
		{"kill without id", []string{"kill"}, 2, "usage: task-job kill"},
		{"status with two ids", []string{"status", "a", "b"}, 2, "usage: task-job status"},
		{"dev on a public address", []string{"dev", "-addr=0.0.0.0:6379"}, 2, "loopback"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(tc.args, &out, &out); code != tc.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}
