// Package config loads task-job's config.json.
//
// The file format is the one users of the original tool already have: JSON
// with // and /* */ comments and trailing commas. The original sample also
// lacked a comma between two members on separate lines; such files keep
// loading, with a Warning that says where the comma belongs. Every problem in
// a file is reported at once, each as "file:line:col: key: message".
//
// Keys whose value is null or, for strings, "" take their default, so that
// an old file which wrote "queue_control_name": "" still means
// "{queue_name}_control".
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/spool"
)

// Byte size units used by defaults and limits.
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// MaxFileBytes is the largest config file Load and Parse accept. A real one
// is a few KiB; anything near this is a wrong path, not a config.
const MaxFileBytes = 1 * MiB

// Isolation modes.
const (
	// IsolationAuto isolates tasks when the host allows it and warns at
	// start-up when it does not.
	IsolationAuto = "auto"
	// IsolationOn refuses to start when isolation is unavailable.
	IsolationOn = "on"
	// IsolationOff runs tasks without cgroups or namespaces. Unsafe: any
	// task can see and signal the host's processes.
	IsolationOff = "off"
)

// Defaults that do not depend on the host or on other keys. Where the
// library that uses a value owns its default, the key refers to it; the
// package is light enough for config to import (queue, spool). The
// executor's, the sandbox's and the transports' own defaults are repeated
// here, because importing those packages would pull the sandbox, the policy
// language and the Redis and Kafka clients into every user of config;
// defaults_test.go fails when a copy drifts from its source.
const (
	DefaultRedisAddr       = "127.0.0.1:6379"
	DefaultQueueName       = "queue_job_task"
	DefaultStatusRetention = queue.DefaultRetention
	DefaultMaxTaskBytes    = queue.DefaultMaxTaskBytes
	DefaultMaxOutputBytes  = 16 * MiB // executor.DefaultMaxOutputBytes
	DefaultMaxLineBytes    = 64 * KiB // executor.DefaultMaxLineBytes
	// DefaultMaxOutputMessages and DefaultMaxOutputRate bound the TaskLog
	// messages of one task: `yes '' | head -n 1000000` ships 100,000 lines
	// at most, 5,000 a second (executor.DefaultMaxOutputMessages, ...Rate).
	DefaultMaxOutputMessages = 100000
	DefaultMaxOutputRate     = 5000
	DefaultKillGrace         = 5 * time.Second  // executor.DefaultKillGrace
	DefaultExecutorTTL       = queue.DefaultTTL // executor.DefaultTTL too
	DefaultShutdownGrace     = 30 * time.Second // executor.DefaultShutdownGrace
	DefaultSpoolMaxBytes     = spool.DefaultDiskBytes
	DefaultSandboxUser       = "nobody"   // sandbox.DefaultUser
	DefaultSandboxMemory     = 512 * MiB  // sandbox.DefaultMemoryBytes
	DefaultSandboxCPU        = 1.0        // sandbox.DefaultCPUCores
	DefaultSandboxPids       = 256        // sandbox.DefaultPids
	DefaultSandboxTmpSize    = 64 * MiB   // sandbox.DefaultTmpBytes
	DefaultSandboxWorkSize   = 1024 * MiB // sandbox.DefaultWorkBytes
	DefaultCmdDirMinFree     = 1024 * MiB // executor.DefaultCmdDirMinFree
	DefaultAuditMaxBytes     = 100 * MiB
	DefaultSignatureWindow   = 5 * time.Minute
	// DefaultLogsMaxLen bounds the shared logs list (logs_max_len);
	// redisqueue.DefaultLogsMaxLen.
	DefaultLogsMaxLen = 100000
)

// maxDefaultConcurrency caps the NumCPU default so that a very large host
// still gets a valid configuration without writing the key.
const maxDefaultConcurrency = 1024

