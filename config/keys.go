package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/bytesize"
)

// key is one config.json key: the one place that says which Config field
// it sets, how its value is written, its default, its own range and how the
// start-up log shows it. Adding a key is adding a row to keys (and the field
// to Config); rules between keys stay in validate.
type key struct {
	name string
	// field returns a pointer to the key's field in c: *string, *int,
	// *int64, *float64, *bool, *time.Duration, *[]string or
	// *map[string]string.
	field func(c *Config) any
	// form says how the value is written where the field's type does not.
	form form
	// set parses the value when the field's type and form do not say how.
	set setter
	// def is the default. A string field takes it after the file is read,
	// while the field is still "" (so "" and null mean the default); any
	// other field takes it before, so that a 0 in the file stays 0 for
	// check to judge.
	def any
	// fill, when set, gives the default after the file is read, while the
	// field is still zero; it may derive from the keys above it in keys.
	fill func(c *Config) any
	// check judges the key's value alone: the problem, or "". Configs
	// built in code get the same check from Validate.
	check func(field any) string
	// secret shows a set value as "<redacted>" in String; redactURL hides
	// the password of a URL value.
	secret, redactURL bool
	// unlogged leaves the key out of String, the start-up log line.
	unlogged bool
}

// form is how a key's value is written in config.json.
type form int

const (
	formPlain form = iota // as the field's type says
	formPort              // a string, or a bare port number
	formSize              // a number of bytes, or a string like "16MiB"
)

// defaultConcurrency is concurrency's default: the CPUs, capped so that a
// very large host still gets a valid configuration.
var defaultConcurrency = min(runtime.NumCPU(), maxDefaultConcurrency)

