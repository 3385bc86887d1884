// Command stamp prints the wall-clock time, in nanoseconds since the epoch,
// as the very first thing it does, then exits. The benchmark runs it both
// through task-job and by a plain fork/exec: the difference between the
// stamp and the moment the benchmark submitted it is how long it took for
// the task's own code to start running.
//
// It imports as little as possible (no fmt) so that the Go runtime's start-up,
// which both measurements include, stays small.
package main

import (
	"os"
	"strconv"
	"time"
)

func main() {
	b := strconv.AppendInt(make([]byte, 0, 24), time.Now().UnixNano(), 10)
	os.Stdout.Write(append(b, '\n'))
}