// Config is task-job's configuration. Build one with Default or Load; the
// comments give each field's config.json key and default.
type Config struct {
	// ServerPort ("server_port") is the HTTP management port: "8080",
	// ":8080" or "host:8080"; a JSON number is accepted too. "" = off. A
	// bare port listens on loopback only; any other host needs
	// ServerTokensFile.
	ServerPort string
	// ServerTokensFile ("server_tokens_file") lists the management API's
	// bearer tokens, hashed, each with a role. "" = no tokens: the server
	// then listens on loopback only and trusts every caller there.
	ServerTokensFile string
	// ServerTLSCert and ServerTLSKey ("server_tls_cert", "server_tls_key")
	// are PEM files; both set = the management server speaks HTTPS only.
	// Without them a server reachable beyond loopback is warned about.
	ServerTLSCert, ServerTLSKey string
	// RedisAddr ("redis_addr", default "127.0.0.1:6379") is "host:port", a
	// "redis://" or "rediss://" URL, "sentinel://MASTER@host:port,host:port",
	// or "cluster://host:port,host:port" (Redis Cluster; see checkClusterKeys).
	RedisAddr string
	// RedisPassword ("redis_password") is discouraged in the file: prefer
	// redis_password_file. After Load it holds the password whichever way
	// it was given.
	RedisPassword string
	// RedisPasswordFile ("redis_password_file") is read by Load, trailing
	// newlines trimmed. A relative path is relative to the config file.
	RedisPasswordFile string
	// RedisDB ("redis_db", default 0) is the Redis database number.
	RedisDB int
	// QueueName ("queue_name", default "queue_job_task") is the task list.
	QueueName string
	// QueueControlName ("queue_control_name", default QueueName+"_control")
	// is the control (kill) list.
	QueueControlName string
	// Logs ("logs", default false) streams task stdout/stderr lines.
	Logs bool
	// LogsChannel ("logs_channel", default QueueName+"_logs") is the list
	// that receives TaskLog messages.
	LogsChannel string
	// LogsMaxLen ("logs_max_len", default 100000; 0 = never trim, as the
	// original did) is how many of the newest messages the logs_channel
	// list keeps: each publish trims it. Each task's messages are kept
	// whole, for status_retention, in a stream of its own.
	LogsMaxLen int
	// LogsHTTP ("logs_http") is an http(s) URL that TaskLog messages are
	// also POSTed to. "" = off.
	LogsHTTP string
	// CmdDir ("cmd_dir", default "/tmp"; os.TempDir() on Windows) is the
	// directory scripts run from; nothing outside it may be run. Load
	// checks that it exists and is a directory.
	CmdDir string
	// ExecutorID ("executor_id", default the host name) names this executor
	// in Redis keys and results: 1 to 128 of [A-Za-z0-9._:-].
	ExecutorID string
	// Concurrency ("concurrency", default the number of CPUs) is how many
	// tasks run at once: 1..1024.
	Concurrency int
	// StatusRetention ("status_retention", default "24h", at least 1m) is
	// how long a task's status stays queryable; it is also the window in
	// which a repeated task id is recognised and not run again.
	StatusRetention time.Duration
	// MaxTaskBytes ("max_task_bytes", default 1 MiB, 1 KiB..64 MiB) is the
	// largest task message accepted.
	MaxTaskBytes int
	// MaxOutputBytes ("max_output_bytes", default 16 MiB, at least 1 KiB)
	// caps the output shipped per task, counted as the bytes of the TaskLog
	// messages that carry it (JSON envelope included), so that empty lines
	// count too.
	MaxOutputBytes int64
	// MaxOutputMessages ("max_output_messages", default 100,000, at least
	// 1) caps the TaskLog messages (output lines) shipped per task.
	MaxOutputMessages int
	// MaxOutputRate ("max_output_rate", default 5,000, at least 1) caps the
	// output lines shipped per task per second (bursts of up to a second's
	// worth); lines beyond it are dropped and counted.
	MaxOutputRate int
	// MaxLineBytes ("max_line_bytes", default 64 KiB, 256 B..1 MiB): longer
	// output lines are split.
	MaxLineBytes int
	// KillGrace ("kill_grace", default "5s") is the wait between SIGTERM
	// and SIGKILL when a task is killed.
	KillGrace time.Duration
	// ExecutorTTL ("executor_ttl", default "5s", 1s..5m) is the liveness
	// window: an executor whose heartbeat is older than this, seen so for
	// another whole window, is dead; its started tasks are reported lost.
	ExecutorTTL time.Duration
	// ShutdownGrace ("shutdown_grace", default "30s") is how long running
	// tasks may finish after task-job itself receives SIGTERM.
	ShutdownGrace time.Duration
	// StateDir ("state_dir", default DefaultStateDir()) is where the
	// executor keeps its own files: the spool and the tasks' work
	// directories, unless spool_dir and work_dir say otherwise.
	StateDir string
	// SpoolDir ("spool_dir", default StateDir/spool-ExecutorID) holds
	// messages that could not be delivered while Redis was down. It is
	// created 0700 without following symlinks; one that another user could
	// change is refused.
	SpoolDir string
	// WorkDir ("work_dir", default StateDir/work-ExecutorID) holds one
	// private writable directory per running task (its HOME, TMPDIR and
	// TASK_WORKDIR), removed when the task ends. Created like SpoolDir.
	WorkDir string
	// SpoolMaxBytes ("spool_max_bytes", default 1 GiB, at least 1 MiB)
	// bounds SpoolDir.
	SpoolMaxBytes int64
	// Isolation ("isolation", default "auto") is IsolationAuto,
	// IsolationOn or IsolationOff.
	Isolation string

	// The Linux sandbox's defaults; a policy rule may override them per
	// task.

	// SandboxUser ("sandbox_user", default "nobody") is who tasks run as.
	// "root" is allowed but logged as a warning.
	SandboxUser string
	// SandboxMemory ("sandbox_memory", default 512 MiB, at least 4 MiB) is
	// a task's memory limit.
	SandboxMemory int64
	// SandboxCPU ("sandbox_cpu", default 1.0) is a task's CPU limit in
	// cores: 0.01..1024.
	SandboxCPU float64
	// SandboxPids ("sandbox_pids", default 256, at least 1) caps a task's
	// processes and threads.
	SandboxPids int
	// SandboxNetwork ("sandbox_network", default false) gives tasks the
	// host's network; otherwise each sees only a loopback.
	SandboxNetwork bool
	// SandboxTmpSize ("sandbox_tmp_size", default 64 MiB) sizes a task's
	// private /tmp and /dev/shm.
	SandboxTmpSize int64
	// SandboxWorkSize ("sandbox_work_size", default 1 GiB) caps each task's
	// own work directory, a tmpfs whose pages count as the task's memory.
	SandboxWorkSize int64
	// CmdDirMinFree ("cmd_dir_min_free", default 1 GiB, at least 1 MiB) is
	// the free space a task of a cmd_dir_writable rule must leave on
	// cmd_dir's file system: below it such a task is stopped, or not
	// started.
	CmdDirMinFree int64
	// SandboxChroot ("sandbox_chroot", default false) shows a task only
	// cmd_dir, as /.
	SandboxChroot bool
	// SandboxInit ("sandbox_init") is the task-job-init helper; default:
	// next to the task-job binary.
	SandboxInit string

	// PolicyFile ("policy_file") is the whitelist policy (policy.hcl).
	// Set, nothing runs unless a rule allows it. "" = section 3's rules
	// alone, with a start-up warning.
	PolicyFile string
	// AuditFile ("audit_file") is the hash-chained audit log. "" = off,
	// with a start-up warning.
	AuditFile string
	// AuditMaxBytes ("audit_max_bytes", default 100 MiB; 0 = never)
	// rotates the audit file.
	AuditMaxBytes int64
	// AuditStream ("audit_stream", default QueueName+"_audit:"+ExecutorID)
	// is the Redis stream the audit log is mirrored to. Each executor has
	// its own audit file, so each needs a stream of its own: entry ids are
	// the file's seqs, and two files' seqs in one stream collide.
	AuditStream string
	// SigningKeysDir ("signing_keys_dir") holds one file per signing key:
	// the name is the key id, the content the secret.
	SigningKeysDir string
	// RequireSignatures ("require_signatures", default false) rejects
	// tasks that are not validly signed. Needs signing_keys_dir.
	RequireSignatures bool
	// SignatureWindow ("signature_window", default "5m", 1s..1h, below
	// status_retention) is the accepted clock difference of a signed task.
	SignatureWindow time.Duration

	Fleet // tubes, labels, registry (fleet.go)
	// Transport ("transport", default "redis") is "redis" or "kafka".
	Transport string
	// Kafka holds the kafka_* keys (kafka.go).
	Kafka Kafka
}

