package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/signature"
)

// "task-job doctor" checks, on the host it runs on, what the executor would
// meet with a config: each finding a line that says OK, WARN or FAIL, in
// plain words, and for every WARN and FAIL what to do. It changes nothing
// an executor owns: it reads files, asks Redis, takes and at once releases
// the locks a running executor would hold, and runs one trial task in a
// sandbox of its own (its own cgroup parent, root and work directories).

// packagedConfig is the config the package installs; doctor checks it when
// no -config is given and it exists.
const packagedConfig = "/etc/task-job/config.json"

// Finding statuses.
const (
	statusOK   = "OK"
	statusWarn = "WARN"
	statusFail = "FAIL"
)

// finding is one line of the report.
type finding struct {
	Status  string `json:"status"`
	Check   string `json:"check"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// doctor collects the findings of one run.
type doctor struct {
	cfg      *config.Config
	cfgPath  string
	policy   *policy.Policy
	jail     *jail.Jail
	rdb      redis.UniversalClient
	findings []finding
	// redisTimeout bounds every question to Redis.
	redisTimeout time.Duration
}

func (d *doctor) add(status, check, fix, format string, a ...any) {
	d.findings = append(d.findings, finding{Status: status, Check: check, Message: fmt.Sprintf(format, a...), Fix: fix})
}
func (d *doctor) ok(check, format string, a ...any) { d.add(statusOK, check, "", format, a...) }
func (d *doctor) warn(check, fix, format string, a ...any) {
	d.add(statusWarn, check, fix, format, a...)
}
func (d *doctor) fail(check, fix, format string, a ...any) {
	d.add(statusFail, check, fix, format, a...)
}

func (d *doctor) count(status string) int {
	n := 0
	for _, f := range d.findings {
		if f.Status == status {
			n++
		}
	}
	return n
}

func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job doctor")
	configPath := fs.String("config", "", "path of config.json (default "+packagedConfig+" if it exists, else every key's default)")
	asJSON := fs.Bool("json", false, "print one JSON object per finding: status, check, message, fix")
	if ok, code := parseFlags(fs, "doctor", args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "doctor", "unexpected argument %q", fs.Arg(0))
	}
	d := &doctor{cfgPath: *configPath, redisTimeout: 3 * time.Second}
	d.run()
	d.print(stdout, *asJSON)
	if d.count(statusFail) > 0 {
		return exitFailed
	}
	return exitOK
}

// run makes every check in order; a check that needs what an earlier one
// could not give is left out, and the earlier FAIL says why.
func (d *doctor) run() {
	if !d.checkConfig() {
		return
	}
	d.checkPolicy()
	d.checkCmdDir()
	d.checkSandboxUser()
	redisOK := d.checkRedis()
	if d.rdb != nil {
		defer d.rdb.Close()
	}
	if redisOK {
		d.checkACL()
	}
	d.checkIdentity(redisOK)
	d.checkHost() // root, cgroups, helper, namespaces, seccomp, a trial task: doctor_linux.go
	d.checkAudit()
	d.checkSignatures()
	d.checkServerPort()
}

// print writes the report: a header, one line per finding with its fix
// below, and a verdict.
func (d *doctor) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, f := range d.findings {
			_ = enc.Encode(f)
		}
		return
	}
	who := "uid " + fmt.Sprint(os.Geteuid())
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	what := d.cfgPath
	if what == "" {
		what = "the default config"
	}
	fmt.Fprintf(w, "task-job doctor: %s, as %s on %s/%s\n\n", what, who, runtime.GOOS, runtime.GOARCH)
	for _, f := range d.findings {
		fmt.Fprintf(w, "%-4s  %-12s%s\n", f.Status, f.Check, f.Message)
		if f.Fix != "" {
			fmt.Fprintf(w, "      %-12sfix: %s\n", "", f.Fix)
		}
	}
	fails, warns := d.count(statusFail), d.count(statusWarn)
	fmt.Fprintf(w, "\n%s, %s: ", policyPlural(fails, "failure"), policyPlural(warns, "warning"))
	switch {
	case fails > 0:
		fmt.Fprintln(w, "the executor would refuse to start, or could not serve, with this config. Fix each FAIL above.")
	case warns > 0:
		fmt.Fprintln(w, "the executor would start; each WARN above weakens what it enforces or how it runs.")
	default:
		fmt.Fprintln(w, "the executor would start and enforce everything it can.")
	}
}

// checkConfig loads the config, as the executor would.
func (d *doctor) checkConfig() bool {
	if d.cfgPath == "" {
		if _, err := os.Stat(packagedConfig); err == nil {
			d.cfgPath = packagedConfig
		}
	}
	if d.cfgPath == "" {
		d.cfg = config.Default()
		d.warn("config", "pass -config=FILE, the file the executor is started with ("+packagedConfig+" as packaged)",
			"no -config given and no %s: checking every key's default", packagedConfig)
		return true
	}
	cfg, warnings, err := config.Load(d.cfgPath)
	if err != nil {
		var errs config.Errors
		msg := err.Error()
		if errors.As(err, &errs) {
			msg = fmt.Sprintf("%d problem(s):\n%s", len(errs), indent(err.Error()))
		}
		d.fail("config", "fix each problem at its file:line:col (task-job refuses to start until then); the other checks need a config that loads",
			"%s does not load: %s", d.cfgPath, msg)
		return false
	}
	d.cfg = cfg
	d.ok("config", "%s loads (executor_id %q, queue %q)", d.cfgPath, cfg.ExecutorID, cfg.QueueName)
	for _, w := range warnings {
		d.warn("config", "", "%s", w.String())
	}
	return true
}

// indent puts a continuation indent before every line of s.
func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "                  " + strings.Join(lines, "\n                  ")
}

// checkPolicy loads policy_file and checks the users and groups it names.
func (d *doctor) checkPolicy() {
	if d.cfg.PolicyFile == "" {
		d.warn("policy", "set policy_file (the package ships /etc/task-job/policy.hcl, deny by default)",
			"no policy_file: any script in cmd_dir that passes the jail's checks may run, as sandbox_user")
		return
	}
	p, err := policy.Load(d.cfg.PolicyFile)
	if err != nil {
		d.fail("policy", "fix each problem at its file:line:col, then: task-job policy check "+d.cfg.PolicyFile,
			"%s does not load (the executor refuses to start):\n%s", d.cfg.PolicyFile, indent(err.Error()))
		return
	}
	d.policy = p
	if perr := checkPolicyAccounts(p); perr != nil {
		for _, pr := range perr.Problems {
			d.fail("policy", "create the user or group (useradd --system NAME), or name an existing one in the rule",
				"%s", pr.String())
		}
	} else {
		d.ok("policy", "%s loads: %s, every user and group it names exists", d.cfg.PolicyFile, policyPlural(p.Rules(), "rule"))
	}
	var writable []string
	for _, r := range p.RuleList() {
		if r.Limits.CmdDirWritable {
			writable = append(writable, r.Name)
		}
		if r.Limits.User == "root" || r.Limits.User == "0" {
			d.warn("policy", "run it as an unprivileged user unless it truly needs root",
				"rule %q runs its tasks as root (without the capabilities that reach the host, but root in cmd_dir and its work dir)", r.Name)
		}
	}
	if len(writable) > 0 {
		d.warn("policy", "drop cmd_dir_writable unless those tasks must change the scripts",
			"rules %s let their tasks WRITE cmd_dir, and so change what other tasks run", policyQuoteAll(writable))
	}
}

// checkCmdDir makes the jail, whose trust check is the executor's, and
// resolves the program of every policy rule in it.
func (d *doctor) checkCmdDir() {
	j, err := jail.New(jail.Options{Dir: d.cfg.CmdDir, Chroot: d.cfg.SandboxChroot})
	if err != nil {
		d.fail("cmd_dir", "make cmd_dir and every directory above it owned by root (or the executor's user) and writable by no one else: chown root: DIR && chmod go-w DIR",
			"%s is refused (the executor refuses to start): %v", d.cfg.CmdDir, err)
		return
	}
	d.jail = j
	if c := filepath.Clean(d.cfg.CmdDir); c == "/tmp" || c == "/var/tmp" {
		d.warn("cmd_dir", "give task-job a directory of its own, e.g. \"cmd_dir\": \"/var/lib/task-job/cmd\"",
			"cmd_dir is the host's shared %s: every task sees all of it, other programs' files and sockets included", c)
	} else {
		d.ok("cmd_dir", "%s passes the trust check: it and every directory above it are owned by root or this user and writable by no one else", j.Dir())
	}
	if d.policy == nil {
		return
	}
	for _, r := range d.policy.RuleList() {
		if _, err := j.ResolveAllowed(r.Cmdline, nil, true); err != nil {
			d.warn("cmd_dir", "install the script owned by root and writable only by it: install -m 755 SCRIPT "+j.Dir()+"/",
				"rule %q: %v (its tasks are rejected until then)", r.Name, err)
		}
	}
}

// checkSandboxUser checks the default task user exists.
func (d *doctor) checkSandboxUser() {
	name := d.cfg.SandboxUser
	if isNumeric(name) {
		return
	}
	if _, err := user.Lookup(name); err != nil {
		d.fail("users", "create it, or set sandbox_user to an existing unprivileged user",
			"sandbox_user %q does not exist on this host: no task without a policy user could start", name)
		return
	}
	if name == "root" {
		d.warn("users", "set sandbox_user to an unprivileged user (the default is nobody), and name root only in the rules that need it",
			"sandbox_user is root: every task runs as root unless a rule names another user")
	}
}

// checkRedis connects with the configured address and credentials and
// says as whom.
func (d *doctor) checkRedis() bool {
	redisqueue.RouteClientLog(hclog.NewNullLogger())
	rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: d.cfg.RedisAddr, Password: d.cfg.RedisPassword, DB: d.cfg.RedisDB, PoolSize: 2})
	if err != nil {
		d.fail("redis", "fix redis_addr", "%v", err)
		return false
	}
	d.rdb = rdb
	ctx, cancel := context.WithTimeout(context.Background(), d.redisTimeout)
	defer cancel()
	// A user that may not PING is connected all the same: the ACL check
	// below says what it may not do.
	if err := rdb.Ping(ctx).Err(); err != nil && !isNoPerm(err) {
		fix := redisFix(err)
		if fix == "" {
			fix = "check redis_addr, and that Redis runs there and this host may reach it (systemctl status redis-server)"
		}
		d.fail("redis", fix, "%s does not answer as the executor would connect: %v (the executor would retry until it does; no task can arrive meanwhile)", redactAddr(d.cfg.RedisAddr), err)
		return false
	}
	who := redisUser(ctx, rdb, d.cfg.RedisAddr)
	version := redisVersion(ctx, rdb)
	if version != "" {
		version = " (Redis " + version + ")"
	}
	d.ok("redis", "%s answers%s, as ACL user %q", redactAddr(d.cfg.RedisAddr), version, who)
	if who == "default" && d.cfg.RedisPassword == "" {
		d.warn("redis", "give the executor an ACL user of its own with a password (examples/redis/users.acl) and turn the default user off",
			"Redis asked for no password: whoever reaches %s can take, forge and delete tasks and results", redactAddr(d.cfg.RedisAddr))
	}
	return true
}

// redisFix names the setting to fix when Redis answers but refuses the
// connection as configured (its password, user or database); "" when
// Redis did not answer, which is the address's (or Redis's) fault.
func redisFix(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return "check the password in redis_password_file and the user in redis_addr (redis://USER@host:port); the executor's user is in examples/redis/users.acl"
	case strings.Contains(msg, "NOAUTH"):
		return "this Redis needs a password: set redis_password_file (and the ACL user in redis_addr: redis://USER@host:port)"
	case strings.Contains(msg, "without any password configured"):
		return "this Redis has no password: remove redis_password_file (or the password in redis_addr), or set one in Redis"
	case strings.Contains(msg, "DB index is out of range"):
		return "redis_db (or the /DB of a redis:// URL) is beyond the databases this Redis has"
	}
	return ""
}

// redactAddr hides a password in a redis:// URL.
func redactAddr(addr string) string {
	if i := strings.Index(addr, "://"); i >= 0 {
		if at := strings.LastIndex(addr, "@"); at > i {
			cred := addr[i+3 : at]
			if u, _, ok := strings.Cut(cred, ":"); ok {
				return addr[:i+3] + u + ":***" + addr[at:]
			}
		}
	}
	return addr
}

// redisUser is the ACL user the connection runs as: ACL WHOAMI when the user
// may ask, else the user named in redis_addr, else "default".
func redisUser(ctx context.Context, rdb redis.UniversalClient, addr string) string {
	if who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text(); err == nil && who != "" {
		return who
	}
	if strings.Contains(addr, "://") && !strings.HasPrefix(addr, "sentinel://") {
		if o, err := redis.ParseURL(addr); err == nil && o.Username != "" {
			return o.Username
		}
	}
	return "default"
}

// redisVersion asks HELLO (which any user may run) for the server version.
func redisVersion(ctx context.Context, rdb redis.UniversalClient) string {
	v, err := rdb.Do(ctx, "HELLO").Result()
	if err != nil {
		return ""
	}
	switch m := v.(type) {
	case map[any]any:
		if s, ok := m["version"].(string); ok {
			return s
		}
	case []any:
		for i := 0; i+1 < len(m); i += 2 {
			if k, _ := m[i].(string); k == "version" {
				s, _ := m[i+1].(string)
				return s
			}
		}
	}
	return ""
}

// isNoPerm tells a command the ACL refused.
func isNoPerm(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOPERM")
}

// checkACL asks Redis, with harmless commands, whether the executor's user
// may do what the executor does on its keys, and whether it may do more.
func (d *doctor) checkACL() {
	ctx, cancel := context.WithTimeout(context.Background(), d.redisTimeout)
	defer cancel()
	q := d.cfg.QueueName
	probe := fmt.Sprintf("%s:doctor:%s-%d", q, d.cfg.ExecutorID, os.Getpid())
	// What the executor needs, tried without changing anything that
	// matters: reads of its lists and stream, and every command its client
	// and its scripts use, run inside one script on keys of doctor's own
	// that the script deletes before it returns.
	needs := []struct {
		what string
		cmd  []any
	}{
		{"PING", []any{"PING"}},
		{"LLEN " + q, []any{"LLEN", q}},
		{"LLEN " + d.cfg.QueueControlName, []any{"LLEN", d.cfg.QueueControlName}},
		{"LLEN " + d.cfg.LogsChannel, []any{"LLEN", d.cfg.LogsChannel}},
		{"XLEN " + d.cfg.AuditStream, []any{"XLEN", d.cfg.AuditStream}},
		{"EVAL", []any{"EVAL", "return 1", 1, probe}},
		{"EVALSHA", []any{"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 1, probe}}, // sha1("return 1")
		{"SCRIPT LOAD", []any{"SCRIPT", "LOAD", "return 1"}},
	}
	var refused []string
	for _, n := range needs {
		err := d.rdb.Do(ctx, n.cmd...).Err()
		switch {
		case isNoPerm(err):
			refused = append(refused, n.what)
		case err == nil, errors.Is(err, redis.Nil), strings.HasPrefix(fmt.Sprint(err), "NOSCRIPT"):
		default:
			d.warn("redis-acl", "", "%s: %v", n.what, err)
		}
	}
	if _, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Exists(ctx, probe); return nil }); err != nil && strings.Contains(err.Error(), "NOPERM") {
		refused = append(refused, "MULTI/EXEC")
	}
	if err := d.rdb.Do(ctx, "EVAL", aclProbeScript, 7, probe+":h", probe+":z", probe+":l", probe+":l2", probe+":s", probe+":set", probe+":x").Err(); err != nil {
		if isNoPerm(err) {
			refused = append(refused, "EVAL")
		} else if msg := err.Error(); strings.HasPrefix(msg, "refused: ") {
			refused = append(refused, strings.Split(strings.TrimPrefix(msg, "refused: "), ",")...)
		} else {
			d.warn("redis-acl", "", "the command probe script: %v", err)
		}
	}
	if len(refused) > 0 {
		d.fail("redis-acl", "grant the executor's user the commands and key pattern of the task-job user in examples/redis/users.acl ("+q+"* keys, &"+d.cfg.LogsChannel+")",
			"the executor's Redis user may not: %s", strings.Join(refused, "; "))
	} else {
		d.ok("redis-acl", "the executor's Redis user may read and write its %s* keys and run its scripts", q)
	}
	// More than it needs: a key and a channel outside its prefix, an
	// administrative command. None of these changes anything.
	outside := fmt.Sprintf("task-job-doctor-outside-%d", os.Getpid())
	var more []string
	if err := d.rdb.Do(ctx, "EXISTS", outside).Err(); err == nil {
		more = append(more, "read keys outside "+q+"*")
	}
	if err := d.rdb.Do(ctx, "PUBLISH", outside, "").Err(); err == nil {
		more = append(more, "publish on channels other than "+d.cfg.LogsChannel)
	}
	policyVal, err := d.rdb.Do(ctx, "CONFIG", "GET", "maxmemory-policy").Result()
	if err == nil {
		more = append(more, "run administrative commands (CONFIG)")
		if m := configValue(policyVal); m != "" && m != "noeviction" {
			d.warn("redis", "CONFIG SET maxmemory-policy noeviction (and in redis.conf), or unset maxmemory",
				"Redis's maxmemory-policy is %s: under memory pressure it may evict queued tasks and results", m)
		}
	}
	if len(more) > 0 {
		d.warn("redis-acl", "give the executor the ACL user of examples/redis/users.acl: its own keys and channel, the commands it uses, nothing else",
			"the executor's Redis user can do more than it needs: %s; whoever takes over the executor can do the same", strings.Join(more, ", "))
	}
}

// aclProbeScript runs, on doctor's own keys (KEYS[1] a hash, [2] a sorted
// set, [3] and [4] lists, [5] a string, [6] a set, [7] a stream), every
// command the executor's client and Lua scripts use, and deletes the keys
// again. It fails with "refused: CMD,CMD" naming the commands the ACL
// refused. Blocking commands do not block inside a script. PUBLISH is left
// out: a message on the logs channel would reach its subscribers.
const aclProbeScript = `
local refused = {}
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err and (string.find(r.err, 'NOPERM', 1, true) or string.find(r.err, "can't run this command", 1, true) or string.find(r.err, "can't access", 1, true)) then
    table.insert(refused, (select(1, ...)))
  end
end
local h, z, l, l2, s, set, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
try('HSET', h, 'f', '1') try('HGET', h, 'f') try('HMGET', h, 'f') try('HGETALL', h) try('HDEL', h, 'f')
try('ZADD', z, 'NX', '1', 'm') try('ZSCORE', z, 'm') try('ZCARD', z) try('ZREM', z, 'm')
try('ZREMRANGEBYRANK', z, '0', '-1') try('ZREMRANGEBYSCORE', z, '-inf', '+inf')
try('RPUSH', l, 'x') try('LPUSH', l, 'x') try('LINDEX', l, '0') try('LRANGE', l, '0', '-1') try('LLEN', l)
try('LREM', l, '0', 'y') try('LTRIM', l, '0', '-1') try('LMOVE', l, l2, 'LEFT', 'RIGHT')
try('BLMOVE', l2, l, 'LEFT', 'RIGHT', '0') try('BLPOP', l2, '0') try('LPOP', l)
try('SET', s, '1', 'PX', '5000') try('SETNX', s, '1') try('GET', s) try('EXISTS', s) try('PEXPIRE', s, '5000')
try('PTTL', s) try('PERSIST', s)
try('SADD', set, 'm') try('SISMEMBER', set, 'm') try('SMEMBERS', set) try('SREM', set, 'm')
try('XADD', x, '*', 'f', 'v') try('XLEN', x) try('XRANGE', x, '-', '+') try('XREVRANGE', x, '+', '-', 'COUNT', '1')
try('DEL', h, z, l, l2, s, set, x)
if #refused > 0 then
  for _, k in ipairs(KEYS) do redis.pcall('PEXPIRE', k, 5000) end
  return redis.error_reply('refused: ' .. table.concat(refused, ','))
end
return 1
`

// configValue reads the value of a one-key CONFIG GET reply (RESP2 list or
// RESP3 map).
func configValue(v any) string {
	switch m := v.(type) {
	case map[any]any:
		for _, val := range m {
			s, _ := val.(string)
			return s
		}
	case []any:
		if len(m) == 2 {
			s, _ := m[1].(string)
			return s
		}
	}
	return ""
}

// checkIdentity looks for another live executor with this executor_id:
// one holding its lock on this host, or its liveness key in Redis.
func (d *doctor) checkIdentity(redisOK bool) {
	id := d.cfg.ExecutorID
	held := false
	lock, err := executor.LockIdentity(stateDir, id)
	if errors.Is(err, fs.ErrPermission) {
		lock, err = executor.LockIdentity(filepath.Join(os.TempDir(), fmt.Sprintf("task-job-%d", os.Getuid())), id)
	}
	switch {
	case errors.Is(err, executor.ErrIdentityHeld):
		held = true
		d.fail("executor_id", "stop that executor first (systemctl stop task-job), or give this config its own executor_id; if it is the service this config belongs to, this FAIL only says a second one would not start",
			"%v", err)
	case err != nil:
		d.warn("executor_id", "", "cannot check the executor id lock on this host: %v", err)
	default:
		lock.Close()
	}
	if !redisOK {
		return
	}
	q := redisqueue.New(d.rdb, redisqueue.Options{Names: redisqueue.Names{Tasks: d.cfg.QueueName}, ExecutorID: id})
	ctx, cancel := context.WithTimeout(context.Background(), d.redisTimeout)
	defer cancel()
	key := q.LivenessKey(id)
	holder, err := d.rdb.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		if !held {
			d.ok("executor_id", "%q is not in use: no executor holds it on this host or in Redis", id)
		}
	case err != nil:
		d.warn("executor_id", "", "cannot read %s: %v", key, err)
	case !held:
		ttl, _ := d.rdb.PTTL(ctx, key).Result()
		d.fail("executor_id", "give each executor its own executor_id (default: the host name); if that executor died, its key expires within executor_ttl",
			"executor_id %q is alive in Redis (%s, held by %s, expires in %s): a second executor with this id refuses to start",
			id, key, holder, ttl.Round(time.Millisecond))
	}
}

// checkAudit checks that the audit file can be written and that its chain
// verifies.
func (d *doctor) checkAudit() {
	path := d.cfg.AuditFile
	if path == "" {
		d.warn("audit", "set audit_file (the package uses /var/lib/task-job/audit/audit.jsonl)",
			"no audit_file: nothing records which tasks ran, who asked, or what was refused")
		return
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		d.fail("audit", "create it: install -d -m 700 "+dir, "the audit file's directory %s does not exist (the executor refuses to start)", dir)
		return
	}
	if f, err := os.CreateTemp(dir, ".task-job-doctor-*"); err != nil {
		d.fail("audit", "make "+dir+" writable by the executor's user (root, as packaged)", "cannot create files in %s: %v", dir, err)
		return
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		d.ok("audit", "%s does not exist yet; the executor creates it (its directory is writable)", path)
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		d.fail("audit", "make it writable by the executor's user", "%s cannot be written: %v", path, err)
		return
	}
	f.Close()
	if holder := auditWriter(path); holder != "" {
		d.fail("audit", "give each executor its own audit_file, or stop the one writing it",
			"%s has a writer already (%s): a second executor with it refuses to start", path, holder)
	}
	rep, err := audit.Verify(path)
	switch {
	case err != nil:
		d.fail("audit", "", "%s cannot be verified: %v", path, err)
	case rep.Break != nil:
		d.fail("audit", "keep the file as evidence and find out who changed it: task-job audit -file="+path+" -verify",
			"%s: the hash chain breaks: %v", path, rep.Break)
	default:
		d.ok("audit", "%s is writable and its chain verifies: %s, seq %d..%d", path, policyPlural(rep.Records, "record"), rep.FirstSeq, rep.LastSeq)
		for _, w := range rep.Warnings {
			d.warn("audit", "", "%s", w)
		}
	}
}

// checkSignatures checks require_signatures against the key directory and
// the key files' permissions.
func (d *doctor) checkSignatures() {
	dir := d.cfg.SigningKeysDir
	if dir == "" {
		if d.cfg.RequireSignatures {
			d.fail("signatures", "set signing_keys_dir to a directory (mode 700) holding one key file (mode 600) per container",
				"require_signatures is true but signing_keys_dir is not set (the executor refuses to start)")
			return
		}
		d.warn("signatures", "for several containers, give each a key: signing_keys_dir, then require_signatures: true (examples/sign.sh signs from sh)",
			"signatures are off: any client that may RPUSH to %s submits as any other", d.cfg.QueueName)
		return
	}
	keys, err := signature.LoadKeys(dir)
	if err != nil {
		d.fail("signatures", "chmod 700 "+dir+" && chmod 600 "+dir+"/*, owned by root",
			"%v (the executor refuses to start)", err)
		return
	}
	if err := signature.CheckRetention(d.cfg.SignatureWindow, d.cfg.StatusRetention); err != nil {
		d.fail("signatures", "lower signature_window or raise status_retention", "%v", err)
		return
	}
	ids := keys.IDs()
	if !d.cfg.RequireSignatures {
		d.warn("signatures", "set require_signatures: true once every client signs",
			"%s loaded from %s (%s), but require_signatures is false: unsigned tasks still run", policyPlural(len(ids), "key"), dir, strings.Join(ids, ", "))
		return
	}
	d.ok("signatures", "required; %s from %s (%s), directory and files readable only by their owner", policyPlural(len(ids), "key"), dir, strings.Join(ids, ", "))
}

// checkServerPort says where the management API would listen, and
// refuses an address beyond loopback without tokens.
func (d *doctor) checkServerPort() {
	if d.cfg.ServerPort == "" {
		d.ok("server_port", "off: no management API listens")
		return
	}
	tokens := d.cfg.ServerTokensFile != ""
	addr, err := api.ListenAddr(d.cfg.ServerPort, tokens)
	if err != nil {
		d.fail("server_port", fmt.Sprintf("use a bare port (%q): 127.0.0.1 only, or set server_tokens_file", portOf(d.cfg.ServerPort)),
			"%q listens beyond loopback, where an API that starts and kills tasks would be reachable without authentication", d.cfg.ServerPort)
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		d.warn("server_port", "pick a free port, or stop what holds it", "%s cannot be bound: %v", addr, err)
		return
	}
	l.Close()
	host, _, _ := net.SplitHostPort(addr)
	loopback := net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()
	switch {
	case !loopback && d.cfg.ServerTLSCert == "":
		d.warn("server_port", "set server_tls_cert and server_tls_key, or put a TLS proxy in front",
			"%s is free; the API would serve plain HTTP beyond loopback, so tokens cross the network in the clear", addr)
	case tokens:
		d.ok("server_port", "%s is free; the management API asks for a token from %s", addr, d.cfg.ServerTokensFile)
	default:
		d.ok("server_port", "%s is free; loopback only, no tokens", addr)
	}
}

func portOf(s string) string {
	if _, port, err := net.SplitHostPort(s); err == nil {
		return port
	}
	return s
}
