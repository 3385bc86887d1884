package config

import (
	"reflect"
	"strings"
	"testing"
)

// The management server's keys: a listener beyond loopback needs tokens,
// HTTPS needs both files, and every file is an absolute path.
func TestServerKeys(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // error lines; nil = valid
		ok   func(*Config) bool
	}{
		{name: "bare port is loopback", body: `"server_port": "8080"`},
		{name: "localhost", body: `"server_port": "localhost:8080"`},
		{name: "v6 loopback", body: `"server_port": "[::1]:8080"`},
		{name: "loopback address", body: `"server_port": "127.0.0.2:8080"`},
		{
			name: "every interface without tokens",
			body: `"server_port": ":8080"`,
			want: []string{`test.json:2:16: server_port: ":8080" listens beyond loopback, where anyone could start and kill tasks; set server_tokens_file (and server_tls_cert, server_tls_key), or write a bare port to listen on 127.0.0.1 only`},
		},
		{
			name: "an address without tokens",
			body: `"server_port": "10.0.0.1:8080"`,
			want: []string{`test.json:2:16: server_port: "10.0.0.1:8080" listens beyond loopback, where anyone could start and kill tasks; set server_tokens_file (and server_tls_cert, server_tls_key), or write a bare port to listen on 127.0.0.1 only`},
		},
		{
			name: "every interface with tokens and TLS",
			body: "\"server_port\": \":8443\",\n\"server_tokens_file\": \"/etc/task-job/tokens\",\n\"server_tls_cert\": \"/etc/task-job/cert.pem\",\n\"server_tls_key\": \"/etc/task-job/key.pem\"",
			ok: func(c *Config) bool {
				return c.ServerPort == ":8443" && c.ServerTokensFile == "/etc/task-job/tokens" &&
					c.ServerTLSCert == "/etc/task-job/cert.pem" && c.ServerTLSKey == "/etc/task-job/key.pem"
			},
		},
		{
			name: "certificate without key",
			body: `"server_tls_cert": "/etc/task-job/cert.pem"`,
			want: []string{`test.json:2:20: server_tls_cert: is set but server_tls_key is not; HTTPS needs both the certificate and its key`},
		},
		{
			name: "key without certificate",
			body: `"server_tls_key": "/etc/task-job/key.pem"`,
			want: []string{`test.json:2:19: server_tls_key: is set but server_tls_cert is not; HTTPS needs both the certificate and its key`},
		},
		{
			name: "relative paths",
			body: "\"server_tokens_file\": \"tokens\",\n\"server_tls_cert\": \"c.pem\",\n\"server_tls_key\": \"k.pem\"",
			want: []string{
				`test.json:2:23: server_tokens_file: "tokens" is not an absolute path; write the full path`,
				`test.json:3:20: server_tls_cert: "c.pem" is not an absolute path; write the full path`,
				`test.json:4:19: server_tls_key: "k.pem" is not an absolute path; write the full path`,
			},
		},
		{
			name: "wrong type",
			body: `"server_tokens_file": true`,
			want: []string{`test.json:2:23: server_tokens_file: must be a string in double quotes, got a boolean`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseBody(t, tt.body)
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if tt.ok != nil && !tt.ok(c) {
				t.Errorf("config = %+v", c)
			}
		})
	}
	// The tokens file is named in the start-up line; tokens are never in
	// the config, so nothing there needs hiding.
	c := Default()
	c.ServerTokensFile = "/etc/task-job/tokens"
	if !strings.Contains(c.String(), `server_tokens_file="/etc/task-job/tokens"`) {
		t.Errorf("String() = %s", c.String())
	}
}
