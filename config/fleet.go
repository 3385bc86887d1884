package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tailscale/hujson"
)

// Fleet holds the keys of a fleet of executors: which tubes one serves,
// its labels, and the registry it joins.
type Fleet struct {
	// Tubes ("tubes", default [""]) are the tube lists this executor takes
	// from, in priority order: it takes from a tube only while the ones
	// before it are empty. "" names the untubed task list (queue_name).
	// A tube name is 1 to 128 letters, digits or - _ . : (as a task's
	// "tube" field).
	Tubes []string
	// Labels ("labels", default none) describe this executor in the
	// registry, e.g. {"gpu": "a100", "zone": "b"}: keys 1 to 63 of
	// [A-Za-z0-9._/-], values up to 256 printable characters.
	Labels map[string]string
	// Registry ("registry", default "" = none) is the etcd cluster the
	// executor registers in: "etcd://host:2379,host2:2379".
	Registry string
	// RegistryTTL ("registry_ttl", default "10s", 2s..5m) is the lease of
	// the registration: an executor cut off from etcd this long is
	// replaced, and stops taking work at once and its tasks after as long
	// again.
	RegistryTTL time.Duration
	// Dispatched ("dispatched", default false): take only the tasks a
	// dispatcher assigns to this executor (its list
	// queue_name:assigned:<executor_id>), not from the shared or tube
	// lists. Needs registry, where the dispatcher finds it.
	Dispatched bool
}

// DefaultRegistryTTL is registry_ttl's default.
const DefaultRegistryTTL = 10 * time.Second

// DefaultTubes is the tubes default: the untubed task list only.
var DefaultTubes = []string{""}

var (
	tubePattern     = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	labelKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,63}$`)
)

// ValidTube reports whether name may name a tube ("" is the untubed list).
func ValidTube(name string) bool { return name == "" || tubePattern.MatchString(name) }

// setTubes is the setter of tubes.
func setTubes(c *Config, v hujson.ValueTrimmed) error {
	arr, ok := v.(*hujson.Array)
	if !ok {
		return fmt.Errorf(`must be a list of tube names, like ["build", "deploy"], got %s`, kindName(v))
	}
	tubes := []string{}
	for i, e := range arr.Elements {
		lit, ok := e.Value.(hujson.Literal)
		if !ok || e.Value.Kind() != '"' {
			return fmt.Errorf("element %d must be a tube name in double quotes, got %s", i+1, kindName(e.Value))
		}
		tubes = append(tubes, lit.String())
	}
	c.Tubes = tubes
	return nil
}

// setLabels is the setter of labels.
func setLabels(c *Config, v hujson.ValueTrimmed) error {
	obj, ok := v.(*hujson.Object)
	if !ok {
		return fmt.Errorf(`must be an object of names to values, like {"gpu": "a100"}, got %s`, kindName(v))
	}
	labels := map[string]string{}
	for _, m := range obj.Members {
		name := m.Name.Value.(hujson.Literal).String()
		lit, ok := m.Value.Value.(hujson.Literal)
		if !ok || m.Value.Value.Kind() != '"' {
			return fmt.Errorf("label %q must have a value in double quotes, got %s", name, kindName(m.Value.Value))
		}
		if _, dup := labels[name]; dup {
			return fmt.Errorf("label %q is set twice; keep one", name)
		}
		labels[name] = lit.String()
	}
	c.Labels = labels
	return nil
}

// RegistryEndpoints returns the etcd endpoints of Registry (validated).
func (c *Config) RegistryEndpoints() []string {
	rest, ok := strings.CutPrefix(c.Registry, "etcd://")
	if !ok || rest == "" {
		return nil
	}
	return strings.Split(rest, ",")
}

func (c *Config) validateFleet(bad func(key, format string, args ...any)) {
	if len(c.Tubes) == 0 {
		bad("tubes", `is empty: this executor would take nothing; list the tubes it serves, "" for the untubed list`)
	}
	if len(c.Tubes) > 64 {
		bad("tubes", "lists %d tubes; at most 64", len(c.Tubes))
	}
	seen := map[string]bool{}
	for _, t := range c.Tubes {
		switch {
		case !ValidTube(t):
			bad("tubes", "%q is not a tube name: 1 to 128 letters, digits or - _ . :", t)
		case seen[t]:
			bad("tubes", "lists %q twice", t)
		}
		seen[t] = true
	}
	if len(c.Labels) > 64 {
		bad("labels", "has %d labels; at most 64", len(c.Labels))
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range c.Labels {
			if !yield(k) {
				return
			}
		}
	}) {
		v := c.Labels[k]
		if !labelKeyPattern.MatchString(k) {
			bad("labels", "label name %q must be 1 to 63 letters, digits or . _ / -", k)
		}
		if len(v) > 256 || strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
			bad("labels", "label %q: the value must be at most 256 printable characters", k)
		}
	}
	if c.Registry != "" {
		rest, ok := strings.CutPrefix(c.Registry, "etcd://")
		if !ok || rest == "" {
			bad("registry", `%q: want "etcd://host:2379[,host:2379...]"`, c.Registry)
		} else {
			for _, hp := range strings.Split(rest, ",") {
				if err := checkHostPort(hp); err != nil {
					bad("registry", "%q: %v", hp, err)
				}
			}
		}
	}
	if c.Dispatched && c.Registry == "" {
		bad("dispatched", `needs "registry": a dispatcher assigns work only to the executors it finds registered there`)
	}
	if c.Dispatched && c.Transport != "" && c.Transport != TransportRedis {
		bad("dispatched", "works on the Redis transport only (transport is %q)", c.Transport)
	}
}
