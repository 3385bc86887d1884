package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// v2Root is where a pure v2 host mounts the unified hierarchy.
const v2Root = "/sys/fs/cgroup"

// internalSeq numbers spares and probes, unique in this process even with
// several Managers over one parent.
var internalSeq atomic.Uint64

// spareCount is how many empty groups the Manager keeps ready on v1.
const spareCount = 4

// closeWait bounds how long Close and CleanupStale wait for a killed
// group to empty.
const closeWait = 5 * time.Second

// hierarchy is one cgroup hierarchy the Manager makes groups in: one per
// v1 mount used (cpu and cpuacct may share one), the unified one on v2.
type hierarchy struct {
	parent string // the parent group's directory
}

// Manager makes one group per task under a parent group. It is safe for
// concurrent use.
type Manager struct {
	mode     Mode
	describe string
	why      string // why cgroups are unavailable
	log      hclog.Logger
	name     string

	hier                                  []hierarchy
	memIdx, cpuIdx, acctIdx, pidsIdx, frz int // index into hier per controller; -1 if not used
	relParent                             string
	memsw                                 bool     // v1 memory.memsw.limit_in_bytes exists
	swapMax                               bool     // v2 memory.swap.max exists
	cgKill                                bool     // v2 cgroup.kill exists (Linux 5.14+)
	need                                  []string // v2: controllers enabled for the parent's children

	seq     atomic.Uint64
	lastNew atomic.Int64 // unix nanoseconds of the last New, for waitQuiet

	mu       sync.Mutex
	live     map[string]bool // names of groups and spares this Manager owns
	closed   bool
	released atomic.Bool // Close gave up this Manager's claim on the parent

	spares  chan string // nil on v2: cgroupfs v2 refuses rename(2)
	removeq chan string
	done    chan struct{}
	bg      sync.WaitGroup
	pending sync.WaitGroup
}

// hostSetup is what NewManager found on this host; tests build their own.
type hostSetup struct {
	mode       Mode
	hybrid     bool
	unifiedDir string   // v2 mount point
	need       []string // v2 controllers required
	why        string   // when mode is Unavailable
	noPool     bool     // no spares and no background removal (to measure)
}

func detect() hostSetup {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return hostSetup{mode: V2, unifiedDir: v2Root, need: []string{"memory", "cpu", "pids"}}
	case cgroups.Hybrid:
		return hostSetup{mode: V1, hybrid: true}
	case cgroups.Legacy:
		return hostSetup{mode: V1}
	}
	return hostSetup{why: "no cgroup filesystem is mounted at " + v2Root}
}

// NewManager finds how this host offers cgroups and checks that groups can
// be made. Cgroups being unavailable is not an error: Mode is then
// Unavailable, Describe says why, and New fails with ErrUnavailable.
func NewManager(opts Options) (*Manager, error) {
	return newManager(opts, detect())
}