// keys lists every config.json key, in the order String shows them.
var keys = []key{
	{name: "server_port", field: func(c *Config) any { return &c.ServerPort }, form: formPort},
	{name: "server_tokens_file", field: func(c *Config) any { return &c.ServerTokensFile }, check: absIfSet},
	{name: "server_tls_cert", field: func(c *Config) any { return &c.ServerTLSCert }, check: absIfSet},
	{name: "server_tls_key", field: func(c *Config) any { return &c.ServerTLSKey }, check: absIfSet},
	{name: "redis_addr", field: func(c *Config) any { return &c.RedisAddr }, def: DefaultRedisAddr, redactURL: true},
	{name: "redis_password", field: func(c *Config) any { return &c.RedisPassword }, secret: true},
	{name: "redis_password_file", field: func(c *Config) any { return &c.RedisPasswordFile }},
	{name: "redis_db", field: func(c *Config) any { return &c.RedisDB }},
	{name: "queue_name", field: func(c *Config) any { return &c.QueueName }, def: DefaultQueueName},
	{name: "queue_control_name", field: func(c *Config) any { return &c.QueueControlName },
		fill: func(c *Config) any { return c.QueueName + "_control" }},
	{name: "logs", field: func(c *Config) any { return &c.Logs }},
	{name: "logs_channel", field: func(c *Config) any { return &c.LogsChannel },
		fill: func(c *Config) any { return c.QueueName + "_logs" }},
	{name: "logs_max_len", field: func(c *Config) any { return &c.LogsMaxLen }, def: DefaultLogsMaxLen,
		check: checkOf(func(n int) string {
			return failIf(n != 0 && n < 100, "must be 0 (never trim) or at least 100, got %d", n)
		})},
	{name: "logs_http", field: func(c *Config) any { return &c.LogsHTTP }, redactURL: true,
		check: checkOf(func(s string) string {
			if s == "" {
				return ""
			}
			return errString(checkHTTPURL(s))
		})},
	{name: "cmd_dir", field: func(c *Config) any { return &c.CmdDir },
		fill: func(*Config) any { return defaultCmdDir() },
		check: checkOf(func(s string) string {
			switch {
			case s == "":
				return "must not be empty"
			case !filepath.IsAbs(s):
				return fmt.Sprintf("%q is not an absolute path; write the full path, like \"/srv/jobs\"", s)
			}
			return ""
		})},
	{name: "executor_id", field: func(c *Config) any { return &c.ExecutorID },
		// A failure leaves it empty, which check then asks to set.
		fill: func(*Config) any { h, _ := os.Hostname(); return h },
		check: checkOf(func(s string) string {
			switch {
			case s == "":
				return "is empty and the host name could not be read; set executor_id"
			case !executorIDPattern.MatchString(s):
				return fmt.Sprintf("%q must be 1 to 128 letters, digits or . _ : -", s)
			}
			return ""
		})},
	{name: "concurrency", field: func(c *Config) any { return &c.Concurrency }, def: defaultConcurrency,
		check: checkOf(func(n int) string {
			return failIf(n < 1 || n > 1024, "must be between 1 and 1024, got %d", n)
		})},
	{name: "status_retention", field: func(c *Config) any { return &c.StatusRetention }, def: DefaultStatusRetention,
		check: checkOf(func(d time.Duration) string {
			return failIf(d < time.Minute, "must be at least 1m, got %v", d)
		})},
	{name: "max_task_bytes", field: func(c *Config) any { return &c.MaxTaskBytes }, form: formSize, def: DefaultMaxTaskBytes,
		check: checkOf(func(n int) string {
			return failIf(n < KiB || n > 64*MiB, "must be between 1KiB and 64MiB, got %s", bytesize.Format(int64(n)))
		})},
	{name: "max_output_bytes", field: func(c *Config) any { return &c.MaxOutputBytes }, form: formSize, def: DefaultMaxOutputBytes,
		check: atLeastBytes(KiB)},
	{name: "max_output_messages", field: func(c *Config) any { return &c.MaxOutputMessages }, def: DefaultMaxOutputMessages, unlogged: true,
		check: checkOf(func(n int) string { return failIf(n < 1, "must be at least 1, got %d", n) })},
	{name: "max_output_rate", field: func(c *Config) any { return &c.MaxOutputRate }, def: DefaultMaxOutputRate, unlogged: true,
		check: checkOf(func(n int) string {
			return failIf(n < 1, "must be at least 1 (lines a second per task), got %d", n)
		})},
	{name: "max_line_bytes", field: func(c *Config) any { return &c.MaxLineBytes }, form: formSize, def: DefaultMaxLineBytes,
		check: checkOf(func(n int) string {
			return failIf(n < 256 || n > MiB, "must be between 256 and 1MiB, got %s", bytesize.Format(int64(n)))
		})},
	{name: "kill_grace", field: func(c *Config) any { return &c.KillGrace }, def: DefaultKillGrace, check: notNegative},
	{name: "executor_ttl", field: func(c *Config) any { return &c.ExecutorTTL }, def: DefaultExecutorTTL,
		check: checkOf(func(d time.Duration) string {
			return failIf(d < time.Second || d > 5*time.Minute, "must be between 1s and 5m, got %v", d)
		})},
	{name: "shutdown_grace", field: func(c *Config) any { return &c.ShutdownGrace }, def: DefaultShutdownGrace, check: notNegative},
	{name: "state_dir", field: func(c *Config) any { return &c.StateDir },
		fill: func(*Config) any { return DefaultStateDir() }, check: absDir},
	{name: "spool_dir", field: func(c *Config) any { return &c.SpoolDir },
		fill: func(c *Config) any { return executorDir(c, "spool-") }, check: absDir},
	{name: "spool_max_bytes", field: func(c *Config) any { return &c.SpoolMaxBytes }, form: formSize, def: DefaultSpoolMaxBytes,
		check: atLeastBytes(MiB)},
	{name: "work_dir", field: func(c *Config) any { return &c.WorkDir },
		fill: func(c *Config) any { return executorDir(c, "work-") }, check: absDir},
	{name: "isolation", field: func(c *Config) any { return &c.Isolation }, def: IsolationAuto,
		check: checkOf(func(s string) string {
			switch s {
			case IsolationAuto, IsolationOn, IsolationOff:
				return ""
			}
			return fmt.Sprintf("must be \"auto\", \"on\" or \"off\", got %q", s)
		})},
	{name: "sandbox_user", field: func(c *Config) any { return &c.SandboxUser }, def: DefaultSandboxUser,
		check: checkOf(func(s string) string {
			return failIf(strings.TrimSpace(s) == "", "must name a user or a numeric uid")
		})},
	{name: "sandbox_memory", field: func(c *Config) any { return &c.SandboxMemory }, form: formSize, def: DefaultSandboxMemory,
		check: atLeastBytes(4 * MiB)},
	{name: "sandbox_cpu", field: func(c *Config) any { return &c.SandboxCPU }, def: DefaultSandboxCPU,
		check: checkOf(func(f float64) string {
			return failIf(!(f >= 0.01 && f <= 1024), "must be between 0.01 and 1024 cores, got %g", f)
		})},
	{name: "sandbox_pids", field: func(c *Config) any { return &c.SandboxPids }, def: DefaultSandboxPids,
		check: checkOf(func(n int) string { return failIf(n < 1, "must be at least 1, got %d", n) })},
	{name: "sandbox_network", field: func(c *Config) any { return &c.SandboxNetwork }},
	{name: "sandbox_tmp_size", field: func(c *Config) any { return &c.SandboxTmpSize }, form: formSize, def: DefaultSandboxTmpSize,
		check: atLeastBytes(MiB)},
	{name: "sandbox_work_size", field: func(c *Config) any { return &c.SandboxWorkSize }, form: formSize, def: DefaultSandboxWorkSize,
		check: atLeastBytes(MiB)},
	{name: "cmd_dir_min_free", field: func(c *Config) any { return &c.CmdDirMinFree }, form: formSize, def: DefaultCmdDirMinFree,
		check: atLeastBytes(MiB)},
	{name: "sandbox_chroot", field: func(c *Config) any { return &c.SandboxChroot }},
	{name: "sandbox_init", field: func(c *Config) any { return &c.SandboxInit }, check: absIfSet},
	{name: "policy_file", field: func(c *Config) any { return &c.PolicyFile }, check: absIfSet},
	{name: "audit_file", field: func(c *Config) any { return &c.AuditFile }, check: absIfSet},
	{name: "audit_max_bytes", field: func(c *Config) any { return &c.AuditMaxBytes }, form: formSize, def: DefaultAuditMaxBytes,
		check: checkOf(func(n int64) string {
			return failIf(n != 0 && n < MiB, "must be 0 (never rotate) or at least 1MiB, got %s", bytesize.Format(n))
		})},
	{name: "audit_stream", field: func(c *Config) any { return &c.AuditStream },
		fill: func(c *Config) any { return c.QueueName + "_audit:" + c.ExecutorID }},
	{name: "signing_keys_dir", field: func(c *Config) any { return &c.SigningKeysDir }, check: absIfSet},
	{name: "require_signatures", field: func(c *Config) any { return &c.RequireSignatures }},
	{name: "signature_window", field: func(c *Config) any { return &c.SignatureWindow }, def: DefaultSignatureWindow},

	// The fleet (fleet.go).
	{name: "tubes", field: func(c *Config) any { return &c.Tubes }, set: setTubes, unlogged: true,
		fill: func(*Config) any { return slices.Clone(DefaultTubes) }},
	{name: "labels", field: func(c *Config) any { return &c.Labels }, set: setLabels, unlogged: true},
	{name: "registry", field: func(c *Config) any { return &c.Registry }, unlogged: true},
	// A zero registry_ttl, as an absent one, means the default.
	{name: "registry_ttl", field: func(c *Config) any { return &c.RegistryTTL }, unlogged: true,
		fill: func(*Config) any { return time.Duration(DefaultRegistryTTL) },
		check: checkOf(func(d time.Duration) string {
			return failIf(d < 2*time.Second || d > 5*time.Minute, "must be between 2s and 5m, got %v", d)
		})},
	{name: "dispatched", field: func(c *Config) any { return &c.Dispatched }, unlogged: true},

	// The transport (kafka.go).
	{name: "transport", field: func(c *Config) any { return &c.Transport }, def: TransportRedis},
	{name: "kafka_brokers", field: func(c *Config) any { return &c.Kafka.Brokers }},
	{name: "kafka_tls", field: func(c *Config) any { return &c.Kafka.TLS }, unlogged: true},
	{name: "kafka_tls_ca_file", field: func(c *Config) any { return &c.Kafka.TLSCAFile }, unlogged: true},
	{name: "kafka_tls_cert_file", field: func(c *Config) any { return &c.Kafka.TLSCertFile }, unlogged: true},
	{name: "kafka_tls_key_file", field: func(c *Config) any { return &c.Kafka.TLSKeyFile }, unlogged: true},
	{name: "kafka_sasl_mechanism", field: func(c *Config) any { return &c.Kafka.SASLMechanism }, unlogged: true},
	{name: "kafka_sasl_user", field: func(c *Config) any { return &c.Kafka.SASLUser }, unlogged: true},
	{name: "kafka_sasl_password_file", field: func(c *Config) any { return &c.Kafka.SASLPasswordFile }, unlogged: true},
	{name: "kafka_partitions", field: func(c *Config) any { return &c.Kafka.Partitions }, def: DefaultKafkaPartitions, unlogged: true},
	{name: "kafka_create_topics", field: func(c *Config) any { return &c.Kafka.CreateTopics }, def: true, unlogged: true},
}

