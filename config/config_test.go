package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/bytesize"
	"github.com/taskjob/task-job/policy"
)

// parseBody parses body as the members of an object: "{\n" + body + "\n}",
// so that body's first line is line 2 of test.json.
func parseBody(t *testing.T, body string) (*Config, []Warning, error) {
	t.Helper()
	return Parse("test.json", []byte("{\n"+body+"\n}"))
}

// asErrors returns the problems in err, failing the test if err is not Errors.
func asErrors(t *testing.T, err error) Errors {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	return errs
}

func errorLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	return strings.Split(asErrors(t, err).Error(), "\n")
}

func warningLines(ws []Warning) []string {
	var lines []string
	for _, w := range ws {
		lines = append(lines, w.String())
	}
	return lines
}

func TestDefault(t *testing.T) {
	c := Default()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		RedisAddr:         "127.0.0.1:6379",
		QueueName:         "queue_job_task",
		QueueControlName:  "queue_job_task_control",
		LogsChannel:       "queue_job_task_logs",
		LogsMaxLen:        100000,
		CmdDir:            defaultCmdDir(),
		ExecutorID:        host,
		Concurrency:       min(runtime.NumCPU(), 1024),
		StatusRetention:   24 * time.Hour,
		MaxTaskBytes:      1 << 20,
		MaxOutputBytes:    16 << 20,
		MaxLineBytes:      64 << 10,
		MaxOutputMessages: 100000,
		MaxOutputRate:     5000,
		KillGrace:         5 * time.Second,
		ExecutorTTL:       5 * time.Second,
		ShutdownGrace:     30 * time.Second,
		StateDir:          DefaultStateDir(),
		SpoolDir:          filepath.Join(DefaultStateDir(), "spool-"+host),
		WorkDir:           filepath.Join(DefaultStateDir(), "work-"+host),
		SpoolMaxBytes:     1 << 30,
		Isolation:         "auto",
		SandboxUser:       "nobody",
		SandboxMemory:     512 << 20,
		SandboxCPU:        1,
		SandboxPids:       256,
		SandboxTmpSize:    64 << 20,
		SandboxWorkSize:   1 << 30,
		CmdDirMinFree:     1 << 30,
		AuditMaxBytes:     100 << 20,
		AuditStream:       "queue_job_task_audit:" + host,
		SignatureWindow:   5 * time.Minute,
		Fleet:             Fleet{Tubes: []string{""}, RegistryTTL: 10 * time.Second},
		Transport:         "redis",
		Kafka:             Kafka{Partitions: 6, CreateTopics: true},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// TestKeys checks each key's accepted and refused values. Each body is one
// member on line 2; a refused value must give exactly one error, at the value.
func TestKeys(t *testing.T) {
	tests := []struct {
		body string
		get  func(*Config) any // the field the body sets
		want any
		err  string // when set, the expected error contains it
	}{
		{body: `"server_port": "8080"`, get: func(c *Config) any { return c.ServerPort }, want: "8080"},
		{body: `"server_port": 8080`, get: func(c *Config) any { return c.ServerPort }, want: "8080"},
		{body: `"server_port": ":8080"`, err: `server_port: ":8080" listens beyond loopback`},
		{body: `"server_port": "127.0.0.1:9000"`, get: func(c *Config) any { return c.ServerPort }, want: "127.0.0.1:9000"},
		{body: `"server_port": ""`, get: func(c *Config) any { return c.ServerPort }, want: ""},
		{body: `"server_port": "http"`, err: `server_port: port "http" must be a number between 1 and 65535`},
		{body: `"server_port": 70000`, err: `server_port: port "70000" must be a number`},
		{body: `"server_port": true`, err: `server_port: must be a port number or a string like ":8080", got a boolean`},
		{body: `"server_port": 80.5`, err: `server_port: 80.5 must be a whole number`},

		{body: `"redis_addr": "10.0.0.1:6380"`, get: func(c *Config) any { return c.RedisAddr }, want: "10.0.0.1:6380"},
		{body: `"redis_addr": "[::1]:6379"`, get: func(c *Config) any { return c.RedisAddr }, want: "[::1]:6379"},
		{body: `"redis_addr": "redis://user:pw@host:6379/2"`, get: func(c *Config) any { return c.RedisAddr }, want: "redis://user:pw@host:6379/2"},
		{body: `"redis_addr": "rediss://host"`, get: func(c *Config) any { return c.RedisAddr }, want: "rediss://host"},
		{body: `"redis_addr": "sentinel://mymaster@a:26379,b:26379"`, get: func(c *Config) any { return c.RedisAddr }, want: "sentinel://mymaster@a:26379,b:26379"},
		{body: `"redis_addr": ""`, get: func(c *Config) any { return c.RedisAddr }, want: "127.0.0.1:6379"},
		{body: `"redis_addr": "localhost"`, err: `redis_addr: "localhost" is not host:port; use "host:port"`},
		{body: `"redis_addr": ":6379"`, err: `redis_addr: ":6379" has no host`},
		{body: `"redis_addr": "host:0"`, err: `redis_addr: port "0" must be a number between 1 and 65535`},
		{body: `"redis_addr": "sentinel://@a:26379"`, err: `redis_addr: "sentinel://@a:26379" names no master`},
		{body: `"redis_addr": "sentinel://m@"`, err: `lists no sentinel address`},
		{body: `"redis_addr": "sentinel://m@a:1,b"`, err: `redis_addr: "sentinel://m@a:1,b": sentinel address "b" is not host:port`},
		{body: `"redis_addr": "cluster://a:7000,b:7001", "queue_name": "{jobs}"`, get: func(c *Config) any { return c.ClusterAddrs() }, want: []string{"a:7000", "b:7001"}},
		{body: `"redis_addr": "cluster://a:7000", "queue_name": "pre{jobs}post"`, get: func(c *Config) any { return c.QueueControlName }, want: "pre{jobs}post_control"},
		{body: `"redis_addr": "cluster://"`, err: `redis_addr: "cluster://" lists no node`},
		{body: `"redis_addr": "cluster://a:1,b"`, err: `redis_addr: "cluster://a:1,b": cluster node "b" is not host:port`},
		{body: `"queue_name": "jobs", "redis_addr": "cluster://a:7000"`, err: `queue_name: is "jobs", which has no hash tag; on Redis Cluster all of a deployment's keys must share one slot: write it as "{jobs}"`},
		{body: `"queue_name": "{}jobs", "redis_addr": "cluster://a:7000"`, err: `queue_name: is "{}jobs", which has no hash tag`},
		{body: `"queue_control_name": "jobs_control", "redis_addr": "cluster://a:7000", "queue_name": "{jobs}"`, err: `queue_control_name: is "jobs_control", not in queue_name's hash slot; on Redis Cluster it must carry queue_name's hash tag {jobs}`},
		{body: `"audit_stream": "{other}_audit", "redis_addr": "cluster://a:7000", "queue_name": "{jobs}"`, err: `audit_stream: is "{other}_audit", not in queue_name's hash slot`},
		{body: `"redis_db": 1, "redis_addr": "cluster://a:7000", "queue_name": "{jobs}"`, err: `redis_db: is 1 but Redis Cluster has only database 0`},
		{body: `"redis_addr": "redis://host/x"`, err: `redis_addr: "redis://host/x": the path must be a database number`},
		{body: `"redis_addr": "redis:///0"`, err: `redis_addr: "redis:///0" has no host`},
		{body: `"redis_addr": "http://host:6379"`, err: `redis_addr: "http://host:6379" has an unknown scheme`},
		{body: `"redis_addr": 6379`, err: `redis_addr: must be a string in double quotes, got a number`},

		{body: `"logs_max_len": 0`, get: func(c *Config) any { return c.LogsMaxLen }, want: 0},
		{body: `"logs_max_len": 500`, get: func(c *Config) any { return c.LogsMaxLen }, want: 500},
		{body: `"logs_max_len": 10`, err: `logs_max_len: must be 0 (never trim) or at least 100, got 10`},
		{body: `"logs_max_len": "1000"`, err: `logs_max_len: must be a number (without quotes), got a string`},

		{body: `"redis_db": 3`, get: func(c *Config) any { return c.RedisDB }, want: 3},
		{body: `"redis_db": -1`, err: `redis_db: must be 0 or more, got -1`},
		{body: `"redis_db": "3"`, err: `redis_db: must be a number (without quotes), got a string`},
		{body: `"redis_db": 1.5`, err: `redis_db: 1.5 must be a whole number`},
		{body: `"redis_db": 1e2`, err: `redis_db: 1e2 must be a whole number`},
		{body: `"redis_db": 99999999999`, err: `redis_db: 99999999999 is out of range`},

		{body: `"queue_name": "jobs"`, get: func(c *Config) any { return c.QueueName }, want: "jobs"},
		{body: `"queue_name": "{jobs}:tasks"`, get: func(c *Config) any { return c.QueueName }, want: "{jobs}:tasks"},
		{body: `"queue_name": "my jobs"`, err: `queue_name: "my jobs" must not contain spaces`},
		{body: `"queue_control_name": "kills"`, get: func(c *Config) any { return c.QueueControlName }, want: "kills"},
		{body: `"queue_control_name": "queue_job_task"`, err: `queue_control_name: is "queue_job_task", the same list as queue_name`},
		{body: `"logs_channel": "queue_job_task_control"`, err: `logs_channel: is "queue_job_task_control", the same list as queue_control_name`},

		{body: `"logs": true`, get: func(c *Config) any { return c.Logs }, want: true},
		{body: `"logs": false`, get: func(c *Config) any { return c.Logs }, want: false},
		{body: `"logs": "true"`, err: `logs: must be true or false (without quotes), got a string`},
		{body: `"logs": 1`, err: `logs: must be true or false (without quotes), got a number`},

		{body: `"logs_http": "https://logs.example/in"`, get: func(c *Config) any { return c.LogsHTTP }, want: "https://logs.example/in"},
		{body: `"logs_http": "ftp://logs.example"`, err: `logs_http: "ftp://logs.example" must start with http:// or https://`},
		{body: `"logs_http": "http://"`, err: `logs_http: "http://" has no host`},

		{body: `"cmd_dir": "/srv/jobs"`, get: func(c *Config) any { return c.CmdDir }, want: "/srv/jobs"},
		{body: `"cmd_dir": "jobs"`, err: `cmd_dir: "jobs" is not an absolute path`},
		{body: `"cmd_dir": {}`, err: `cmd_dir: must be a string in double quotes, got an object`},
		{body: `"cmd_dir": ["/tmp"]`, err: `cmd_dir: must be a string in double quotes, got an array`},

		{body: `"executor_id": "w-1:a.b_c"`, get: func(c *Config) any { return c.ExecutorID }, want: "w-1:a.b_c"},
		{body: `"executor_id": "w 1"`, err: `executor_id: "w 1" must be 1 to 128 letters, digits or . _ : -`},
		{body: `"executor_id": "` + strings.Repeat("x", 129) + `"`, err: `must be 1 to 128 letters`},

		{body: `"concurrency": 8`, get: func(c *Config) any { return c.Concurrency }, want: 8},
		{body: `"concurrency": 1024`, get: func(c *Config) any { return c.Concurrency }, want: 1024},
		{body: `"concurrency": null`, get: func(c *Config) any { return c.Concurrency }, want: min(runtime.NumCPU(), 1024)},
		{body: `"concurrency": 0`, err: `concurrency: must be between 1 and 1024, got 0`},
		{body: `"concurrency": 1025`, err: `concurrency: must be between 1 and 1024, got 1025`},

		{body: `"status_retention": "1h30m"`, get: func(c *Config) any { return c.StatusRetention }, want: 90 * time.Minute},
		{body: `"status_retention": "1m"`, get: func(c *Config) any { return c.StatusRetention }, want: time.Minute},
		{body: `"status_retention": "30s"`, err: `status_retention: must be at least 1m, got 30s`},
		{body: `"status_retention": "7d"`, err: `status_retention: "7d" is not a duration: durations have no day unit; write days as hours, like "168h"`},
		{body: `"status_retention": 3600`, err: `status_retention: must be a duration string like "30s"`},

		{body: `"max_task_bytes": 2048`, get: func(c *Config) any { return c.MaxTaskBytes }, want: 2048},
		{body: `"max_task_bytes": "1KiB"`, get: func(c *Config) any { return c.MaxTaskBytes }, want: 1024},
		{body: `"max_task_bytes": "64MiB"`, get: func(c *Config) any { return c.MaxTaskBytes }, want: 64 << 20},
		{body: `"max_task_bytes": "1KB"`, err: `max_task_bytes: must be between 1KiB and 64MiB, got 1000B`},
		{body: `"max_task_bytes": "65MiB"`, err: `max_task_bytes: must be between 1KiB and 64MiB, got 65MiB`},
		{body: `"max_task_bytes": true`, err: `max_task_bytes: must be a size like "16MiB" or a number of bytes, got a boolean`},

		{body: `"max_output_bytes": "1GB"`, get: func(c *Config) any { return c.MaxOutputBytes }, want: int64(1e9)},
		{body: `"max_output_bytes": "16 mib"`, get: func(c *Config) any { return c.MaxOutputBytes }, want: int64(16 << 20)},
		{body: `"max_output_bytes": "100"`, err: `max_output_bytes: must be at least 1KiB, got 100B`},
		{body: `"max_output_bytes": -5`, err: `max_output_bytes: -5 must not be negative`},
		{body: `"max_output_bytes": "16M"`, err: `max_output_bytes: size "16M" has an unknown unit "M"`},
		{body: `"max_output_bytes": "1.5GiB"`, get: func(c *Config) any { return c.MaxOutputBytes }, want: int64(3 << 29)},
		{body: `"max_output_bytes": "1.5B"`, err: `max_output_bytes: size "1.5B" is not a whole number of bytes`},
		{body: `"max_output_bytes": "99999999TiB"`, err: `max_output_bytes: size "99999999TiB" is too large`},

		{body: `"max_line_bytes": "256"`, get: func(c *Config) any { return c.MaxLineBytes }, want: 256},
		{body: `"max_line_bytes": "1MiB"`, get: func(c *Config) any { return c.MaxLineBytes }, want: 1 << 20},
		{body: `"max_line_bytes": 255`, err: `max_line_bytes: must be between 256 and 1MiB, got 255B`},
		{body: `"max_line_bytes": "2MiB"`, err: `max_line_bytes: must be between 256 and 1MiB, got 2MiB`},

		{body: `"kill_grace": "0s"`, get: func(c *Config) any { return c.KillGrace }, want: time.Duration(0)},
		{body: `"kill_grace": "-1s"`, err: `kill_grace: must not be negative, got -1s`},
		{body: `"shutdown_grace": "1m30s"`, get: func(c *Config) any { return c.ShutdownGrace }, want: 90 * time.Second},
		{body: `"shutdown_grace": "soon"`, err: `shutdown_grace: "soon" is not a duration: write it like "30s"`},

		{body: `"spool_dir": "/var/spool/task-job"`, get: func(c *Config) any { return c.SpoolDir }, want: "/var/spool/task-job"},
		{body: `"spool_dir": "spool"`, err: `spool_dir: "spool" is not an absolute path`},
		{body: `"spool_max_bytes": "2GiB"`, get: func(c *Config) any { return c.SpoolMaxBytes }, want: int64(2 << 30)},
		{body: `"spool_max_bytes": "1KiB"`, err: `spool_max_bytes: must be at least 1MiB, got 1KiB`},

		{body: `"isolation": "on"`, get: func(c *Config) any { return c.Isolation }, want: "on"},
		{body: `"isolation": ""`, get: func(c *Config) any { return c.Isolation }, want: "auto"},
		{body: `"isolation": "maybe"`, err: `isolation: must be "auto", "on" or "off", got "maybe"`},
		{body: `"sandbox_cpu": 0.5`, get: func(c *Config) any { return c.SandboxCPU }, want: 0.5},
		{body: `"sandbox_cpu": "1"`, err: `sandbox_cpu: must be a number (without quotes), got a string`},
		{body: `"sandbox_cpu": 0`, err: `sandbox_cpu: must be between 0.01 and 1024 cores, got 0`},
		{body: `"sandbox_memory": "1GiB"`, get: func(c *Config) any { return c.SandboxMemory }, want: int64(1 << 30)},
		{body: `"sandbox_memory": "1MiB"`, err: `sandbox_memory: must be at least 4MiB, got 1MiB`},
		{body: `"sandbox_pids": 0`, err: `sandbox_pids: must be at least 1, got 0`},
		{body: `"sandbox_user": ""`, get: func(c *Config) any { return c.SandboxUser }, want: "nobody"},
		{body: `"policy_file": "policy.hcl"`, err: `policy_file: "policy.hcl" is not an absolute path`},
		{body: `"audit_max_bytes": 0`, get: func(c *Config) any { return c.AuditMaxBytes }, want: int64(0)},
		{body: `"audit_max_bytes": "10KiB"`, err: `audit_max_bytes: must be 0 (never rotate) or at least 1MiB`},
		{body: `"require_signatures": true`, err: `require_signatures: is true but signing_keys_dir is not set`},
		{body: `"signature_window": "5m", "signing_keys_dir": "/k", "status_retention": "9m"`, err: `signature_window: must be under half of status_retention`},
		{body: `"signature_window": "2h"`, err: `signature_window: must be between 1s and 1h, got 2h0m0s`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			t.Parallel()
			c, _, err := parseBody(t, tt.body)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("got %#v, want %#v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.err)
			}
			if c != nil {
				t.Errorf("Config returned along with an error")
			}
			errs := asErrors(t, err)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.err) {
				t.Fatalf("errors:\n%v\nwant exactly one containing %q", err, tt.err)
			}
			// The error points at the value: line 2, after `"key": `.
			wantPos := Pos{File: "test.json", Line: 2, Col: strings.Index(tt.body, ": ") + 3}
			if errs[0].Pos != wantPos {
				t.Errorf("error at %v, want %v", errs[0].Pos, wantPos)
			}
		})
	}
}

