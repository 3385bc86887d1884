package config

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that no content makes Parse panic, that every position it
// reports lies inside the content, and that a Config it accepts validates.
func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile("../config.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		sample,
		[]byte(`{}`),
		[]byte("{\n\"logs\": true\n\"queue_name\": \"q\"\n}"),
		[]byte(`{"logs": true "queue_name": "q"}`),
		[]byte("\xef\xbb\xbf{\"cmd_dir\": \"/srv\", /* c */}"),
		[]byte(`{"max_task_bytes": "64MiB", "max_output_bytes": 1024, "spool_max_bytes": "1GB"}`),
		[]byte(`{"redis_addr": "sentinel://m@a:1,b:2", "redis_db": 1, "redis_db": 2}`),
		[]byte(`{"redis_addr": "redis://h:1/3", "redis_db": 3, "status_retention": "7d"}`),
		[]byte(`{"concurency": 1, "server_port": 8080, "executor_id": "a:b"}`),
		[]byte(`{"queue_name": "a", "queue_control_name": "a_logs", "logs_channel": null}`),
		[]byte("{\n\"a\": 1 // c\n\"b\": [1 2]\n}"),
		[]byte(`[{"cmd_dir": {}}]`),
		[]byte("{\"logs\": tru"),
		[]byte(""),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, warnings, err := Parse("fuzz.json", data)
		lines := bytes.Count(data, []byte("\n")) + 1
		inside := func(p Pos) bool {
			return p.File == "fuzz.json" && (p.Line == 0 || (p.Line <= lines && p.Col >= 1))
		}
		for _, w := range warnings {
			if !inside(w.Pos) {
				t.Errorf("warning outside the content: %v", w)
			}
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %v", err)
			}
			for _, e := range errs {
				if !inside(e.Pos) {
					t.Errorf("error outside the content: %v", e)
				}
			}
			if c != nil {
				t.Errorf("Config returned along with an error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("accepted Config does not validate:\n%v", err)
		}
	})
}