// fields maps each config.json key to its setter.
var fields = func() map[string]setter {
	m := make(map[string]setter, len(keys))
	for _, k := range keys {
		if _, dup := m[k.name]; dup {
			panic("config: key " + k.name + " is listed twice")
		}
		m[k.name] = k.setter()
	}
	return m
}()

// fieldNames lists the config.json keys, for suggestions after a typo.
var fieldNames = func() []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	return names
}()

// setter returns k.set or the setter its field's type and form call for.
func (k key) setter() setter {
	if k.set != nil {
		return k.set
	}
	switch k.field(&Config{}).(type) {
	case *string:
		get := func(c *Config) *string { return k.field(c).(*string) }
		if k.form == formPort {
			return portSetter(get)
		}
		return stringSetter(get)
	case *int:
		get := func(c *Config) *int { return k.field(c).(*int) }
		if k.form == formSize {
			return sizeSetter(get)
		}
		return intSetter(get)
	case *int64:
		return sizeSetter(func(c *Config) *int64 { return k.field(c).(*int64) })
	case *float64:
		return floatSetter(func(c *Config) *float64 { return k.field(c).(*float64) })
	case *bool:
		return boolSetter(func(c *Config) *bool { return k.field(c).(*bool) })
	case *time.Duration:
		return durationSetter(func(c *Config) *time.Duration { return k.field(c).(*time.Duration) })
	case *[]string:
		return stringListSetter(func(c *Config) *[]string { return k.field(c).(*[]string) })
	}
	panic("config: key " + k.name + ": no setter for its field's type; give it one in set")
}

