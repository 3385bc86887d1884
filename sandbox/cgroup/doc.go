// Package cgroup puts each task in a cgroup of its own: memory, CPU and pids
// limits set before the task starts, a kill that reaches every process of
// the task (setsid and double forks included) and nothing else, and the
// task's CPU time, peak memory and OOM kills.
//
// Manager.Describe says in one line what this host gives. Where the parent
// group lives:
//
//   - cgroup v1, legacy or hybrid host (v1 controllers; the controller-less
//     unified hierarchy of a hybrid host is not used): /<Name>/<group> in
//     each of the memory, cpu, cpuacct, pids and freezer hierarchies, at the
//     root of each mount. Only those five hierarchies are used, so creating a
//     group costs five mkdirs, not one per mounted hierarchy. A kill freezes
//     the group, SIGKILLs every pid it lists, thaws it (and any group a task
//     made below it) and lists it again, until no pid it has not signalled
//     is left.
//   - cgroup v2, executor in the root cgroup: /sys/fs/cgroup/<Name>/<group>,
//     with +memory +cpu +pids enabled in the root's and in <Name>'s
//     cgroup.subtree_control. A kill writes cgroup.kill (Linux 5.14+; older
//     kernels freeze, SIGKILL and thaw).
//   - cgroup v2, executor in some other cgroup <own> (a systemd service with
//     Delegate=yes, a container with its own cgroup namespace): a cgroup that
//     holds processes cannot enable controllers for its children (the "no
//     internal processes" rule), so the executor moves itself into the leaf
//     <own>/executor and task groups are made under <own>/tasks/. If <own>
//     holds other processes too, or the controllers are not delegated to it,
//     the Manager is Unavailable and Describe says why.
//
// Group names are the caller's task id made safe for a directory name (bytes
// other than letters, digits, '_', '-' and '.' are hex-escaped as %XX, long
// ids are cut and suffixed with a hash) plus "-<n>", unique per Manager.
// Internal names (spares, probes) start with '~', which a task's name never
// does.
//
// Starting a task inside its group, so that it cannot fork a child outside
// it first. The package starts no process itself; there are two ways:
//
//   - v2: Group.CgroupFD gives an fd of the group's directory; start the
//     task with syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd} (clone3
//     with CLONE_INTO_CGROUP, Linux 5.7+) and it is born inside.
//   - v1 (no CgroupFD): start a process that blocks before the task's first
//     instruction, call Group.AddProc with its pid, then let it go on. The
//     sandbox's helper waits for its instructions on a pipe; a plain command
//     can be started as /bin/sh -c 'read _ <&3; exec "$@" 3<&-' sh CMD ARGS
//     with a pipe's read end as fd 3, and the write end closed after
//     AddProc.
//
// No thread of the executor ever enters a task's group, and AddProc refuses
// the executor's own pid: Kill freezes the group, and must never freeze the
// executor.
//
// Creating and removing a group costs a few hundred microseconds on v1
// (mkdir in five hierarchies, and memory cgroups are slow to make); the
// Manager keeps a few empty spare groups made in the background, so New is a
// rename plus the limit writes, and removes closed groups in the background.
// Manager.Close waits for those removals, then removes the parent group
// (/<Name> in each v1 hierarchy, /sys/fs/cgroup/<Name> on v2, <own>/tasks
// when delegated) if no group is left in it and no other Manager of the
// process uses it. A parent found missing later is made again.
//
// Only github.com/containerd/cgroups/v3's root package is used (mode
// detection, /proc/self/cgroup parsing): its cgroup1 and cgroup2 packages
// pull in OCI runtime-spec, systemd D-Bus and eBPF modules this project does
// not carry, and they create groups in every mounted v1 hierarchy, which is
// the slow path this package avoids. The rest is plain writes to cgroupfs
// files, each one syscall.
package cgroup
