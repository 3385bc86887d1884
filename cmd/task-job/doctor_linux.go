package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// cgroupRoot is where the host mounts its cgroup tree.
var cgroupRoot = "/sys/fs/cgroup"

// unitDirs are where systemd looks for the task-job unit, most local
// first; drop-ins in <dir>/task-job.service.d/*.conf override it.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// checkHost checks what the sandbox needs from this host: root, cgroups,
// its helper, namespaces, seccomp, Landlock, and then runs one trial task.
func (d *doctor) checkHost() {
	if d.cfg.Isolation == config.IsolationOff {
		d.warn("isolation", "set \"isolation\": \"on\" (refuse to start without the sandbox) or \"auto\"",
			"UNSAFE: isolation is off: tasks run as the executor's user, with no cgroup, namespaces or filter, and can outlive a kill")
		return
	}
	if os.Geteuid() != 0 {
		fix := "run the executor as root (the packaged unit does): the sandbox creates namespaces, cgroups and switches users"
		// Cgroups, the helper and the filter are the sandbox's, which a
		// process that is not root does not build: they are not checked.
		if d.cfg.Isolation == config.IsolationOn {
			d.fail("isolation", fix, "not root, and isolation is \"on\": the executor would refuse to start (run doctor as root to check the sandbox)")
		} else {
			d.warn("isolation", fix, "not root: tasks would run without the sandbox, in a process group only, as uid %d (run doctor as root to check the sandbox)", os.Geteuid())
		}
		return
	}
	d.ok("isolation", "root, isolation %q: the executor can build the sandbox", d.cfg.Isolation)
	v2Foreign := d.checkCgroups()
	helperOK := d.checkHelper()
	nsOK := d.checkNamespaces()
	d.checkSeccomp()
	if abi := nsinit.LandlockABI(); abi > 0 {
		d.ok("landlock", "ABI %d: a task may change files only beneath its own dirs, a second wall behind its mount namespace", abi)
	} else {
		d.warn("landlock", "boot a kernel with Landlock enabled (CONFIG_SECURITY_LANDLOCK, \"landlock\" in lsm=)",
			"not in this kernel: a task's writes are kept in its own dirs by its mount namespace alone")
	}
	switch {
	case !helperOK || !nsOK:
		// Said above; a trial would fail the same way.
	case v2Foreign:
		d.warn("sandbox", "run doctor where the executor runs, e.g. systemd-run -p Delegate=yes --wait --pty task-job doctor",
			"no trial task: on cgroup v2 it would move this shell's process into a cgroup of its own; the executor does that in its delegated service cgroup")
	default:
		d.trialTask()
	}
}

// v1Controllers lists the mounted cgroup v1 controllers, from mountinfo.
func v1Controllers() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 || sf[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(sf[2], ",") {
			if _, seen := out[opt]; !seen {
				out[opt] = pf[4]
			}
		}
	}
	return out
}