// setDefaults gives every non-string field its def, before the file is read.
func (c *Config) setDefaults() {
	for _, k := range keys {
		if k.def == nil {
			continue
		}
		switch p := k.field(c).(type) {
		case *string:
			// after the file: see fillDefaults
		case *int:
			*p = k.def.(int)
		case *int64:
			if n, ok := k.def.(int); ok {
				*p = int64(n) // an untyped constant
			} else {
				*p = k.def.(int64)
			}
		case *float64:
			*p = k.def.(float64)
		case *bool:
			*p = k.def.(bool)
		case *time.Duration:
			*p = k.def.(time.Duration)
		default:
			panic("config: key " + k.name + ": def of an unsupported type")
		}
	}
}

// fillDefaults gives every field still empty its default, in table order:
// queue_name before the names derived from it, executor_id and state_dir
// before spool_dir and work_dir.
func (c *Config) fillDefaults() {
	for _, k := range keys {
		switch p := k.field(c).(type) {
		case *string:
			if *p != "" {
				continue
			}
			switch {
			case k.fill != nil:
				*p = k.fill(c).(string)
			case k.def != nil:
				*p = k.def.(string)
			}
		case *time.Duration:
			if *p == 0 && k.fill != nil {
				*p = k.fill(c).(time.Duration)
			}
		case *[]string:
			if *p == nil && k.fill != nil {
				*p = k.fill(c).([]string)
			}
		default:
			if k.fill != nil {
				panic("config: key " + k.name + ": fill of an unsupported type")
			}
		}
	}
}

