package main

import (
	"reflect"
	"testing"

	"github.com/taskjob/task-job/config"
)

// notFromConfig are the executor.Options fields of plain values that no
// config key sets.
var notFromConfig = map[string]string{
	"SpoolMemBytes": "the outbox's memory budget keeps the executor's default",
}

// TestExecutorOptionsFromConfig: an Options field of a plain value (not one
// of the objects built at start-up) that executorOptions leaves zero, with
// every key set, was forgotten there.
func TestExecutorOptionsFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Logs = true
	cfg.RequireSignatures = true
	cfg.LogsHTTP = "https://logs.example/in"
	opts := reflect.ValueOf(executorOptions(cfg))
	for i := range opts.NumField() {
		f, name := opts.Field(i), opts.Type().Field(i).Name
		switch f.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Func, reflect.Chan:
			continue // built at start-up, by serve
		}
		if f.IsZero() && notFromConfig[name] == "" {
			t.Errorf("executorOptions leaves executor.Options.%s zero; copy its config key, or list it in notFromConfig", name)
		}
	}
	if o := executorOptions(cfg); o.KillGrace != cfg.KillGrace || o.TTL != cfg.ExecutorTTL || o.MaxOutputRate != cfg.MaxOutputRate {
		t.Errorf("executorOptions = %+v", o)
	}
}
