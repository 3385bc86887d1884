package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/tailscale/hujson"
)

// Transports.
const (
	TransportRedis = "redis"
	TransportKafka = "kafka"
)

// DefaultKafkaPartitions is kafka_partitions' default
// (kafkaqueue.DefaultPartitions; see config.go on why it is repeated).
const DefaultKafkaPartitions = 6

// Kafka holds the keys of the Kafka transport ("transport": "kafka").
type Kafka struct {
	// Brokers ("kafka_brokers") are the seed brokers, "host:port" each.
	// Required with "transport": "kafka".
	Brokers []string
	// TLS ("kafka_tls", default false) speaks TLS to the brokers; it is on
	// whenever one of the kafka_tls_*_file keys is set.
	TLS bool
	// TLSCAFile ("kafka_tls_ca_file") is a PEM file of the CAs that sign the
	// brokers' certificates; "" = the system's.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile ("kafka_tls_cert_file",
	// "kafka_tls_key_file") are this executor's client certificate and key
	// (PEM), both or neither.
	TLSCertFile, TLSKeyFile string
	// SASLMechanism ("kafka_sasl_mechanism") is "", "plain",
	// "scram-sha-256" or "scram-sha-512".
	SASLMechanism string
	// SASLUser ("kafka_sasl_user") is the SASL user name.
	SASLUser string
	// SASLPasswordFile ("kafka_sasl_password_file") holds the SASL
	// password; Load reads it into SASLPassword. There is no inline form.
	SASLPasswordFile string
	SASLPassword     string
	// Partitions ("kafka_partitions", default 6, 1..1000) is the partition
	// count of the tasks, logs and status topics when the executor creates
	// them: at most this many executors share the tasks topic.
	Partitions int
	// CreateTopics ("kafka_create_topics", default true) creates missing
	// topics with the documented settings; false only checks that they
	// exist and says how to create them.
	CreateTopics bool
}

// stringListSetter takes a JSON array of strings; [] is the same as absent.
func stringListSetter(field func(*Config) *[]string) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		arr, ok := v.(*hujson.Array)
		if !ok {
			return fmt.Errorf(`must be a list of strings, like ["kafka1:9092", "kafka2:9092"], got %s`, kindName(v))
		}
		var out []string
		for i, e := range arr.Elements {
			lit, _ := e.Value.(hujson.Literal)
			if e.Value.Kind() != '"' {
				return fmt.Errorf("entry %d must be a string in double quotes, got %s", i+1, kindName(e.Value))
			}
			out = append(out, lit.String())
		}
		*field(c) = out
		return nil
	}
}

var kafkaTopicPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// validateKafka checks the transport and, for Kafka, its keys.
func (c *Config) validateKafka(bad func(key, format string, args ...any)) {
	switch c.Transport {
	case TransportRedis, TransportKafka:
	default:
		bad("transport", `must be "redis" or "kafka", got %q`, c.Transport)
		return
	}
	k := &c.Kafka
	if k.Partitions < 1 || k.Partitions > 1000 {
		bad("kafka_partitions", "must be between 1 and 1000, got %d", k.Partitions)
	}
	switch k.SASLMechanism {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		bad("kafka_sasl_mechanism", `must be "plain", "scram-sha-256" or "scram-sha-512", got %q`, k.SASLMechanism)
	}
	if k.SASLMechanism != "" && (k.SASLUser == "" || k.SASLPasswordFile == "") {
		bad("kafka_sasl_mechanism", "is %q but kafka_sasl_user or kafka_sasl_password_file is not set", k.SASLMechanism)
	}
	if k.SASLMechanism == "" && (k.SASLUser != "" || k.SASLPasswordFile != "") {
		bad("kafka_sasl_user", "is set but kafka_sasl_mechanism is not; name the mechanism")
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		bad("kafka_tls_cert_file", "kafka_tls_cert_file and kafka_tls_key_file go together: set both or neither")
	}
	if c.Transport != TransportKafka {
		if len(k.Brokers) > 0 {
			bad("kafka_brokers", `is set but transport is %q; set "transport": "kafka" to use Kafka`, c.Transport)
		}
		return
	}
	if len(k.Brokers) == 0 {
		bad("kafka_brokers", `must list at least one broker with "transport": "kafka", like ["kafka1:9092"]`)
	}
	for _, b := range k.Brokers {
		if err := checkHostPort(b); err != nil {
			bad("kafka_brokers", "%q: %v", b, err)
		}
	}
	// Topic names derive from the queue names (README, Kafka section).
	for _, q := range []struct{ key, name string }{
		{"queue_name", c.QueueName + "_executors"}, {"queue_control_name", c.QueueControlName}, {"logs_channel", c.LogsChannel},
	} {
		if !kafkaTopicPattern.MatchString(q.name) {
			bad(q.key, "%q cannot name a Kafka topic: use 1 to 200 of A-Z a-z 0-9 . _ -", strings.TrimSuffix(q.name, "_executors"))
		}
	}
}

// checkKafkaFiles makes the Kafka file paths absolute (relative to the
// config file), checks that they can be read and reads the SASL password.
func (p *parser) checkKafkaFiles() {
	k := &p.cfg.Kafka
	failed := map[string]bool{}
	for _, f := range []struct {
		key  string
		path *string
	}{
		{"kafka_tls_ca_file", &k.TLSCAFile}, {"kafka_tls_cert_file", &k.TLSCertFile},
		{"kafka_tls_key_file", &k.TLSKeyFile}, {"kafka_sasl_password_file", &k.SASLPasswordFile},
	} {
		if *f.path == "" {
			continue
		}
		if !filepath.IsAbs(*f.path) {
			*f.path = filepath.Join(filepath.Dir(p.file), *f.path)
		}
		pos := p.posOf(f.key)
		fi, err := os.Stat(*f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.keyErr(pos, f.key, "%s does not exist", *f.path)
			failed[f.key] = true
			continue
		case err != nil:
			p.keyErr(pos, f.key, "cannot be checked: %v", err)
			failed[f.key] = true
			continue
		case !fi.Mode().IsRegular():
			p.keyErr(pos, f.key, "%s is not a regular file", *f.path)
			failed[f.key] = true
			continue
		}
		secret := f.key == "kafka_sasl_password_file" || f.key == "kafka_tls_key_file"
		if secret && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			p.warn(pos, "%s: %s can be read by other users (mode %04o); run chmod 600 %s", f.key, *f.path, fi.Mode().Perm(), *f.path)
		}
	}
	if k.TLSCAFile != "" || k.TLSCertFile != "" {
		k.TLS = true
	}
	if k.SASLPasswordFile != "" && !failed["kafka_sasl_password_file"] {
		pw, _, err := readPassword(k.SASLPasswordFile)
		switch {
		case err != nil:
			p.keyErr(p.posOf("kafka_sasl_password_file"), "kafka_sasl_password_file", "%v", err)
		case pw == "":
			p.keyErr(p.posOf("kafka_sasl_password_file"), "kafka_sasl_password_file", "%s is empty; write the SASL password in it", k.SASLPasswordFile)
		default:
			k.SASLPassword = pw
		}
	}
}
