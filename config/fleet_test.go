package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFleetKeys(t *testing.T) {
	c, _, err := Parse("c.json", []byte(`{"tubes": ["deploy", "build", ""], "labels": {"gpu": "a100", "zone": "b"},
		"registry": "etcd://10.0.0.1:2379,h2:2379", "registry_ttl": "4s"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Fleet{Tubes: []string{"deploy", "build", ""}, Labels: map[string]string{"gpu": "a100", "zone": "b"},
		Registry: "etcd://10.0.0.1:2379,h2:2379", RegistryTTL: 4 * time.Second}
	if !reflect.DeepEqual(c.Fleet, want) {
		t.Errorf("Fleet = %+v, want %+v", c.Fleet, want)
	}
	if got := c.RegistryEndpoints(); !reflect.DeepEqual(got, []string{"10.0.0.1:2379", "h2:2379"}) {
		t.Errorf("RegistryEndpoints = %v", got)
	}
}

func TestFleetKeysRefused(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"tubes": []}`, "tubes: is empty"},
		{`{"tubes": "build"}`, "must be a list of tube names"},
		{`{"tubes": [1]}`, "element 1 must be a tube name"},
		{`{"tubes": ["a b"]}`, `"a b" is not a tube name`},
		{`{"tubes": ["a", "a"]}`, `lists "a" twice`},
		{`{"tubes": ["` + strings.Repeat("x", 129) + `"]}`, "is not a tube name"},
		{`{"labels": ["x"]}`, "must be an object"},
		{`{"labels": {"gpu": 1}}`, `label "gpu" must have a value in double quotes`},
		{`{"labels": {"a b": "1"}}`, `label name "a b"`},
		{`{"labels": {"a": "x\ny"}}`, "printable"},
		{`{"registry": "http://h:2379"}`, "want \"etcd://"},
		{`{"registry": "etcd://h"}`, "is not host:port"},
		{`{"registry_ttl": "1s"}`, "between 2s and 5m"},
		{`{"dispatched": true}`, `needs "registry"`},
	} {
		_, _, err := Parse("c.json", []byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.json, err, tc.want)
		}
	}
}
