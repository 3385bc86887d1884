package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestKafkaKeys(t *testing.T) {
	tests := []struct {
		name string
		body string // members, inside { }
		want func(*Config) bool
		errs []string // each must appear; none when empty
	}{
		{name: "default is redis", body: ``,
			want: func(c *Config) bool {
				return c.Transport == "redis" && c.Kafka.Partitions == 6 && c.Kafka.CreateTopics && c.Kafka.Brokers == nil
			}},
		{name: "kafka with brokers", body: `"transport": "kafka", "kafka_brokers": ["k1:9092", "[::1]:9093"], "kafka_partitions": 3, "kafka_create_topics": false`,
			want: func(c *Config) bool {
				return c.Transport == "kafka" && reflect.DeepEqual(c.Kafka.Brokers, []string{"k1:9092", "[::1]:9093"}) &&
					c.Kafka.Partitions == 3 && !c.Kafka.CreateTopics
			}},
		{name: "unknown transport", body: `"transport": "nats"`, errs: []string{`transport: must be "redis" or "kafka", got "nats"`}},
		{name: "kafka without brokers", body: `"transport": "kafka"`, errs: []string{"kafka_brokers: must list at least one broker"}},
		{name: "kafka with an empty list", body: `"transport": "kafka", "kafka_brokers": []`, errs: []string{"kafka_brokers: must list at least one broker"}},
		{name: "brokers without kafka", body: `"kafka_brokers": ["k1:9092"]`, errs: []string{`kafka_brokers: is set but transport is "redis"`}},
		{name: "broker not host:port", body: `"transport": "kafka", "kafka_brokers": ["k1"]`, errs: []string{`kafka_brokers: "k1": `}},
		{name: "brokers not a list", body: `"transport": "kafka", "kafka_brokers": "k1:9092"`, errs: []string{"kafka_brokers: must be a list of strings"}},
		{name: "broker not a string", body: `"transport": "kafka", "kafka_brokers": [9092]`, errs: []string{"kafka_brokers: entry 1 must be a string"}},
		{name: "partitions", body: `"kafka_partitions": 0`, errs: []string{"kafka_partitions: must be between 1 and 1000, got 0"}},
		{name: "sasl mechanism", body: `"kafka_sasl_mechanism": "gssapi"`, errs: []string{`kafka_sasl_mechanism: must be "plain", "scram-sha-256" or "scram-sha-512"`}},
		{name: "sasl without user", body: `"kafka_sasl_mechanism": "plain"`, errs: []string{"kafka_sasl_user or kafka_sasl_password_file is not set"}},
		{name: "user without mechanism", body: `"kafka_sasl_user": "u"`, errs: []string{"kafka_sasl_user: is set but kafka_sasl_mechanism is not"}},
		{name: "cert without key", body: `"kafka_tls_cert_file": "/etc/c.pem"`, errs: []string{"set both or neither"}},
		{name: "queue name no topic can have", body: `"transport": "kafka", "kafka_brokers": ["k:1"], "queue_name": "jobs:a"`,
			errs: []string{`queue_name: "jobs:a" cannot name a Kafka topic`}},
		{name: "the same name is fine for redis", body: `"queue_name": "jobs:a"`, want: func(c *Config) bool { return c.QueueName == "jobs:a" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := Parse("c.json", []byte("{"+tt.body+"}"))
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if !tt.want(c) {
					t.Fatalf("got %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errs)
			}
			for _, e := range tt.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("error %q does not say %q", err, e)
				}
			}
		})
	}
}

func TestKafkaFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("pw", "s3cret\n", 0o600)
	write("pw-open", "open\n", 0o644)
	write("ca.pem", "x", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	load := func(body string) (*Config, []Warning, error) {
		t.Helper()
		path := filepath.Join(dir, "config.json")
		write("config.json", `{"cmd_dir": "`+filepath.Join(dir, "jobs")+`", "transport": "kafka", "kafka_brokers": ["k:9092"], `+body+`}`, 0o600)
		return Load(path)
	}
	c, warnings, err := load(`"kafka_sasl_mechanism": "scram-sha-512", "kafka_sasl_user": "u", "kafka_sasl_password_file": "pw", "kafka_tls_ca_file": "ca.pem"`)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("load: %v %v", err, warnings)
	}
	if c.Kafka.SASLPassword != "s3cret" || c.Kafka.TLSCAFile != filepath.Join(dir, "ca.pem") || !c.Kafka.TLS {
		t.Fatalf("got %+v", c.Kafka)
	}
	if strings.Contains(c.String(), "s3cret") {
		t.Fatal("the SASL password is in the config's String")
	}
	_, warnings, err = load(`"kafka_sasl_mechanism": "plain", "kafka_sasl_user": "u", "kafka_sasl_password_file": "pw-open"`)
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0].String(), "can be read by other users") {
		t.Fatalf("password file others can read: %v %v", err, warnings)
	}
	_, _, err = load(`"kafka_sasl_mechanism": "plain", "kafka_sasl_user": "u", "kafka_sasl_password_file": "nope"`)
	if err == nil || !strings.Contains(err.Error(), "kafka_sasl_password_file: "+filepath.Join(dir, "nope")+" does not exist") ||
		strings.Count(err.Error(), "kafka_sasl_password_file") != 1 {
		t.Fatalf("missing password file: %v", err)
	}
	_, _, err = load(`"kafka_tls_ca_file": "` + dir + `"`)
	if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Fatalf("CA file that is a directory: %v", err)
	}
}
