package cgroup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Mode is how this host offers cgroups to the Manager.
type Mode int

const (
	// Unavailable: tasks run without cgroups; Describe says why.
	Unavailable Mode = iota
	// V1: cgroup v1 controllers (a legacy or a hybrid host).
	V1
	// V2: the unified hierarchy with its controllers.
	V2
)

func (m Mode) String() string {
	switch m {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return "unavailable"
}

// Limits for one task. A zero field means no limit.
type Limits struct {
	MemoryBytes int64   // memory (and memory+swap where the kernel accounts swap)
	CPUCores    float64 // CPU bandwidth, in cores: 0.5 is half of one core
	Pids        int64   // processes and threads alive at once
}

// Usage of one task's group.
type Usage struct {
	CPU time.Duration // user+system CPU time of every process that was in the group
	// MemoryPeak is the highest memory charged to the group, in bytes. It is
	// 0 on cgroup v2 kernels before 5.19 (no memory.peak): the caller then
	// falls back to rusage.
	MemoryPeak int64
	OOMKills   uint64 // processes the kernel OOM killer killed in the group
}

// Options configures a Manager.
type Options struct {
	// Name is the parent group's name; default "task-job".
	Name string
	// Logger receives warnings (groups that could not be removed) and debug
	// records. It may be nil.
	Logger hclog.Logger
}

// ErrUnavailable is returned by New when the Manager runs without cgroups.
var ErrUnavailable = errors.New("cgroups are unavailable")

const defaultName = "task-job"

// minQuotaUS is the smallest CFS quota the kernel accepts (1 ms).
const minQuotaUS = 1000

// periodUS is the CFS period used for CPU limits (the kernel's default).
const periodUS = 100000

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("cgroup: parent group name %q is not a single directory name", name)
	}
	return nil
}

func checkLimits(l Limits) error {
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("cgroup: memory limit %d is negative", l.MemoryBytes)
	case l.Pids < 0:
		return fmt.Errorf("cgroup: pids limit %d is negative", l.Pids)
	case l.CPUCores < 0 || math.IsNaN(l.CPUCores) || math.IsInf(l.CPUCores, 0):
		return fmt.Errorf("cgroup: CPU limit %v cores is not a non-negative number", l.CPUCores)
	}
	return nil
}

// quotaUS turns cores into a CFS quota per periodUS, at least the kernel's
// minimum so that a tiny limit slows the task instead of failing New.
func quotaUS(cores float64) int64 {
	q := int64(math.Round(cores * periodUS))
	if q < minQuotaUS {
		q = minQuotaUS
	}
	return q
}

// maxEscaped bounds a group's name well under NAME_MAX (255) so that the
// "-<n>" suffix always fits.
const maxEscaped = 180

// safeName turns any task id into a directory name: bytes outside
// [A-Za-z0-9_.-] become %XX, and so does a leading '.', so the result can be
// neither "." nor "..", holds no '/', and never starts with '~' (reserved for
// spares and probes). Ids too long are cut and given a hash of the whole id,
// which keeps different long ids apart.
func safeName(id string) string {
	if id == "" {
		return "task"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if i == 0 && c == '.' {
			ok = false
		}
		if ok {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	s := b.String()
	if len(s) > maxEscaped {
		sum := sha256.Sum256([]byte(id))
		cut := s[:maxEscaped-17]
		// Do not leave half of a %XX escape at the cut.
		if i := strings.LastIndexByte(cut, '%'); i >= len(cut)-2 {
			cut = cut[:i]
		}
		s = cut + "+" + hex.EncodeToString(sum[:8])
	}
	return s
}
