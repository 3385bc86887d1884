package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/kafkamirror"
	"github.com/taskjob/task-job/audit/redismirror"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/signature/kafkaguard"
	"github.com/taskjob/task-job/signature/redisguard"
)

// sandboxOptions turns the config's sandbox keys into the Runner's options.
func sandboxOptions(cfg *config.Config, log hclog.Logger) sandbox.Options {
	return sandbox.Options{
		Isolate:  cfg.Isolation != config.IsolationOff,
		Require:  cfg.Isolation == config.IsolationOn,
		InitPath: helperPath(cfg).path,
		// One parent group per executor: a restarted executor removes what
		// its previous run left, and only that.
		CgroupName: "task-job-" + cfg.ExecutorID,
		TmpBytes:   cfg.SandboxTmpSize,
		WorkBytes:  cfg.SandboxWorkSize,
		Chroot:     cfg.SandboxChroot,
		WorkDir:    cfg.WorkDir,
		Defaults: sandbox.Limits{
			MemoryBytes: cfg.SandboxMemory, CPUCores: cfg.SandboxCPU, Pids: int64(cfg.SandboxPids),
			User: cfg.SandboxUser, Network: cfg.SandboxNetwork,
		},
		Logger: log.Named("sandbox"),
	}
}

// helper is the sandbox helper the executor uses, and how it was chosen.
type helper struct {
	path   string   // "" = none found: the executor re-executes itself
	source string   // "sandbox_init", "next to the binary"
	looked []string // where it looked, when none was found
}

// helperPath finds the sandbox's per-task setup helper: sandbox_init if
// set, else next to this binary, under the name that matches the binary's
// own: task-job-init beside task-job as installed, and
// task-job-init-linux-amd64 beside task-job-linux-amd64 as ./build.sh
// leaves them in dist/.
func helperPath(cfg *config.Config) helper {
	if cfg.SandboxInit != "" {
		return helper{path: cfg.SandboxInit, source: "sandbox_init"}
	}
	self, err := os.Executable()
	if err != nil {
		return helper{}
	}
	dir, base := filepath.Split(self)
	names := []string{sandbox.InitName}
	if suffix, ok := strings.CutPrefix(strings.TrimSuffix(base, ".exe"), "task-job-"); ok && suffix != "" {
		names = append([]string{sandbox.InitName + "-" + suffix}, names...)
	}
	h := helper{}
	for _, n := range names {
		candidate := filepath.Join(dir, n)
		if fi, err := os.Stat(candidate); err == nil && fi.Mode().IsRegular() {
			return helper{path: candidate, source: "next to the binary"}
		}
		h.looked = append(h.looked, candidate)
	}
	return h
}

// logHelper says at start-up which helper sets up each task.
func logHelper(cfg *config.Config, runner *sandbox.Runner, log hclog.Logger) {
	if !runner.Isolated() {
		return
	}
	h := helperPath(cfg)
	if h.path == "" {
		log.Warn("no sandbox helper found: every task's setup re-executes task-job itself (about 2.5 ms more per task); "+
			"install task-job-init next to task-job, or set sandbox_init", "looked_for", strings.Join(h.looked, ", "))
		return
	}
	log.Info("sandbox helper: "+h.path, "found", h.source)
}

// loadPolicy reads the policy file, if one is configured.
func loadPolicy(cfg *config.Config, log hclog.Logger) (*policy.Policy, error) {
	if cfg.PolicyFile == "" {
		log.Warn("no policy_file: any script in cmd_dir that passes the jail's checks may run; " +
			"set policy_file to allow only what a rule names")
		return nil, nil
	}
	p, err := policy.Load(cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("policy_file:\n%w", err)
	}
	log.Info("policy loaded: nothing runs unless a rule allows it", "file", cfg.PolicyFile, "rules", p.Rules())
	var writable []string
	for _, ru := range p.RuleList() {
		if ru.Limits.CmdDirWritable {
			writable = append(writable, ru.Name)
		}
	}
	if len(writable) > 0 {
		log.Warn("these rules let their tasks WRITE cmd_dir (cmd_dir_writable = true); other tasks see it read-only", "rules", writable)
	}
	return p, nil
}