// checkCgroups says how this host offers cgroups and, on v2, whether the
// executor gets a subtree of its own. It reports true when doctor itself
// sits in a v2 cgroup it must not reorganise (a login shell's scope).
func (d *doctor) checkCgroups() (v2Foreign bool) {
	parent := "task-job-" + d.cfg.ExecutorID
	switch mode := cgroups.Mode(); mode {
	case cgroups.Unavailable:
		d.warn("cgroups", "mount the cgroup filesystem on "+cgroupRoot+" (systemd does at boot)",
			"no cgroup filesystem at %s: tasks get no memory, CPU or pids limits", cgroupRoot)
	case cgroups.Legacy, cgroups.Hybrid:
		kind := "v1 (legacy host)"
		if mode == cgroups.Hybrid {
			kind = "v1 (hybrid host: v1 controllers, the v2 tree holds none)"
		}
		have := v1Controllers()
		var missing []string
		for _, c := range []string{"memory", "cpu", "pids", "freezer"} {
			if _, ok := have[c]; !ok {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			d.warn("cgroups", "mount the missing v1 controllers, or boot with the unified hierarchy (systemd.unified_cgroup_hierarchy=1)",
				"cgroup %s without %s: those limits are not enforced", kind, strings.Join(missing, ", "))
			return false
		}
		d.ok("cgroups", "cgroup %s: memory, cpu, pids and freezer mounted; tasks' groups go under /%s in each", kind, parent)
	case cgroups.Unified:
		return d.checkCgroupV2(cgroupRoot, ownCgroup())
	}
	return false
}

// ownCgroup is this process's cgroup v2 path ("/" at the root).
func ownCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// checkCgroupV2 checks a pure v2 host, whose tree is at root, from the
// cgroup own that doctor runs in.
func (d *doctor) checkCgroupV2(root, own string) (v2Foreign bool) {
	need := []string{"memory", "cpu", "pids"}
	missingIn := func(dir string) []string {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		have := strings.Fields(string(b))
		var missing []string
		for _, c := range need {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		return missing
	}
	if m := missingIn(root); len(m) > 0 {
		d.warn("cgroups", "enable the controllers at the root (a kernel or boot setting: cgroup_enable=...)",
			"cgroup v2 without %s at %s: those limits are not enforced", strings.Join(m, ", "), root)
		return false
	}
	switch {
	case own == "/":
		d.ok("cgroups", "cgroup v2 at the root: the executor enables memory, cpu, pids for its groups under /task-job-%s", d.cfg.ExecutorID)
		return false
	case strings.HasSuffix(own, "/task-job.service") || strings.HasSuffix(own, "/task-job.service/executor"):
		base := strings.TrimSuffix(own, "/executor")
		if m := missingIn(filepath.Join(root, base)); len(m) > 0 {
			d.warn("cgroups", "set Delegate=yes in the unit (systemctl edit task-job)",
				"cgroup v2, service cgroup %s without %s delegated: those limits are not enforced", base, strings.Join(m, ", "))
			return false
		}
		d.ok("cgroups", "cgroup v2, delegated: the service cgroup %s has memory, cpu, pids; the executor moves into %s/executor and puts tasks under %s/tasks", base, base, base)
		return false
	}
	delegate, unit := unitDelegates()
	switch {
	case unit == "":
		d.warn("cgroups", "install the packaged unit, or start the executor in a cgroup of its own with memory, cpu, pids delegated",
			"cgroup v2, doctor runs in %s and no task-job unit is installed: started from here, the executor could not enable controllers beside other processes", own)
	case !delegate:
		d.warn("cgroups", "set Delegate=yes in the unit: systemctl edit task-job",
			"cgroup v2: %s does not set Delegate=yes, so the executor cannot make a group per task: no memory, CPU or pids limits", unit)
	default:
		d.ok("cgroups", "cgroup v2: %s sets Delegate=yes, so the executor owns its service cgroup's subtree (doctor runs in %s)", unit, path.Clean(own))
	}
	return true
}

// unitDelegates reads the task-job unit systemd would use and its drop-ins
// for Delegate=; the last setting wins.
func unitDelegates() (delegate bool, unit string) {
	for _, dir := range unitDirs {
		if p := filepath.Join(dir, "task-job.service"); fileExists(p) {
			unit = p
			break
		}
	}
	if unit == "" {
		return false, ""
	}
	// Drop-ins apply sorted by file name, whatever their directory; a
	// file in a more local directory masks one of the same name.
	dropins := map[string]string{}
	for _, dir := range unitDirs {
		m, _ := filepath.Glob(filepath.Join(dir, "task-job.service.d", "*.conf"))
		for _, p := range m {
			if _, seen := dropins[filepath.Base(p)]; !seen {
				dropins[filepath.Base(p)] = p
			}
		}
	}
	files := []string{unit}
	for _, name := range slices.Sorted(maps.Keys(dropins)) {
		files = append(files, dropins[name])
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Delegate="); ok {
				switch strings.ToLower(strings.TrimSpace(v)) {
				case "yes", "true", "on", "1":
					delegate = true
				case "no", "false", "off", "0", "":
					delegate = false
				default: // a list of controllers
					delegate = true
				}
			}
		}
	}
	return delegate, unit
}