func newManager(opts Options, hs hostSetup) (*Manager, error) {
	name := opts.Name
	if name == "" {
		name = defaultName
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{
		log: log.Named("cgroup"), name: name, live: map[string]bool{},
		memIdx: -1, cpuIdx: -1, acctIdx: -1, pidsIdx: -1, frz: -1,
	}
	why := hs.why
	switch hs.mode {
	case V1:
		why = m.setupV1(hs.hybrid)
	case V2:
		why = m.setupV2(hs.unifiedDir, hs.need)
	}
	if why != "" {
		m.mode, m.why, m.hier = Unavailable, why, nil
		m.describe = "cgroups unavailable: " + why + "; tasks have no memory/cpu/pids limits"
		m.log.Warn("cgroups unavailable; tasks have no memory/cpu/pids limits", "reason", why)
		return m, nil
	}
	m.mode = hs.mode
	m.claim()
	if hs.noPool {
		return m, nil
	}
	m.done = make(chan struct{})
	m.removeq = make(chan string, 1024)
	m.bg.Add(1)
	go m.remover()
	if m.mode == V1 {
		m.spares = make(chan string, spareCount)
		m.bg.Add(1)
		go m.filler()
	}
	return m, nil
}

// Mode reports how tasks are put in cgroups on this host.
func (m *Manager) Mode() Mode { return m.mode }

// Describe returns one human line for the start-up log.
func (m *Manager) Describe() string { return m.describe }

type mountV1 struct{ point string }

// v1Mounts maps each v1 controller to its mount, from /proc/self/mountinfo
// (not assumed to be /sys/fs/cgroup/<name>: cpu and cpuacct are often one
// mount, "cpu,cpuacct").
func v1Mounts() (map[string]mountV1, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]mountV1{}
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
		mnt := mountV1{point: unescapeMount(pf[4])}
		for _, opt := range strings.Split(sf[2], ",") {
			if _, seen := out[opt]; !seen {
				out[opt] = mnt
			}
		}
	}
	return out, s.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (m *Manager) setupV1(hybrid bool) string {
	mounts, err := v1Mounts()
	if err != nil {
		return fmt.Sprintf("reading /proc/self/mountinfo failed: %v", err)
	}
	var missing []string
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids"} {
		if _, ok := mounts[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return "cgroup v1 controllers not mounted: " + strings.Join(missing, ", ")
	}
	byMount := map[string]int{}
	role := func(c string) int {
		mnt, ok := mounts[c]
		if !ok {
			return -1
		}
		if i, ok := byMount[mnt.point]; ok {
			return i
		}
		m.hier = append(m.hier, hierarchy{parent: filepath.Join(mnt.point, m.name)})
		byMount[mnt.point] = len(m.hier) - 1
		return len(m.hier) - 1
	}
	m.memIdx, m.cpuIdx, m.acctIdx, m.pidsIdx, m.frz = role("memory"), role("cpu"), role("cpuacct"), role("pids"), role("freezer")
	for _, h := range m.hier {
		if why := mkdirParent(h.parent); why != "" {
			return why
		}
	}
	if why := m.probe(); why != "" {
		return why
	}
	m.memsw = exists(filepath.Join(m.hier[m.memIdx].parent, "memory.memsw.limit_in_bytes"))
	m.relParent = "/" + m.name
	host, kill := "legacy", "freezer"
	if hybrid {
		host = "hybrid"
	}
	if m.frz < 0 {
		kill = "SIGKILL of every pid in cgroup.procs until empty (no freezer)"
	}
	m.describe = fmt.Sprintf("cgroup v1 (%s host): memory, cpu, pids limits under %s; kill by %s", host, m.relParent, kill)
	return ""
}

func (m *Manager) setupV2(root string, need []string) string {
	_, own, err := cgroups.ParseCgroupFileUnified("/proc/self/cgroup")
	if err != nil {
		return fmt.Sprintf("reading /proc/self/cgroup failed: %v", err)
	}
	if own == "" {
		return "/proc/self/cgroup has no cgroup v2 entry (0::)"
	}
	ownDir := filepath.Join(root, own)
	b, err := readFile(filepath.Join(ownDir, "cgroup.controllers"))
	if err != nil {
		return fmt.Sprintf("reading our cgroup's controllers failed: %v", err)
	}
	avail := strings.Fields(string(b))
	var missing []string
	for _, c := range need {
		if !slices.Contains(avail, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("controllers %s are not available in %s (not delegated to task-job's cgroup)",
			strings.Join(missing, ", "), filepath.Join(ownDir, "cgroup.controllers"))
	}

	rel := ""
	if own == "/" {
		err := enable(ownDir, need)
		switch {
		case err == nil:
			rel = "/" + m.name
		case !errors.Is(err, unix.EBUSY):
			return refused(err)
		}
		// EBUSY: a cgroup namespace's root that holds processes; treated
		// like a delegated cgroup below.
	}
	if rel == "" {
		// Delegated: we may enable controllers only for children of our own
		// cgroup, and only once it holds no process, so the executor moves
		// into a leaf of its own. After that move /proc/self/cgroup already
		// names the leaf (a second Manager in this process).
		base := own
		if path.Base(own) == "executor" {
			base = path.Dir(own)
		}
		baseDir := filepath.Join(root, base)
		leaf := filepath.Join(baseDir, "executor")
		if err := unix.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return refused(fmt.Errorf("create %s: %w", leaf, err))
		}
		if own != path.Join(base, "executor") {
			if err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
				return refused(fmt.Errorf("moving the executor into its own leaf cgroup: %w", err))
			}
		}
		if err := enable(baseDir, need); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Sprintf("the cgroup %s holds processes besides task-job, so it cannot enable controllers for task groups; "+
					"run task-job in a cgroup of its own (systemd: Delegate=yes)", baseDir)
			}
			return refused(err)
		}
		rel = path.Join(base, "tasks")
	}
	parent := filepath.Join(root, rel)
	if why := mkdirParent(parent); why != "" {
		return why
	}
	if err := enable(parent, need); err != nil {
		return refused(err)
	}
	m.hier = []hierarchy{{parent: parent}}
	m.need = need
	m.memIdx, m.cpuIdx, m.acctIdx, m.pidsIdx = 0, 0, 0, 0
	m.relParent = rel
	if why := m.probe(); why != "" {
		return why
	}
	m.cgKill = exists(filepath.Join(parent, "cgroup.kill"))
	m.swapMax = exists(filepath.Join(parent, "memory.swap.max"))
	limits := "no limits (no controllers)"
	if len(need) > 0 {
		limits = strings.Join(need, ", ") + " limits"
	}
	kill := "cgroup.kill"
	if !m.cgKill {
		kill = "cgroup.freeze and SIGKILL (no cgroup.kill before Linux 5.14)"
	}
	m.describe = fmt.Sprintf("cgroup v2: %s under %s; kill by %s", limits, rel, kill)
	return ""
}

