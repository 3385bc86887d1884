package config

import (
	"testing"

	"github.com/taskjob/task-job/sandbox"
)

// The sandbox's defaults are Linux-only constants.
func TestDefaultsMatchSandbox(t *testing.T) {
	if DefaultSandboxUser != sandbox.DefaultUser || DefaultSandboxMemory != sandbox.DefaultMemoryBytes ||
		DefaultSandboxCPU != sandbox.DefaultCPUCores || DefaultSandboxPids != sandbox.DefaultPids ||
		DefaultSandboxTmpSize != sandbox.DefaultTmpBytes || DefaultSandboxWorkSize != sandbox.DefaultWorkBytes {
		t.Errorf("the sandbox_* defaults differ from package sandbox's")
	}
}