func TestCrossKeyRules(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{
			name: "database in URL and in redis_db",
			body: "\"redis_addr\": \"redis://h:6379/2\",\n\"redis_db\": 3",
			want: []string{`test.json:3:13: redis_db: is 3 but redis_addr selects database 2; set the database in one place`},
		},
		{
			name: "same database twice is fine",
			body: "\"redis_addr\": \"redis://h:6379/2\",\n\"redis_db\": 2",
		},
		{
			name: "password in file and inline",
			body: "\"redis_password\": \"pw\",\n\"redis_password_file\": \"/run/secret\"",
			want: []string{`test.json:3:24: redis_password_file: redis_password is set too; keep only redis_password_file`},
		},
		{
			name: "derived name collides, reported at queue_name",
			body: "\"queue_name\": \"q\",\n\"logs_channel\": \"q_control\"",
			want: []string{`test.json:3:17: logs_channel: is "q_control", the same list as queue_control_name; tasks, kills and logs need separate lists`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseBody(t, tt.body)
			if got := errorLines(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDerivedDefaults(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		body                 string
		control, logs, spool string
	}{
		{
			name:    "queue_name moves the others",
			body:    `"queue_name": "jobs"`,
			control: "jobs_control", logs: "jobs_logs",
			spool: filepath.Join(DefaultStateDir(), "spool-"+host),
		},
		{
			name:    "empty strings mean the default",
			body:    `"queue_name": "jobs", "queue_control_name": "", "logs_channel": null`,
			control: "jobs_control", logs: "jobs_logs",
			spool: filepath.Join(DefaultStateDir(), "spool-"+host),
		},
		{
			name:    "explicit names stay",
			body:    `"queue_name": "jobs", "queue_control_name": "kill", "logs_channel": "out"`,
			control: "kill", logs: "out",
			spool: filepath.Join(DefaultStateDir(), "spool-"+host),
		},
		{
			name:    "executor_id moves spool_dir, ':' made file-name safe",
			body:    `"executor_id": "host:2"`,
			control: "queue_job_task_control", logs: "queue_job_task_logs",
			spool: filepath.Join(DefaultStateDir(), "spool-host_2"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseBody(t, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if c.QueueControlName != tt.control || c.LogsChannel != tt.logs || c.SpoolDir != tt.spool {
				t.Errorf("got control=%q logs=%q spool=%q, want %q %q %q",
					c.QueueControlName, c.LogsChannel, c.SpoolDir, tt.control, tt.logs, tt.spool)
			}
		})
	}
}

func TestUnknownKey(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{`"concurency": 4`, `test.json:2:1: concurency: unknown key; did you mean "concurrency"?`},
		{`"redis-addr": "h:1"`, `test.json:2:1: redis-addr: unknown key; did you mean "redis_addr"?`},
		{`"Queue_Name": "q"`, `test.json:2:1: Queue_Name: unknown key; did you mean "queue_name"?`},
		{`"cmddir": "/tmp"`, `test.json:2:1: cmddir: unknown key; did you mean "cmd_dir"?`},
		{`"policy": "x"`, `test.json:2:1: policy: unknown key; did you mean "policy_file"?`}, // a prefix
		{`"xyzzy": "x"`, `test.json:2:1: xyzzy: unknown key; known keys are audit_file, audit_max_bytes, audit_stream, cmd_dir, cmd_dir_min_free, concurrency, dispatched, executor_id,`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			_, _, err := parseBody(t, tt.body)
			got := errorLines(t, err)
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Errorf("errors:\n%s\nwant one starting %q", strings.Join(got, "\n"), tt.want)
			}
		})
	}
}

// TestManyErrorsAtOnce checks that all problems come back together, in file
// order, each at its own line and column.
func TestManyErrorsAtOnce(t *testing.T) {
	data := `// a user's file
{
	"redis_db": -1, /* bad range */
	"concurency": 4,
	"logs": "yes",
	// a comment line
	"max_line_bytes": "2MiB",
	"redis_db": 2,
	"cmd_dir": "tmp",
	"isolation": "off",
}
`
	_, warnings, err := Parse("my.json", []byte(data))
	want := []string{
		`my.json:3:14: redis_db: must be 0 or more, got -1`,
		`my.json:4:2: concurency: unknown key; did you mean "concurrency"?`,
		`my.json:5:10: logs: must be true or false (without quotes), got a string`,
		`my.json:7:20: max_line_bytes: must be between 256 and 1MiB, got 2MiB`,
		`my.json:8:2: redis_db: duplicate key, first set at line 3:2; keep one`,
		`my.json:9:13: cmd_dir: "tmp" is not an absolute path; write the full path, like "/srv/jobs"`,
	}
	if got := errorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantWarn := []string{`my.json:10:15: isolation: "off" runs tasks without cgroups or namespaces: a task can see and signal every process on the host and use all its memory`}
	if got := warningLines(warnings); !reflect.DeepEqual(got, wantWarn) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantWarn, "\n"))
	}
}