// checkHelper finds task-job-init as the executor would and checks that
// only root could have written it: it runs as root in every task.
func (d *doctor) checkHelper() bool {
	h := helperPath(d.cfg)
	if h.path == "" {
		d.warn("helper", "install task-job-init next to task-job (the package puts both in /usr/bin), or set sandbox_init",
			"no sandbox helper found (looked for %s): each task's setup re-executes task-job itself, about 2.5 ms more per task", strings.Join(h.looked, ", "))
		return true
	}
	fi, err := os.Stat(h.path)
	if err != nil {
		d.fail("helper", "fix sandbox_init, or remove it to use the task-job-init next to task-job",
			"the sandbox helper %s (%s): %v", h.path, h.source, err)
		return false
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 || !fi.Mode().IsRegular() {
		d.fail("helper", "chown root: "+h.path+" && chmod 755 "+h.path,
			"the sandbox helper %s must be a regular file owned by root and writable by no one else (it is %v, uid %d): it runs as root in every task", h.path, fi.Mode(), st.Uid)
		return false
	}
	d.ok("helper", "sandbox helper %s (%s), owned by root, writable by no one else", h.path, h.source)
	return true
}

// checkNamespaces starts /bin/true in the namespaces every task gets.
func (d *doctor) checkNamespaces() bool {
	prog := "/bin/true"
	if _, err := os.Stat(prog); err != nil {
		prog = "/usr/bin/true"
	}
	cmd := exec.Command(prog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET}
	if err := cmd.Run(); err != nil {
		d.fail("namespaces", "run the executor as root on the host (not in an unprivileged container), with CAP_SYS_ADMIN; check that the unit's RestrictNamespaces lists pid mnt ipc uts net",
			"cannot create pid, mount, ipc, uts and network namespaces: %v", err)
		return false
	}
	d.ok("namespaces", "pid, mount, ipc, uts and network namespaces can be created")
	return true
}

// checkSeccomp checks that the kernel filters system calls and that this
// architecture has the sandbox's filter.
func (d *doctor) checkSeccomp() {
	status, _ := os.ReadFile("/proc/self/status")
	actions, _ := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	switch {
	case !bytes.Contains(status, []byte("\nSeccomp:")):
		d.fail("seccomp", "use a kernel built with CONFIG_SECCOMP_FILTER (every distribution kernel is)",
			"this kernel has no seccomp: tasks could not be given the filter")
	case len(actions) > 0 && !bytes.Contains(actions, []byte("errno")):
		d.fail("seccomp", "use a kernel with seccomp filters (CONFIG_SECCOMP_FILTER)", "this kernel's seccomp lacks filter actions (%s)", strings.TrimSpace(string(actions)))
	case !nsinit.SeccompFilter:
		d.warn("seccomp", "run on amd64 or arm64 for the filter",
			"no seccomp filter for %s: tasks run without it (namespaces, cgroup and user switch still apply)", runtime.GOARCH)
	default:
		d.ok("seccomp", "the kernel filters system calls; the sandbox's %s filter applies to every task", runtime.GOARCH)
	}
}

// trialTask runs /bin/true through the whole sandbox, as the executor does
// at start-up, with a cgroup parent, root and work directory of doctor's
// own, so a running executor is not touched.
func (d *doctor) trialTask() {
	tmp, err := os.MkdirTemp("", "task-job-doctor-")
	if err != nil {
		d.warn("sandbox", "", "no trial task: %v", err)
		return
	}
	defer os.RemoveAll(tmp)
	var warnings bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &warnings, Level: hclog.Warn, DisableTime: true})
	opts := sandboxOptions(d.cfg, log)
	opts.Require = true
	opts.CgroupName = fmt.Sprintf("task-job-doctor-%d", os.Getpid())
	opts.RootDir = filepath.Join(tmp, "root")
	opts.WorkDir = filepath.Join(tmp, "work")
	r, err := sandbox.New(opts)
	if err != nil {
		fix := "see the reason; the sandbox needs root with CAP_SYS_ADMIN, mounts and pivot_root on this host"
		if errors.Is(err, os.ErrPermission) {
			fix = "run the executor as root on the host, not in an unprivileged container"
		}
		if d.cfg.Isolation == config.IsolationOn {
			d.fail("sandbox", fix, "a trial task failed, so the executor would refuse to start (isolation \"on\"): %v", err)
		} else {
			d.fail("sandbox", fix, "a trial task failed, so tasks would run in a process group only (isolation \"auto\"): %v", err)
		}
		return
	}
	desc := r.Describe()
	r.Close()
	if strings.Contains(desc, "NOT ENFORCED") {
		d.warn("sandbox", "see the cgroups line above", "a trial task ran in the sandbox, but memory, CPU and pids limits are NOT ENFORCED")
	} else {
		d.ok("sandbox", "a trial task ran in the full sandbox: its own cgroup, namespaces, read-only system view, seccomp filter, as %s", d.cfg.SandboxUser)
	}
	for _, line := range strings.Split(strings.TrimSpace(warnings.String()), "\n") {
		if line != "" {
			d.warn("sandbox", "", "%s", line)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// auditWriter says who holds the audit file's one-writer lock, "" if no one.
func auditWriter(path string) string {
	lock := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lock")
	f, err := os.OpenFile(lock, os.O_RDWR, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if b, _ := os.ReadFile(lock); len(bytes.TrimSpace(b)) > 0 {
			return strings.TrimSpace(string(b)) + ", lock " + lock
		}
		return "lock " + lock
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return ""
}