// Default returns the configuration used when config.json sets nothing.
func Default() *Config {
	c := newConfig()
	c.fillDefaults()
	return c
}

// newConfig returns the defaults of the non-string fields. String fields
// stay empty until fillDefaults, because some derive from others
// (queue_control_name from queue_name) and must follow what the file set.
func newConfig() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

// defaultCmdDir is "/tmp" as in the original tool; Windows has no /tmp.
func defaultCmdDir() string {
	if runtime.GOOS == "windows" {
		return os.TempDir()
	}
	return "/tmp"
}

// Validate checks every field and the rules between fields, and returns
// Errors listing all problems, or nil. Parse and Load call it; code that
// builds or changes a Config should call it too.
func (c *Config) Validate() error {
	if errs := c.validate(func(string) Pos { return Pos{} }); len(errs) > 0 {
		return errs
	}
	return nil
}

var executorIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// validate checks ranges and formats. pos says where each key was set, so
// that problems point into the file.
func (c *Config) validate(pos func(key string) Pos) Errors {
	var errs Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, Error{Pos: pos(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	if c.ServerPort != "" {
		if err := checkListenAddr(c.ServerPort); err != nil {
			bad("server_port", "%v", err)
		} else if !listensOnLoopback(c.ServerPort) && c.ServerTokensFile == "" {
			bad("server_port", "%q listens beyond loopback, where anyone could start and kill tasks; set server_tokens_file "+
				"(and server_tls_cert, server_tls_key), or write a bare port to listen on 127.0.0.1 only", c.ServerPort)
		}
	}
	switch {
	case c.ServerTLSCert != "" && c.ServerTLSKey == "":
		bad("server_tls_cert", "is set but server_tls_key is not; HTTPS needs both the certificate and its key")
	case c.ServerTLSKey != "" && c.ServerTLSCert == "":
		bad("server_tls_key", "is set but server_tls_cert is not; HTTPS needs both the certificate and its key")
	}
	urlDB, err := checkRedisAddr(c.RedisAddr)
	if err != nil {
		bad("redis_addr", "%v", err)
	}
	if c.RedisDB < 0 {
		bad("redis_db", "must be 0 or more, got %d", c.RedisDB)
	} else if urlDB >= 0 && c.RedisDB != 0 && c.RedisDB != urlDB {
		bad("redis_db", "is %d but redis_addr selects database %d; set the database in one place", c.RedisDB, urlDB)
	}

	queues := []struct{ key, name string }{
		{"queue_name", c.QueueName},
		{"queue_control_name", c.QueueControlName},
		{"logs_channel", c.LogsChannel},
	}
	baseErr := checkKeyName(c.QueueName)
	for i, q := range queues {
		if i > 0 && baseErr != nil && strings.HasPrefix(q.name, c.QueueName+"_") {
			continue // derived from a bad queue_name: said once, there
		}
		if err := checkKeyName(q.name); err != nil {
			bad(q.key, "%v", err)
			continue
		}
		for _, p := range queues[:i] {
			if p.name == q.name {
				bad(q.key, "is %q, the same list as %s; tasks, kills and logs need separate lists", q.name, p.key)
			}
		}
	}

	if c.Cluster() && err == nil {
		if c.RedisDB != 0 {
			bad("redis_db", "is %d but Redis Cluster has only database 0; remove redis_db", c.RedisDB)
		}
		c.checkClusterKeys(bad)
	}

	c.checkKeys(bad) // each key's own range: the check of its row in keys
	// The derived default is as valid as queue_name and executor_id, which
	// are checked (and named) themselves.
	if c.AuditStream != c.QueueName+"_audit:"+c.ExecutorID && !(baseErr != nil && strings.HasPrefix(c.AuditStream, c.QueueName+"_")) {
		if err := checkKeyName(c.AuditStream); err != nil {
			bad("audit_stream", "%v", err)
		}
	}
	if c.RequireSignatures && c.SigningKeysDir == "" {
		bad("require_signatures", "is true but signing_keys_dir is not set; name the directory holding the keys")
	}
	switch {
	case c.SignatureWindow < time.Second || c.SignatureWindow > time.Hour:
		bad("signature_window", "must be between 1s and 1h, got %v", c.SignatureWindow)
	case c.SigningKeysDir != "" && c.SignatureWindow*2 >= c.StatusRetention:
		bad("signature_window", "must be under half of status_retention (%v): a replay older than the retention would no longer be recognised, got %v", c.StatusRetention, c.SignatureWindow)
	}
	c.validateFleet(bad)
	c.validateKafka(bad)
	return errs
}

// Sentinel reports whether RedisAddr names a Sentinel setup and, if so, the
// master name and the sentinel addresses. It expects a validated Config.
func (c *Config) Sentinel() (master string, addrs []string, ok bool) {
	rest, ok := strings.CutPrefix(c.RedisAddr, sentinelScheme)
	if !ok {
		return "", nil, false
	}
	master, list, ok := strings.Cut(rest, "@")
	if !ok {
		return "", nil, false
	}
	return master, strings.Split(list, ","), true
}

const sentinelScheme = "sentinel://"

const clusterScheme = "cluster://"

// Cluster reports whether RedisAddr names a Redis Cluster.
func (c *Config) Cluster() bool { return strings.HasPrefix(c.RedisAddr, clusterScheme) }

// ClusterAddrs returns the seed nodes of a cluster:// RedisAddr.
func (c *Config) ClusterAddrs() []string {
	return strings.Split(strings.TrimPrefix(c.RedisAddr, clusterScheme), ",")
}

// HashTag is the part of key Redis Cluster hashes: the text between the
// first '{' and the first '}' after it, if not empty; else "" (the whole key
// is hashed).
func HashTag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok {
		return ""
	}
	return tag
}

// checkClusterKeys: on Redis Cluster every key of a deployment must hash to
// one slot, because the take moves a task between two lists and the scripts
// touch several keys (some built inside them, like a tube's list). All
// keys are queue_name plus a suffix, so a queue_name carrying a hash tag
// puts them in its slot; the names set on their own must carry the same
// tag. The tag is the user's to write, not added here: it is part of the
// list names producers push to, which must not differ from what the file
// says.
func (c *Config) checkClusterKeys(bad func(key, format string, args ...any)) {
	tag := HashTag(c.QueueName)
	if tag == "" {
		bad("queue_name", "is %q, which has no hash tag; on Redis Cluster all of a deployment's keys must share one slot: write it as %q (producers then push to that name)", c.QueueName, "{"+strings.Trim(c.QueueName, "{}")+"}")
		return
	}
	for _, k := range []struct{ key, name string }{
		{"queue_control_name", c.QueueControlName},
		{"logs_channel", c.LogsChannel},
		{"audit_stream", c.AuditStream},
	} {
		if HashTag(k.name) != tag {
			bad(k.key, "is %q, not in queue_name's hash slot; on Redis Cluster it must carry queue_name's hash tag {%s}, like %q", k.name, tag, "{"+tag+"}"+strings.TrimPrefix(k.name, c.QueueName))
		}
	}
}

// checkRedisAddr validates the three accepted forms of redis_addr. It
// returns the database a redis:// URL selects, or -1 when it selects none.
func checkRedisAddr(s string) (db int, err error) {
	const forms = `use "host:port", "redis://host:port/0", "rediss://host:port", "sentinel://MASTER@host:port,host:port" or "cluster://host:port,host:port"`
	switch {
	case s == "":
		return -1, fmt.Errorf("must not be empty; %s", forms)
	case strings.HasPrefix(s, clusterScheme):
		list := strings.TrimPrefix(s, clusterScheme)
		if list == "" {
			return -1, fmt.Errorf("%q lists no node; write cluster://host:port,host:port", s)
		}
		for addr := range strings.SplitSeq(list, ",") {
			if err := checkHostPort(addr); err != nil {
				return -1, fmt.Errorf("%q: cluster node %w", s, err)
			}
		}
		return -1, nil
	case strings.HasPrefix(s, sentinelScheme):
		master, list, ok := strings.Cut(strings.TrimPrefix(s, sentinelScheme), "@")
		if !ok || master == "" {
			return -1, fmt.Errorf("%q names no master; write sentinel://MASTER@host:port,host:port", s)
		}
		if strings.ContainsAny(master, "/,:") {
			return -1, fmt.Errorf("%q: master name %q must not contain '/', ',' or ':'", s, master)
		}
		if list == "" {
			return -1, fmt.Errorf("%q lists no sentinel address; add at least one host:port after '@'", s)
		}
		for addr := range strings.SplitSeq(list, ",") {
			if err := checkHostPort(addr); err != nil {
				return -1, fmt.Errorf("%q: sentinel address %w", s, err)
			}
		}
		return -1, nil
	case strings.HasPrefix(s, "redis://"), strings.HasPrefix(s, "rediss://"):
		u, err := url.Parse(s)
		if err != nil {
			return -1, fmt.Errorf("is not a valid URL (%w); %s", err, forms)
		}
		if u.Host == "" {
			return -1, fmt.Errorf("%q has no host; %s", s, forms)
		}
		if p := u.Port(); p != "" {
			if err := checkPort(p); err != nil {
				return -1, fmt.Errorf("%q: %w", s, err)
			}
		}
		path := strings.TrimPrefix(u.Path, "/")
		if path == "" {
			return -1, nil
		}
		n, err := strconv.Atoi(path)
		if err != nil || n < 0 {
			return -1, fmt.Errorf("%q: the path must be a database number, like /0", s)
		}
		return n, nil
	case strings.Contains(s, "://"):
		return -1, fmt.Errorf("%q has an unknown scheme; %s", s, forms)
	default:
		if err := checkHostPort(s); err != nil {
			return -1, fmt.Errorf("%w; %s", err, forms)
		}
		return -1, nil
	}
}

// checkHostPort accepts "host:port" and "[v6]:port"; the host is required
// because an empty one silently means localhost.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; write 127.0.0.1:%s for this machine", s, port)
	}
	return checkPort(port)
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be a number between 1 and 65535", p)
	}
	return nil
}

