package config

import (
	"testing"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/queue/redisqueue"
)

// TestDefaultsMatchLibraries pins the defaults config repeats (config.go
// says why) to the libraries that own them.
func TestDefaultsMatchLibraries(t *testing.T) {
	for _, d := range []struct {
		name         string
		config, libr any
	}{
		{"max_task_bytes", int64(DefaultMaxTaskBytes), int64(executor.DefaultMaxTaskBytes)},
		{"max_output_bytes", int64(DefaultMaxOutputBytes), int64(executor.DefaultMaxOutputBytes)},
		{"max_output_messages", DefaultMaxOutputMessages, executor.DefaultMaxOutputMessages},
		{"max_output_rate", DefaultMaxOutputRate, executor.DefaultMaxOutputRate},
		{"max_line_bytes", DefaultMaxLineBytes, executor.DefaultMaxLineBytes},
		{"kill_grace", DefaultKillGrace, executor.DefaultKillGrace},
		{"shutdown_grace", DefaultShutdownGrace, executor.DefaultShutdownGrace},
		{"executor_ttl", DefaultExecutorTTL, executor.DefaultTTL},
		{"spool_max_bytes", int64(DefaultSpoolMaxBytes), int64(executor.DefaultSpoolMaxBytes)},
		{"cmd_dir_min_free", int64(DefaultCmdDirMinFree), int64(executor.DefaultCmdDirMinFree)},
		{"logs_max_len", DefaultLogsMaxLen, redisqueue.DefaultLogsMaxLen},
		{"kafka_partitions", DefaultKafkaPartitions, kafkaqueue.DefaultPartitions},
	} {
		if d.config != d.libr {
			t.Errorf("%s: config's default %v, the library's %v", d.name, d.config, d.libr)
		}
	}
}