// TestLenientSyntax checks what users' files do that strict JSON refuses.
func TestLenientSyntax(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		check    func(*Config) bool
		warnings []string
	}{
		{
			name:  "comments and trailing comma",
			data:  "// head\n{\n  /* block */ \"logs\": true, // tail\n  \"queue_name\": \"q\",\n}\n",
			check: func(c *Config) bool { return c.Logs && c.QueueName == "q" },
		},
		{
			name:     "missing comma between lines",
			data:     "{\n\t\"redis_addr\": \"127.0.0.1:6379\" // c\n\t\"queue_name\": \"jobs\"\n}",
			check:    func(c *Config) bool { return c.RedisAddr == "127.0.0.1:6379" && c.QueueName == "jobs" },
			warnings: []string{`t.json:2:32: missing ',' after this value accepted; add it to keep the file valid JSON`},
		},
		{
			name:  "two missing commas, comment between",
			data:  "{\n\"logs\": true\n/* x */ \"queue_name\": \"q\"\n\n\"concurrency\": 2\n}",
			check: func(c *Config) bool { return c.Logs && c.QueueName == "q" && c.Concurrency == 2 },
			warnings: []string{
				`t.json:2:13: missing ',' after this value accepted; add it to keep the file valid JSON`,
				`t.json:3:26: missing ',' after this value accepted; add it to keep the file valid JSON`,
			},
		},
		{
			name:     "missing comma with CRLF line ends",
			data:     "{\r\n\"logs\": true\r\n\"queue_name\": \"q\"\r\n}\r\n",
			check:    func(c *Config) bool { return c.Logs && c.QueueName == "q" },
			warnings: []string{`t.json:2:13: missing ',' after this value accepted; add it to keep the file valid JSON`},
		},
		{
			name:  "byte order mark",
			data:  "\xef\xbb\xbf{\"logs\": true}",
			check: func(c *Config) bool { return c.Logs },
		},
		{
			name:     "inline password is warned about",
			data:     `{"redis_password": "s3cret"}`,
			check:    func(c *Config) bool { return c.RedisPassword == "s3cret" },
			warnings: []string{`t.json:1:20: redis_password: the password is stored in the config file; move it to a file only task-job can read and set redis_password_file`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warnings, err := Parse("t.json", []byte(tt.data))
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if !tt.check(c) {
				t.Errorf("values not read: %+v", c)
			}
			if got := warningLines(warnings); !reflect.DeepEqual(got, tt.warnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.warnings, "\n"))
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string // the single error
	}{
		{"missing comma on one line", "{\n \"logs\": true \"queue_name\": \"q\"\n}", `t.json:2:15: missing ',' between members on the same line`},
		{"bad literal", "{\n \"logs\": True\n}", `t.json:2:10: invalid literal: True; values are strings in double quotes, numbers, true, false or null`},
		{"single quotes", "{\n 'logs': true\n}", `t.json:2:2: invalid character '\'' at start of value; strings and keys need double quotes`},
		{"bare key", "{\n logs: true\n}", `t.json:2:2: key logs needs double quotes: "logs"`},
		{"unterminated object", "{\n \"logs\": true,\n", `t.json:3:1: unexpected end of file; a closing '}', ']' or '"' is missing`},
		{"unterminated comment", "{\"logs\": true /* no end", `t.json:1:15: unexpected end of file; a closing '}', ']' or '"' is missing`},
		{"two values", "{} {}", `t.json:1:4: invalid character '{' after top-level value; the file must hold exactly one JSON object`},
		{"top level array", "\n [{}]", `t.json:2:2: the file holds an array; it must hold one JSON object { ... }`},
		{"top level string", `"cmd_dir"`, `t.json:1:1: the file holds a string; it must hold one JSON object { ... }`},
		{"empty", "", `t.json: the file is empty; it must hold a JSON object, like {"redis_addr": "127.0.0.1:6379"}`},
		{"blank", " \n\t\n", `t.json: the file is empty; it must hold a JSON object, like {"redis_addr": "127.0.0.1:6379"}`},
		{"too large", "{" + strings.Repeat(" ", MaxFileBytes) + "}", `t.json: the file is larger than 1MiB; is it really the config file?`},
		{"error after an accepted comma keeps its column", "{\n\"logs\": true\n\"queue_name\": \"q\"\n\"cmd_dir\": ,\n}", `t.json:4:12: invalid character ',' at start of value`},
		{"position after byte order mark", "\xef\xbb\xbf{\"logs\": 5}", `t.json:1:13: logs: must be true or false (without quotes), got a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := Parse("t.json", []byte(tt.data))
			if c != nil {
				t.Errorf("Config returned for a broken file")
			}
			if got := errorLines(t, err); len(got) != 1 || got[0] != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), tt.want)
			}
		})
	}
}

func TestTooManyMissingCommas(t *testing.T) {
	var b strings.Builder
	b.WriteString("{\n")
	for range maxCommaRepairs + 2 { // one gap more than accepted
		b.WriteString(`"logs": true` + "\n")
	}
	b.WriteString("}")
	_, _, err := Parse("t.json", []byte(b.String()))
	errs := asErrors(t, err)
	want := "missing ','; too many are missing to accept, add them"
	if len(errs) != 1 || errs[0].Msg != want || errs[0].Pos.Line != maxCommaRepairs+3 {
		t.Errorf("errors:\n%v\nwant one %q on line %d", err, want, maxCommaRepairs+3)
	}
}

// TestSample checks that the shipped config.json loads cleanly and states
// the defaults.
func TestSample(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip(`GOOS windows: the sample's cmd_dir "/tmp" is not an absolute path there`)
	}
	c, warnings, err := Load("../config.json")
	if err != nil {
		t.Fatalf("sample does not load:\n%v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("sample gives warnings:\n%s", strings.Join(warningLines(warnings), "\n"))
	}
	if want := Default(); !reflect.DeepEqual(c, want) {
		t.Errorf("sample differs from the defaults:\n%+v\nwant\n%+v", c, want)
	}
	// Every key is documented in the sample, set or commented out.
	data, err := os.ReadFile("../config.json")
	if err != nil {
		t.Fatal(err)
	}
	for key := range fields {
		if !strings.Contains(string(data), `"`+key+`"`) {
			t.Errorf("sample does not document %q", key)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("pw", "s3cret\n", 0o600)
	write("pw-open", "open\r\n", 0o644)
	write("pw-empty", "\n", 0o600)
	aFile := write("a-file", "", 0o600)
	if err := os.Mkdir(filepath.Join(dir, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		content  string
		password string
		warnings []string
		errs     []string
		notExist bool // the error wraps fs.ErrNotExist
	}{
		{
			name:     "relative password file beside the config",
			content:  `{"cmd_dir": "` + filepath.Join(dir, "jobs") + `", "redis_password_file": "pw"}`,
			password: "s3cret",
		},
		{
			name:     "password file others can read",
			content:  `{"redis_password_file": "pw-open"}`,
			password: "open",
			warnings: []string{"redis_password_file: " + filepath.Join(dir, "pw-open") + " can be read by other users (mode 0644); run chmod 600"},
		},
		{
			name:     "missing password file",
			content:  "{\n\"redis_password_file\": \"nope\"}",
			errs:     []string{"2:24: redis_password_file: open " + filepath.Join(dir, "nope") + ": no such file or directory; check the path"},
			notExist: true,
		},
		{
			name:    "empty password file",
			content: `{"redis_password_file": "pw-empty"}`,
			errs:    []string{"redis_password_file: " + filepath.Join(dir, "pw-empty") + " is empty"},
		},
		{
			name:    "cmd_dir missing, reported with other problems",
			content: "{\n\"cmd_dir\": \"" + filepath.Join(dir, "gone") + "\",\n\"concurrency\": 0}",
			errs: []string{
				"2:12: cmd_dir: " + filepath.Join(dir, "gone") + " does not exist; create it",
				"3:16: concurrency: must be between 1 and 1024",
			},
			notExist: true,
		},
		{
			name:    "cmd_dir is a file",
			content: `{"cmd_dir": "` + aFile + `"}`,
			errs:    []string{"cmd_dir: " + aFile + " is not a directory"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write("config"+string(rune('a'+i))+".json", tt.content, 0o600)
			c, warnings, err := Load(path)
			if got := warningLines(warnings); len(got) != len(tt.warnings) ||
				(len(got) > 0 && !strings.Contains(got[0], tt.warnings[0])) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.warnings, "\n"))
			}
			if tt.errs == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				if c.RedisPassword != tt.password {
					t.Errorf("RedisPassword = %q, want %q", c.RedisPassword, tt.password)
				}
				return
			}
			got := errorLines(t, err)
			if len(got) != len(tt.errs) {
				t.Fatalf("errors:\n%s\nwant %d", strings.Join(got, "\n"), len(tt.errs))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.errs[i]) {
					t.Errorf("error %d:\n%s\nwant it to contain\n%s", i, got[i], tt.errs[i])
				}
			}
			if errors.Is(err, os.ErrNotExist) != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", !tt.notExist, tt.notExist)
			}
		})
	}
}

