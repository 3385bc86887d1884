package main

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/taskjob/task-job/sandbox"
)

// isolationCost is start+wait of /bin/true three ways.
type isolationCost struct {
	isolated, group, plain samples
	isolatedDescribe       string
	isolatedOK             bool // the host really gave the isolated runner namespaces
}

// isolationOverhead times the sandbox alone, without Redis or the executor:
// an isolated runner (pid, ipc, uts namespaces and an init), a process-group
// runner, and a plain exec.Command. The three are interleaved per iteration
// so that noise on this shared machine hits them alike.
func (b *bench) isolationOverhead(iters int) (isolationCost, error) {
	var c isolationCost
	iso, err := sandbox.New(sandbox.Options{Isolate: true})
	if err != nil {
		return c, err
	}
	grp, err := sandbox.New(sandbox.Options{Isolate: false})
	if err != nil {
		return c, err
	}
	c.isolatedDescribe, c.isolatedOK = iso.Describe(), iso.Isolated()

	spec := sandbox.Spec{Path: "/bin/true", Dir: b.cmdDir, Env: taskEnv}
	viaSandbox := func(r *sandbox.Runner) (time.Duration, error) {
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
		di, err := viaSandbox(iso)
		if err != nil {
			return c, fmt.Errorf("isolated: %w", err)
		}
		dg, err := viaSandbox(grp)
		if err != nil {
			return c, fmt.Errorf("process group: %w", err)
		}
		dp, err := plain()
		if err != nil {
			return c, fmt.Errorf("plain exec: %w", err)
		}
		if i >= 0 {
			c.isolated = append(c.isolated, di)
			c.group = append(c.group, dg)
			c.plain = append(c.plain, dp)
		}
	}
	return c, nil
}