// fileDigest names a policy's content in audit records.
func fileDigest(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// reloadOnHUP reloads the policy on SIGHUP until ctx ends. A file that does
// not load keeps the running policy, and the log says why.
func reloadOnHUP(ctx context.Context, cfg *config.Config, setPolicy func(*policy.Policy), al *audit.Log, log hclog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		if cfg.PolicyFile == "" {
			log.Warn("SIGHUP: no policy_file is configured; nothing to reload")
			continue
		}
		p, err := policy.Load(cfg.PolicyFile)
		if err != nil {
			log.Error("SIGHUP: the new policy is not valid; the running policy stays in force", "file", cfg.PolicyFile, "error", err)
			continue
		}
		if al != nil {
			if err := al.Append(audit.Record{Kind: audit.KindExecutor, Event: audit.EventPolicyReloaded,
				PolicyDigest: fileDigest(cfg.PolicyFile)}); err != nil {
				log.Error("SIGHUP: the reload cannot be audited; the running policy stays in force", "error", err)
				continue
			}
		}
		setPolicy(p)
		log.Info("SIGHUP: policy reloaded", "file", cfg.PolicyFile, "rules", p.Rules())
	}
}

// openAudit opens the audit log, if audit_file is set, and its mirror on
// the transport: a Redis stream, or the Kafka audit topic.
func openAudit(cfg *config.Config, rdb redis.UniversalClient, kq *kafkaqueue.Queue, log hclog.Logger) (*audit.Log, func(), error) {
	if cfg.AuditFile == "" {
		log.Warn("no audit_file: nothing records which tasks ran, who asked, or what was refused")
		return nil, func() {}, nil
	}
	al, err := audit.Open(cfg.AuditFile, audit.Options{MaxBytes: cfg.AuditMaxBytes, Executor: cfg.ExecutorID})
	if err != nil {
		return nil, nil, fmt.Errorf("audit_file: %w", err)
	}
	onErr := func(err error) {
		log.Warn("audit mirror: cannot copy the audit log yet; it catches up later", "error", err)
	}
	if kq != nil {
		topic := kq.Topics().Audit
		m, err := kafkamirror.Start(cfg.AuditFile, kq.ClientOptions(), topic, kafkamirror.Options{Executor: cfg.ExecutorID, OnError: onErr})
		if err != nil {
			al.Close()
			return nil, nil, err
		}
		log.Info("audit log open", "file", cfg.AuditFile, "topic", topic, "seq", al.Seq())
		return al, func() { m.Close(); al.Close() }, nil
	}
	m := redismirror.Start(cfg.AuditFile, rdb, cfg.AuditStream, redismirror.Options{
		Executor: cfg.ExecutorID,
		OnError:  onErr,
	})
	log.Info("audit log open", "file", cfg.AuditFile, "stream", cfg.AuditStream, "seq", al.Seq())
	return al, func() { m.Close(); al.Close() }, nil
}

// newVerifier loads the signing keys, if a key directory is configured.
// Replays are remembered on the transport (Redis keys, or the Kafka
// signatures topic) so that every executor sharing it refuses a task
// another one already accepted.
func newVerifier(cfg *config.Config, rdb redis.UniversalClient, kq *kafkaqueue.Queue, log hclog.Logger) (*signature.Verifier, func(), error) {
	if cfg.SigningKeysDir == "" {
		if cfg.RequireSignatures {
			return nil, nil, fmt.Errorf("require_signatures is true but signing_keys_dir is not set")
		}
		return nil, func() {}, nil
	}
	keys, err := signature.LoadKeys(cfg.SigningKeysDir)
	if err != nil {
		return nil, nil, fmt.Errorf("signing_keys_dir: %w", err)
	}
	if err := signature.CheckRetention(cfg.SignatureWindow, cfg.StatusRetention); err != nil {
		return nil, nil, err
	}
	var replay signature.ReplayGuard
	closeGuard := func() {}
	switch {
	case rdb != nil:
		replay = redisguard.New(rdb, cfg.QueueName)
	case kq != nil:
		g, err := kafkaguard.New(kq.ClientOptions(), kq.Topics().Signatures)
		if err != nil {
			return nil, nil, err
		}
		replay, closeGuard = g, g.Close
	}
	v := signature.NewVerifier(keys, signature.Options{Window: cfg.SignatureWindow, Replay: replay})
	if cfg.RequireSignatures {
		log.Info("signed submissions required", "keys", keys.IDs(), "window", cfg.SignatureWindow)
	} else {
		log.Warn("signing keys loaded but require_signatures is false: unsigned tasks still run (signed ones are checked)", "keys", keys.IDs())
	}
	return v, closeGuard, nil
}