// checkKeys runs every key's own check.
func (c *Config) checkKeys(bad func(key, format string, args ...any)) {
	for _, k := range keys {
		if k.check == nil {
			continue
		}
		if msg := k.check(k.field(c)); msg != "" {
			bad(k.name, "%s", msg)
		}
	}
}

// format shows k's value in c for String.
func (k key) format(c *Config) string {
	switch v := k.field(c).(type) {
	case *string:
		s := *v
		switch {
		case k.secret && s != "":
			s = "<redacted>"
		case k.redactURL:
			s = redactURL(s)
		}
		return strconv.Quote(s)
	case *int:
		if k.form == formSize {
			return bytesize.Format(int64(*v))
		}
		return strconv.Itoa(*v)
	case *int64:
		return bytesize.Format(*v)
	case *float64:
		return fmt.Sprintf("%g", *v)
	case *bool:
		return strconv.FormatBool(*v)
	case *time.Duration:
		return v.String()
	case *[]string:
		return fmt.Sprintf("%q", *v)
	default:
		panic("config: key " + k.name + ": String cannot show its type; make it unlogged or show it here")
	}
}

// String lists the configuration as config.json keys, for the start-up log,
// in table order. Secrets (redis_password, URL passwords) are never shown,
// so that logging a Config (or printing it with %v) cannot leak them.
func (c Config) String() string {
	var b strings.Builder
	for _, k := range keys {
		if k.unlogged {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k.name)
		b.WriteByte('=')
		b.WriteString(k.format(&c))
	}
	return b.String()
}

// checkOf adapts a check of a field's value to key.check.
func checkOf[T any](f func(T) string) func(any) string {
	return func(p any) string { return f(*p.(*T)) }
}

// failIf returns the message when bad holds, else "".
func failIf(bad bool, format string, args ...any) string {
	if !bad {
		return ""
	}
	return fmt.Sprintf(format, args...)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// absIfSet: a path that may be unset but, set, must be absolute.
var absIfSet = checkOf(func(s string) string {
	return failIf(s != "" && !filepath.IsAbs(s), "%q is not an absolute path; write the full path", s)
})

// absDir: a directory that is always set and absolute.
var absDir = checkOf(func(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case !filepath.IsAbs(s):
		return fmt.Sprintf("%q is not an absolute path; write the full path", s)
	}
	return ""
})

var notNegative = checkOf(func(d time.Duration) string {
	return failIf(d < 0, "must not be negative, got %v", d)
})

func atLeastBytes(limit int64) func(any) string {
	return checkOf(func(n int64) string {
		return failIf(n < limit, "must be at least %s, got %s", bytesize.Format(limit), bytesize.Format(n))
	})
}

// executorDir is StateDir/PREFIX+ExecutorID, or "" while either is unknown.
func executorDir(c *Config, prefix string) string {
	if c.ExecutorID == "" || c.StateDir == "" {
		return ""
	}
	// ':' is allowed in ids but not in Windows file names.
	return filepath.Join(c.StateDir, prefix+strings.ReplaceAll(c.ExecutorID, ":", "_"))
}
