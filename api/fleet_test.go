package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
)

// With a fleet registry, GET /api/v1/executors and the executors page show
// each executor as the registry knows it: registered with its tubes and
// labels, dispatched or not, cordoned or draining; one known only to the
// registry is listed too. An etcd that cannot be reached leaves the list
// whole and says so.
func TestExecutorsShowTheFleetRegistry(t *testing.T) {
	etcd := etcdtest.Start(t)
	px := etcdtest.NewProxy(t, etcd.Endpoint()) // cut later: an etcd outage
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: []string{px.Addr()}, Prefix: "/task-job/" + names.Tasks + "/", TTL: 2 * time.Second, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	e := newEnv(t, envOpt{fleet: reg})
	e.startExecutor("fleet-a", "", map[string]string{"x.sh": "true"})
	g, err := reg.Register(context.Background(), registry.Member{ID: "fleet-a", Host: "h", Tubes: []string{"build", ""}, Labels: map[string]string{"gpu": "a100"},
		Slots: 2, Dispatched: true}, registry.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// etcd is cut off by then: the revoke gives up, the lease expires.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		g.Close(ctx)
	}()
	if err := reg.SetCordon(context.Background(), "fleet-b", registry.Cordon{Drain: true, By: "ops", Since: "2026-12-03T10:00:00Z"}); err != nil {
		t.Fatal(err)
	}

	var got struct {
		Executors  []ExecutorView `json:"executors"`
		FleetError string         `json:"fleet_error"`
	}
	e.getJSON("/api/v1/executors", "", &got)
	byID := map[string]ExecutorView{}
	for _, x := range got.Executors {
		byID[x.ID] = x
	}
	a, b := byID["fleet-a"], byID["fleet-b"]
	switch {
	case got.FleetError != "":
		t.Errorf("fleet_error = %q", got.FleetError)
	case !a.Alive || a.Fleet == nil || !a.Fleet.Registered || !a.Fleet.Dispatched || a.Fleet.Labels["gpu"] != "a100" || strings.Join(a.Fleet.Tubes, ",") != "build," || a.Fleet.Cordon != nil:
		t.Errorf("fleet-a = %+v (fleet %+v), want alive, registered, dispatched, its tubes and labels, not cordoned", a, a.Fleet)
	case b.Alive || b.Fleet == nil || b.Fleet.Registered || b.Fleet.Cordon == nil || !b.Fleet.Cordon.Drain || b.Fleet.Cordon.By != "ops":
		t.Errorf("fleet-b, known to the registry only, draining = %+v (fleet %+v)", b, b.Fleet)
	}
	code, page := e.do("GET", "/executors", "", nil)
	if code != http.StatusOK || !strings.Contains(page, "dispatched") || !strings.Contains(page, "gpu=a100") || !strings.Contains(page, "draining since 2026-12-03T10:00:00Z by ops") {
		t.Errorf("the executors page = %d, want the registry's columns:\n%s", code, page)
	}

	px.Cut()
	e.getJSON("/api/v1/executors", "", &got)
	if got.FleetError == "" || len(got.Executors) == 0 {
		t.Errorf("with etcd down: %+v; want the executors still listed and fleet_error set", got)
	}
	if code, page := e.do("GET", "/executors", "", nil); code != http.StatusOK || !strings.Contains(page, "fleet registry cannot be read") {
		t.Errorf("the executors page with etcd down = %d, want it served with the registry's failure said", code)
	}
}