func TestLoadFileProblems(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Load(filepath.Join(dir, "missing.json"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("missing file: got %v, want a config: error wrapping fs.ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte("{"+strings.Repeat(" ", 2*MaxFileBytes)+"}"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(big)
	if got := errorLines(t, err); len(got) != 1 || !strings.Contains(got[0], "larger than 1MiB") {
		t.Errorf("big file: got %v", err)
	}
}

// TestValidate checks a Config built in code: problems have no position.
func TestValidate(t *testing.T) {
	c := Default()
	c.Concurrency = 0
	c.QueueName = ""
	err := c.Validate()
	want := []string{
		"config: queue_name: must not be empty",
		"config: concurrency: must be between 1 and 1024, got 0",
	}
	if got := errorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var e Error
	if !errors.As(err, &e) || e.Key != "queue_name" {
		t.Errorf("errors.As(err, &Error) gave %+v", e)
	}
}

func TestSentinel(t *testing.T) {
	tests := []struct {
		addr   string
		master string
		addrs  []string
		ok     bool
	}{
		{"sentinel://mymaster@a:26379,b:26379", "mymaster", []string{"a:26379", "b:26379"}, true},
		{"sentinel://m@a:1", "m", []string{"a:1"}, true},
		{"127.0.0.1:6379", "", nil, false},
		{"redis://h:1", "", nil, false},
	}
	for _, tt := range tests {
		c := &Config{RedisAddr: tt.addr}
		master, addrs, ok := c.Sentinel()
		if master != tt.master || !reflect.DeepEqual(addrs, tt.addrs) || ok != tt.ok {
			t.Errorf("Sentinel(%q) = %q, %q, %v; want %q, %q, %v", tt.addr, master, addrs, ok, tt.master, tt.addrs, tt.ok)
		}
	}
}

// config.json and policy.hcl read sizes with one parser: a size they both
// take means the same number of bytes, and one they refuse is refused with
// the same words (issue: "512mib" was accepted here and not there).
func TestSizesAgreeWithPolicy(t *testing.T) {
	for _, in := range []string{"512", "512B", "64KiB", "64KB", "16MiB", "512mib", "512MIB", " 8 kib ", "1.5GiB",
		"2TiB", "", "KiB", "-1KiB", "1.5B", "16M", "9223372036854775807", "9223372036854775808", "8388608TiB", "lots"} {
		c, _, cerr := parseBody(t, `"spool_max_bytes": `+strconv.Quote(in))
		want, perr := policy.ParseSize(in)
		if perr != nil {
			if cerr == nil {
				t.Errorf("%q: config accepts it, policy says %v", in, perr)
			} else if !strings.Contains(cerr.Error(), "spool_max_bytes: "+perr.Error()) {
				t.Errorf("%q: config says\n%v\npolicy says\n%v", in, cerr, perr)
			}
			continue
		}
		if want < 1<<20 {
			continue // below spool_max_bytes' range: checked by the range test
		}
		if cerr != nil {
			t.Errorf("%q: policy reads %d bytes, config says %v", in, want, cerr)
		} else if c.SpoolMaxBytes != want {
			t.Errorf("%q: policy reads %d bytes, config %d", in, want, c.SpoolMaxBytes)
		}
	}
}

// A size that String shows, or an error message quotes, reads back as the
// same number of bytes: one writer, the parser's (it once wrote
// "1000 bytes", which no size field takes).
func TestSizesShownReadBack(t *testing.T) {
	for _, n := range []int64{1000, 1 << 20, 3 << 20, 1<<20 + 1, 5 << 30} {
		c := Default()
		c.SpoolMaxBytes = n
		// One word, then the next key or the end: String is key=value pairs.
		shown := regexp.MustCompile(`spool_max_bytes=(\S+)(?: [a-z_]+=|$)`).FindStringSubmatch(c.String())
		if shown == nil {
			t.Fatalf("String does not show spool_max_bytes=%d as one word: %s", n, c.String())
		}
		if n >= 1<<20 { // spool_max_bytes' range
			if back, _, err := parseBody(t, `"spool_max_bytes": `+strconv.Quote(shown[1])); err != nil || back.SpoolMaxBytes != n {
				t.Errorf("%d bytes shown as %q do not read back in config.json: %v", n, shown[1], err)
			}
		}
		if got, err := bytesize.Parse(shown[1]); err != nil || got != n {
			t.Errorf("%d bytes shown as %q: bytesize.Parse = %d, %v", n, shown[1], got, err)
		}
	}
}

func TestStringHidesPasswords(t *testing.T) {
	c := Default()
	c.RedisPassword = "hunter2"
	c.RedisAddr = "redis://user:s3cret@h:6379/0"
	c.LogsHTTP = "https://u:t0ken@logs.example/in"
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c)} {
		for _, secret := range []string{"hunter2", "s3cret", "t0ken"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q shows %q", s, secret)
			}
		}
		if !strings.Contains(s, `redis_password="<redacted>"`) || !strings.Contains(s, "max_output_bytes=16MiB") {
			t.Errorf("%q lacks the expected fields", s)
		}
	}
}