// checkListenAddr accepts "8080", ":8080" and "host:8080".
func checkListenAddr(s string) error {
	if !strings.Contains(s, ":") {
		return checkPort(s)
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not a port, :port or host:port", s)
	}
	return checkPort(port)
}

// listensOnLoopback reports whether a valid server_port stays on this
// machine: a bare port (which means 127.0.0.1), localhost or a loopback
// address.
func listensOnLoopback(s string) bool {
	if !strings.Contains(s, ":") {
		return true
	}
	host, _, _ := net.SplitHostPort(s)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("is not a valid URL (%w); write it like \"https://host/path\"", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https://", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}

// checkKeyName refuses Redis key names that would be mistyped or misread in
// redis-cli: empty ones and those with spaces or control characters.
func checkKeyName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("%q must not contain spaces or control characters", s)
	}
	return nil
}

// redactURL hides a password inside a URL such as redis://user:pw@host.
func redactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

// SetQueueName changes queue_name after loading (the client commands'
// -queue flag), and with it the names derived from it that still have their
// derived default; names the file set explicitly stay as they are.
func (c *Config) SetQueueName(name string) {
	old := c.QueueName
	derive := func(p *string, suffix string) {
		if *p == old+suffix {
			*p = name + suffix
		}
	}
	derive(&c.QueueControlName, "_control")
	derive(&c.LogsChannel, "_logs")
	derive(&c.AuditStream, "_audit:"+c.ExecutorID)
	c.QueueName = name
}
