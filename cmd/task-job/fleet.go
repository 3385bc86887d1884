package main

import (
	"context"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
)

// joinRegistry registers the executor in the fleet registry, if one is
// configured, and wires the lease to it: lost → take nothing; grace over →
// stop the tasks as lost; registered again → take again. The running count
// is published every second. leave deregisters.
func joinRegistry(ctx context.Context, cfg *config.Config, ex *executor.Executor, log hclog.Logger) (leave func(), err error) {
	if cfg.Registry == "" {
		return func() {}, nil
	}
	reg, err := etcdreg.New(etcdreg.Options{
		Endpoints: cfg.RegistryEndpoints(), Prefix: "/task-job/" + cfg.QueueName + "/",
		TTL: cfg.RegistryTTL, Logger: log.Named("registry"),
	})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	g, err := reg.Register(ctx, registry.Member{
		ID: cfg.ExecutorID, Host: host, Labels: cfg.Labels, Tubes: cfg.Tubes, Slots: cfg.Concurrency, Version: version,
		Dispatched: cfg.Dispatched,
	}, registry.Hooks{
		Lost:       ex.PauseTaking,
		Fence:      func() { ex.StopAllLost() },
		Registered: func(int64) { ex.ResumeTaking() },
	})
	if err != nil {
		reg.Close()
		return nil, err
	}
	log.Info("registered in the fleet registry", "registry", cfg.Registry, "incarnation", g.Incarnation(), "dispatched", cfg.Dispatched)
	tick, stop := context.WithCancel(context.Background())
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-tick.Done():
				return
			case <-t.C:
				g.SetRunning(ex.Running())
			}
		}
	}()
	return func() {
		stop()
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := g.Close(cctx); err != nil {
			log.Warn("could not deregister; the registration ends with its lease", "error", err)
		}
		reg.Close()
	}, nil
}
