package kafkaqueue

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// DialOptions say how to reach the brokers.
type DialOptions struct {
	TLS                            bool
	TLSCAFile, TLSCertFile, TLSKey string
	// SASLMechanism is "", "plain", "scram-sha-256" or "scram-sha-512".
	SASLMechanism, SASLUser, SASLPassword string
}

// ClientOptions turns o into client options: TLS (at least 1.2, the
// system's CAs unless a CA file is given) and SASL.
func ClientOptions(o DialOptions) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if o.TLS || o.TLSCAFile != "" || o.TLSCertFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.TLSCAFile != "" {
			pem, err := os.ReadFile(o.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("queue: kafka: kafka_tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("queue: kafka: kafka_tls_ca_file %s holds no PEM certificate", o.TLSCAFile)
			}
			cfg.RootCAs = pool
		}
		if o.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("queue: kafka: client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch o.SASLMechanism {
	case "":
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: o.SASLUser, Pass: o.SASLPassword}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: o.SASLUser, Pass: o.SASLPassword}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: o.SASLUser, Pass: o.SASLPassword}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("queue: kafka: unknown SASL mechanism %q", o.SASLMechanism)
	}
	return opts, nil
}