// TestStateNotInTemp: the spool and the work directories default under the
// state directory, never at a predictable path in the shared temp
// directory, where another local user could create (or symlink) it first.
func TestStateNotInTemp(t *testing.T) {
	c := Default()
	for key, p := range map[string]string{"state_dir": c.StateDir, "spool_dir": c.SpoolDir, "work_dir": c.WorkDir} {
		if p == "" || !filepath.IsAbs(p) {
			t.Errorf("%s = %q, want an absolute path", key, p)
		}
		if strings.HasPrefix(p, os.TempDir()+string(filepath.Separator)) {
			t.Errorf("%s = %q lies in the shared temp directory", key, p)
		}
		if key != "state_dir" && !strings.HasPrefix(p, c.StateDir+string(filepath.Separator)) {
			t.Errorf("%s = %q is not under state_dir %q", key, p, c.StateDir)
		}
	}
	c, _, err := parseBody(t, `"state_dir": "/srv/tj", "executor_id": "e1"`)
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "/srv/tj/spool-e1" || c.WorkDir != "/srv/tj/work-e1" {
		t.Errorf("state_dir moves spool_dir and work_dir: got %q %q", c.SpoolDir, c.WorkDir)
	}
	if _, _, err := parseBody(t, `"work_dir": "rel"`); err == nil || !strings.Contains(err.Error(), "work_dir") {
		t.Errorf("a relative work_dir: %v, want an error naming work_dir", err)
	}
}

func TestSetQueueName(t *testing.T) {
	c, _, err := parseBody(t, `"queue_name": "a", "logs_channel": "my_logs"`)
	if err != nil {
		t.Fatal(err)
	}
	c.SetQueueName("b")
	if c.QueueName != "b" || c.QueueControlName != "b_control" || c.LogsChannel != "my_logs" || c.AuditStream != "b_audit:"+c.ExecutorID {
		t.Errorf("after SetQueueName(b): %q %q %q %q", c.QueueName, c.QueueControlName, c.LogsChannel, c.AuditStream)
	}
}
