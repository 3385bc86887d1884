// Command task-job-init is the Linux sandbox's per-task setup step. The
// executor starts it in a task's new namespaces; it builds the task's
// filesystem view, drops privileges and execs the task (see package
// sandbox/nsinit). It is not meant to be run by hand.
//
// Install it next to the task-job binary. Without it the executor runs the
// same step by re-executing itself, which works but costs about 2 ms more
// per task.
package main

import "github.com/taskjob/task-job/sandbox/nsinit"

func main() { nsinit.Main() }
