package config

import (
	"os"
	"path/filepath"
	"runtime"
)

// DefaultStateDir is state_dir's default: /var/lib/task-job for root (as
// a system service keeps its state), the user's state directory
// ($XDG_STATE_HOME, else ~/.local/state) otherwise, %ProgramData% on
// Windows. Never a shared temporary directory, where another user could
// choose the path first. "" when none can be found (validation then asks
// for state_dir).
func DefaultStateDir() string {
	if runtime.GOOS == "windows" {
		if d := os.Getenv("ProgramData"); d != "" {
			return filepath.Join(d, "task-job")
		}
		return ""
	}
	if os.Geteuid() == 0 {
		return "/var/lib/task-job"
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "task-job")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "task-job")
	}
	return ""
}
