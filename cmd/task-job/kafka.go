package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/queue/kafkaqueue"
)

// kafkaDialOptions are the connection settings (TLS, SASL) that the
// executor and the client commands share.
func kafkaDialOptions(cfg *config.Config) ([]kgo.Opt, error) {
	k := cfg.Kafka
	return kafkaqueue.ClientOptions(kafkaqueue.DialOptions{
		TLS: k.TLS, TLSCAFile: k.TLSCAFile, TLSCertFile: k.TLSCertFile, TLSKey: k.TLSKeyFile,
		SASLMechanism: k.SASLMechanism, SASLUser: k.SASLUser, SASLPassword: k.SASLPassword,
	})
}

// kafkaNames are the config's queue names, which name the topics.
func kafkaNames(cfg *config.Config) kafkaqueue.Names {
	return kafkaqueue.Names{Tasks: cfg.QueueName, Control: cfg.QueueControlName, Logs: cfg.LogsChannel}
}

// openKafka connects the Kafka transport ("transport": "kafka"), creating
// or checking its topics, and retries with a growing pause while the
// brokers cannot be reached, as the Redis transport does.
func openKafka(ctx context.Context, cfg *config.Config, log hclog.Logger) (*kafkaqueue.Queue, error) {
	k := cfg.Kafka
	copts, err := kafkaDialOptions(cfg)
	if err != nil {
		return nil, err
	}
	opt := kafkaqueue.Options{
		Names:      kafkaNames(cfg),
		ExecutorID: cfg.ExecutorID, Retention: cfg.StatusRetention, TTL: cfg.ExecutorTTL,
		MaxTaskBytes: cfg.MaxTaskBytes, Partitions: k.Partitions, CreateTopics: k.CreateTopics,
		Logger: log.Named("kafka"),
	}
	if !k.TLS && k.SASLMechanism == "" {
		log.Warn("Kafka without TLS or SASL: anyone who reaches the brokers can submit tasks, send kills and write the status topic; " +
			"set kafka_tls_ca_file and kafka_sasl_mechanism, and confine the topics with ACLs (README, Kafka section)")
	}
	pause := time.Second
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		q, err := kafkaqueue.New(tctx, k.Brokers, copts, opt)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("Kafka answers now; starting", "kafka_brokers", k.Brokers, "attempts", attempt)
			}
			log.Info("transport: kafka", "kafka_brokers", k.Brokers, "topics", fmt.Sprintf("%+v", q.Topics()))
			return q, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn(fmt.Sprintf("Kafka is not usable yet; retrying in %s (attempt %d; stop with SIGTERM or Ctrl-C; check kafka_brokers and the topics)", pause, attempt),
			"kafka_brokers", k.Brokers, "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, redisRetryMax)
	}
}