// enable makes controllers available to dir's children, writing only the
// ones missing from its cgroup.subtree_control.
func enable(dir string, need []string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	b, err := readFile(file)
	if err != nil {
		return err
	}
	have := strings.Fields(string(b))
	var add []string
	for _, c := range need {
		if !slices.Contains(have, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return writeFile(file, strings.Join(add, " "))
}

func mkdirParent(dir string) string {
	if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return refused(fmt.Errorf("create %s: %w", dir, err))
	}
	return ""
}

// refused explains why making groups failed, for Describe.
func refused(err error) string {
	switch {
	case errors.Is(err, unix.EROFS):
		return fmt.Sprintf("the cgroup filesystem is read-only (a container without a writable cgroupfs?): %v", err)
	case (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) && os.Geteuid() != 0:
		return fmt.Sprintf("not root: %v", err)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return fmt.Sprintf("refused (a container without CAP_SYS_ADMIN, or a cgroup not delegated to us?): %v", err)
	}
	return err.Error()
}

// probe proves that groups can be made and removed under the parent.
func (m *Manager) probe() string {
	name := fmt.Sprintf("~probe-%d-%d", os.Getpid(), internalSeq.Add(1))
	if err := m.mkdirAll(name); err != nil {
		return refused(err)
	}
	for _, h := range m.hier {
		if err := removeTree(filepath.Join(h.parent, name)); err != nil {
			return refused(err)
		}
	}
	return ""
}

// mkdirAll makes the group name in every hierarchy, or none. A parent
// group found missing (removed by another executor's Close, or by hand) is
// made again once.
func (m *Manager) mkdirAll(name string) error {
	m.own(name)
	remade := false
	for i := 0; i < len(m.hier); i++ {
		dir := filepath.Join(m.hier[i].parent, name)
		err := unix.Mkdir(dir, 0o755)
		if errors.Is(err, unix.ENOENT) && !remade {
			remade = true
			if err = m.remakeParent(); err == nil {
				i--
				continue
			}
		}
		if err != nil {
			for _, done := range m.hier[:i] {
				_ = unix.Rmdir(filepath.Join(done.parent, name))
			}
			m.disown(name)
			return fmt.Errorf("cgroup: create %s: %w", dir, err)
		}
	}
	return nil
}

// remakeParent makes the parent group again in every hierarchy, with the
// controllers enabled for its children on v2.
func (m *Manager) remakeParent() error {
	for _, h := range m.hier {
		if err := unix.Mkdir(h.parent, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("cgroup: create the parent group %s again: %w", h.parent, err)
		}
		if m.mode == V2 {
			if err := enable(h.parent, m.need); err != nil {
				return fmt.Errorf("cgroup: enable controllers in %s again: %w", h.parent, err)
			}
		}
	}
	m.log.Debug("made the parent group again", "group", m.relParent)
	return nil
}

// claims counts, per parent group, the open Managers of this process over
// it: the last one to close removes the parent. (Two executors over one
// parent are not supported: each one's CleanupStale kills the other's
// tasks.)
var claims = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func (m *Manager) parentKey() string {
	var ps []string
	for _, h := range m.hier {
		ps = append(ps, h.parent)
	}
	return strings.Join(ps, "\x00")
}

func (m *Manager) claim() {
	claims.Lock()
	claims.n[m.parentKey()]++
	claims.Unlock()
}

// release gives up the claim on the parent and removes the parent if no
// other Manager of this process holds it and it is empty.
func (m *Manager) release() {
	if m.released.Swap(true) {
		return
	}
	claims.Lock()
	defer claims.Unlock()
	key := m.parentKey()
	if claims.n[key]--; claims.n[key] <= 0 {
		delete(claims.n, key)
	}
	m.removeParentLocked()
}

// removeParent removes the parent group in every hierarchy when this
// Manager is closed, no other Manager of this process uses it and no group
// is left in it: a group still open keeps it, and removing that group
// later calls this again. On the delegated v2 path the parent is
// <own>/tasks; the executor's own leaf is left alone.
func (m *Manager) removeParent() {
	if !m.released.Load() {
		return
	}
	claims.Lock()
	defer claims.Unlock()
	m.removeParentLocked()
}

func (m *Manager) removeParentLocked() {
	if claims.n[m.parentKey()] > 0 {
		return
	}
	for _, h := range m.hier {
		// rmdir, not removeTree: a group left in the parent (still open, or
		// one CleanupStale could not empty) keeps it, and EBUSY says so.
		err := unix.Rmdir(h.parent)
		switch {
		case err == nil:
			m.log.Debug("removed the parent group", "dir", h.parent)
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
		default:
			m.log.Warn("removing the parent group failed", "dir", h.parent, "error", err)
		}
	}
}

// renameAll renames a spare to a task's group name in every hierarchy, or
// in none.
func (m *Manager) renameAll(from, to string) error {
	m.own(to)
	for i, h := range m.hier {
		if err := unix.Rename(filepath.Join(h.parent, from), filepath.Join(h.parent, to)); err != nil {
			for _, done := range m.hier[:i] {
				_ = unix.Rename(filepath.Join(done.parent, to), filepath.Join(done.parent, from))
			}
			m.disown(to)
			return fmt.Errorf("cgroup: rename %s to %s in %s: %w", from, to, h.parent, err)
		}
	}
	m.disown(from)
	return nil
}

// own and disown keep the set of names CleanupStale must leave alone.
func (m *Manager) own(name string) {
	m.mu.Lock()
	m.live[name] = true
	m.mu.Unlock()
}

func (m *Manager) disown(name string) {
	m.mu.Lock()
	delete(m.live, name)
	m.mu.Unlock()
}

// New makes the task's group with its limits set. The group exists in every
// controller before the task starts; start the task inside it with CgroupFD
// (v2) or AddProc on a process still blocked before the task's first
// instruction (v1). Each call gets a new group, even for the same id.
func (m *Manager) New(id string, l Limits) (*Group, error) {
	if m.mode == Unavailable {
		return nil, fmt.Errorf("cgroup: %w: %s", ErrUnavailable, m.why)
	}
	if err := checkLimits(l); err != nil {
		return nil, err
	}
	m.lastNew.Store(time.Now().UnixNano())
	base := safeName(id)
	var name string
	var err error
	for range 8 {
		name = base + "-" + strconv.FormatUint(m.seq.Add(1), 10)
		if err = m.place(name); !errors.Is(err, unix.EEXIST) {
			break
		}
		// A group of that name survives from an earlier run that was not
		// cleaned up: take the next number.
	}
	if err != nil {
		return nil, err
	}
	g := &Group{m: m, name: name, fd: -1}
	for _, h := range m.hier {
		g.dirs = append(g.dirs, filepath.Join(h.parent, name))
	}
	if err := g.setLimits(l); err != nil {
		m.removeLater(name)
		return nil, err
	}
	if err := g.oomGroup(); err != nil {
		m.removeLater(name)
		return nil, err
	}
	if m.mode == V2 {
		fd, err := unix.Open(g.dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			m.removeLater(name)
			return nil, fmt.Errorf("cgroup: open %s: %w", g.dirs[0], err)
		}
		g.fd = fd
	}
	return g, nil
}

// place makes the group name: from a spare when one is ready, else anew.
func (m *Manager) place(name string) error {
	select {
	case spare := <-m.spares:
		err := m.renameAll(spare, name)
		if err == nil {
			return nil
		}
		m.removeLater(spare)
		if errors.Is(err, unix.EEXIST) {
			return err
		}
		m.log.Debug("renaming a spare group failed; making the group anew", "error", err)
	default:
	}
	return m.mkdirAll(name)
}

// quiet is how long after a New the background waits before touching
// cgroupfs: its mkdir and rmdir take the kernel's cgroup mutex, and in a
// burst of New calls competing for it doubled their time (measured ~690µs
// per New+Close instead of ~380µs). maxDefer bounds the wait under
// sustained load so spares and removals still progress.
const (
	quiet    = time.Millisecond
	maxDefer = 50 * time.Millisecond
)

// waitQuiet sleeps until no New ran for quiet, or maxDefer passed, or the
// Manager is closing.
func (m *Manager) waitQuiet() {
	deadline := time.Now().Add(maxDefer)
	for {
		idle := time.Since(time.Unix(0, m.lastNew.Load()))
		if idle >= quiet || time.Now().After(deadline) {
			return
		}
		select {
		case <-m.done:
			return
		case <-time.After(quiet - idle):
		}
	}
}

// filler keeps spareCount empty groups ready for New, off the caller's path.
func (m *Manager) filler() {
	defer m.bg.Done()
	pid := os.Getpid()
	for {
		name := fmt.Sprintf("~spare-%d-%d", pid, internalSeq.Add(1))
		m.waitQuiet()
		if err := m.mkdirAll(name); err != nil {
			m.log.Warn("making a spare group failed; retrying in a second", "error", err)
			select {
			case <-m.done:
				return
			case <-time.After(time.Second):
				continue
			}
		}
		select {
		case m.spares <- name:
		case <-m.done:
			m.removeNow(name)
			return
		}
	}
}

// removeLater queues a group's removal to the background remover, or
// removes it at once when the queue is full or the Manager closed.
func (m *Manager) removeLater(name string) {
	m.mu.Lock()
	if !m.closed && m.removeq != nil {
		m.pending.Add(1)
		select {
		case m.removeq <- name:
			m.mu.Unlock()
			return
		default:
			m.pending.Done()
		}
	}
	m.mu.Unlock()
	m.removeNow(name)
}

func (m *Manager) remover() {
	defer m.bg.Done()
	for {
		select {
		case name := <-m.removeq:
			m.waitQuiet()
			m.removeNow(name)
			m.pending.Done()
		case <-m.done:
			for {
				select {
				case name := <-m.removeq:
					m.removeNow(name)
					m.pending.Done()
				default:
					return
				}
			}
		}
	}
}

// removeNow removes an empty group from every hierarchy.
func (m *Manager) removeNow(name string) {
	var errs []error
	for _, h := range m.hier {
		if err := removeTree(filepath.Join(h.parent, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		m.log.Warn("removing a task's cgroup failed; CleanupStale at the next start removes it", "group", m.relParent+"/"+name, "error", err)
	}
	m.disown(name)
	m.removeParent()
}

// flush waits until every queued removal is done.
func (m *Manager) flush() { m.pending.Wait() }

// Close stops making spare groups, removes the spares and waits for the
// groups queued for removal, then removes the parent group if it is empty
// and no other Manager of this process uses it. Groups still open stay, and
// keep the parent; closing them after this removes them at once, and the
// parent with the last one.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	if m.mode == Unavailable {
		return nil
	}
	if m.done != nil {
		close(m.done)
		m.bg.Wait()
	drain:
		for {
			select {
			case s := <-m.spares:
				m.removeNow(s)
			default:
				break drain
			}
		}
		m.pending.Wait()
	}
	m.release()
	return nil
}

// CleanupStale kills every process left in groups under our parent by a
// previous run (an executor killed by SIGKILL leaves its tasks running),
// waits until each group is empty and removes it. Only processes inside
// those groups are signalled. Groups this Manager made are left alone. It
// returns how many groups were removed.
func (m *Manager) CleanupStale() (int, error) {
	if m.mode == Unavailable {
		return 0, nil
	}
	var names []string
	for _, h := range m.hier {
		subs, err := subdirs(h.parent)
		if errors.Is(err, os.ErrNotExist) {
			continue // no parent, so nothing left from a previous run
		}
		if err != nil {
			return 0, fmt.Errorf("cgroup: list %s: %w", h.parent, err)
		}
		for _, s := range subs {
			if n := filepath.Base(s); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	removed := 0
	var errs []error
	for _, name := range names {
		m.mu.Lock()
		mine := m.live[name]
		m.mu.Unlock()
		if mine {
			continue
		}
		g := &Group{m: m, name: name, fd: -1}
		for _, h := range m.hier {
			g.dirs = append(g.dirs, filepath.Join(h.parent, name))
		}
		if err := g.destroy(); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("removed a cgroup left by a previous run", "group", g.Path())
		removed++
	}
	return removed, errors.Join(errs...)
}
