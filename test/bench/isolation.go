package main

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/taskjob/task-job/sandbox"
)

// isolationCost is start+wait of /bin/true through each runner, a plain
// exec.Command and the peers.
type isolationCost struct {
	plain, helper, reexec, group samples
	isolatedOK                   bool // the host really gave the sandbox its namespaces
	reexecOK                     bool
	peers                        []*peer
}

// isolationOverhead times the sandbox alone, without Redis or the executor:
// the full sandbox with its helper installed, the same re-executing this
// binary instead, a process group, a plain exec.Command, and each peer
// runtime on the same program. All are interleaved per iteration, so that
// noise on this shared machine hits them alike.
func (b *bench) isolationOverhead(iters int) (isolationCost, error) {
	c := isolationCost{isolatedOK: b.runner.Isolated(), reexecOK: b.reexec.Isolated()}
	c.peers = b.peers()

	n := 0
	viaSandbox := func(r *sandbox.Runner) (time.Duration, error) {
		n++
		spec := sandbox.Spec{Path: "/bin/true", Dir: b.cmdDir, Env: taskEnv, Name: fmt.Sprintf("iso-%d", n)}
		t0 := time.Now()
		p, err := r.Start(spec)
		if err != nil {
			return 0, err
		}
		res, err := p.Wait()
		d := time.Since(t0)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("/bin/true exited %d", res.ExitCode)
		}
		return d, err
	}
	plain := func() (time.Duration, error) {
		cmd := exec.Command("/bin/true")
		cmd.Env, cmd.Dir = taskEnv, b.cmdDir
		t0 := time.Now()
		err := cmd.Run()
		return time.Since(t0), err
	}

	for i := -warmup; i < iters; i++ {
		dp, err := plain()
		if err != nil {
			return c, fmt.Errorf("plain exec: %w", err)
		}
		dh, err := viaSandbox(b.runner)
		if err != nil {
			return c, fmt.Errorf("sandbox: %w", err)
		}
		dr, err := viaSandbox(b.reexec)
		if err != nil {
			return c, fmt.Errorf("sandbox re-executing itself: %w", err)
		}
		dg, err := viaSandbox(b.group)
		if err != nil {
			return c, fmt.Errorf("process group: %w", err)
		}
		for _, p := range c.peers {
			p.run(i)
		}
		if i >= 0 {
			c.plain = append(c.plain, dp)
			c.helper = append(c.helper, dh)
			c.reexec = append(c.reexec, dr)
			c.group = append(c.group, dg)
		}
	}
	return c, nil
}
