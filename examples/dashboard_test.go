package examples

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/metrics"
)

// registeredNames gathers what the metrics package registers, with every
// optional part on (executor metrics, queue figures), as the names a
// PromQL expression may use: a histogram family only through its _bucket,
// _sum and _count series, which is all Prometheus stores of it.
func registeredNames(t *testing.T) (series map[string]bool, families []string) {
	t.Helper()
	m := metrics.New(metrics.Options{
		Version: "test", Executor: true, Slots: 1,
		Queues: func(context.Context) ([]metrics.QueueFigure, error) {
			return []metrics.QueueFigure{{Name: "tasks", Length: 1, OldestAge: time.Second}}, nil
		},
	})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series = map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "taskjob_") {
			continue
		}
		families = append(families, name)
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				series[name+s] = true
			}
			continue
		}
		series[name] = true
	}
	return series, families
}

// strs collects every string in a decoded JSON value.
func strs(v any, out *[]string) {
	switch v := v.(type) {
	case string:
		*out = append(*out, v)
	case []any:
		for _, e := range v {
			strs(e, out)
		}
	case map[string]any:
		for _, e := range v {
			strs(e, out)
		}
	}
}

// The sample dashboard names only metrics the package registers, and shows
// every one of them, so neither can change without the other.
func TestGrafanaDashboardUsesRegisteredMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var whole any
	if err := json.Unmarshal(b, &whole); err != nil {
		t.Fatal(err)
	}
	series, families := registeredNames(t)
	name := regexp.MustCompile(`\btaskjob_[a-zA-Z0-9_]+`)

	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !name.MatchString(tg.Expr) {
				t.Errorf("panel %q: query %q names no task-job metric", p.Title, tg.Expr)
			}
		}
	}

	// Every string, not only the panels' queries: the instance variable's
	// query and the descriptions name metrics too.
	var all []string
	strs(whole, &all)
	used := map[string]bool{}
	for _, s := range all {
		for _, n := range name.FindAllString(s, -1) {
			if !series[n] {
				t.Errorf("the dashboard uses %s, which the metrics package does not register (or, for a histogram, is not one of its _bucket, _sum, _count series)", n)
			}
			used[n] = true
		}
	}
	for _, f := range families {
		if !slices.ContainsFunc([]string{"", "_bucket", "_sum", "_count"}, func(s string) bool { return used[f+s] }) {
			t.Errorf("the dashboard shows nothing of %s: add a panel for it", f)
		}
	}
}
