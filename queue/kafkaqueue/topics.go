package kafkaqueue

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicSettings are the partitions and configs a topic is created with.
type TopicSettings struct {
	Partitions int32
	Configs    map[string]string
}

// Settings lists how each topic is created (README, Kafka section):
//
//   - tasks: Partitions partitions, the broker's retention. A record stays
//     after it is consumed; the group's committed offsets say how far the
//     executors got.
//   - control: one partition (kills are few, and one partition keeps them in
//     order), kept for status_retention: an executor that was down reads
//     what it missed from its own committed position.
//   - logs: Partitions partitions, keyed by task id so one task's lines and
//     its done stay in order; kept for status_retention.
//   - status: Partitions partitions, keyed by task id, cleanup.policy=delete
//     with twice status_retention. Not compacted: compaction keeps only the
//     newest record of a key and so would erase the order that decides
//     which claim came first; time retention keeps the whole order for as
//     long as the duplicate-id protection promises.
//   - executors: one partition, compacted: only each executor's newest
//     heartbeat matters.
//   - signatures: Partitions partitions, keyed by key id and MAC,
//     cleanup.policy=delete with twice status_retention (a signature is
//     remembered for twice the window plus a minute, and the window is at
//     most half status_retention). Not compacted, for the status topic's
//     reason: the first record of a key decides.
//   - audit: one partition (records are few: a handful per task), keyed by
//     executor id, kept until it holds 1 GiB (retention.bytes) and never
//     by age: the audit trail outlives status_retention.
func (q *Queue) Settings() map[string]TopicSettings {
	ret := strconv.FormatInt(q.opt.Retention.Milliseconds(), 10)
	ret2 := strconv.FormatInt(2*q.opt.Retention.Milliseconds(), 10)
	maxMsg := strconv.Itoa(max(q.opt.MaxTaskBytes, 1<<20) + 64<<10)
	p := int32(q.opt.Partitions)
	return map[string]TopicSettings{
		q.topics.Tasks:      {p, map[string]string{"max.message.bytes": maxMsg}},
		q.topics.Control:    {1, map[string]string{"cleanup.policy": "delete", "retention.ms": ret}},
		q.topics.Logs:       {p, map[string]string{"cleanup.policy": "delete", "retention.ms": ret, "max.message.bytes": maxMsg}},
		q.topics.Status:     {p, map[string]string{"cleanup.policy": "delete", "retention.ms": ret2, "max.message.bytes": maxMsg}},
		q.topics.Executors:  {1, map[string]string{"cleanup.policy": "compact"}},
		q.topics.Signatures: {p, map[string]string{"cleanup.policy": "delete", "retention.ms": ret2}},
		q.topics.Audit:      {1, map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": strconv.Itoa(1 << 30)}},
	}
}

// setupTopics creates the missing topics (CreateTopics) or checks that they
// all exist, and checks the cleanup policy of those that do: a compacted
// status topic would break the first-claim rule, a deleting executors
// topic would forget executors.
func (q *Queue) setupTopics(ctx context.Context) error {
	settings := q.Settings()
	names := q.topics.all()
	if q.opt.CreateTopics {
		for _, t := range names {
			s := settings[t]
			cfg := map[string]*string{}
			for k, v := range s.Configs {
				cfg[k] = &v
			}
			resps, err := q.adm.CreateTopics(ctx, s.Partitions, -1, cfg, t)
			if err != nil {
				return fmt.Errorf("queue: kafka: create topic %s: %w", t, err)
			}
			res := resps[t]
			switch {
			case res.Err == nil:
				q.opt.Logger.Info("created Kafka topic", "topic", t, "partitions", s.Partitions, "configs", s.Configs)
			case errors.Is(res.Err, kerr.TopicAlreadyExists):
			default:
				return fmt.Errorf("queue: kafka: create topic %s: %w %s (create it with %s, or let the executor create it)",
					t, res.Err, res.ErrMessage, describe(s))
			}
		}
	}
	listed, err := q.adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("queue: kafka: list topics: %w", err)
	}
	var missing []string
	for _, t := range names {
		d, ok := listed[t]
		if !ok || d.Err != nil {
			missing = append(missing, t+" ("+describe(settings[t])+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("queue: kafka: missing topics: %s; create them, or set kafka_create_topics", strings.Join(missing, ", "))
	}
	cfgs, err := q.adm.DescribeTopicConfigs(ctx, q.topics.Status, q.topics.Executors, q.topics.Signatures)
	if err != nil {
		q.opt.Logger.Warn("cannot read the topics' configs to check them", "error", err)
		return nil
	}
	for _, rc := range cfgs {
		if rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "cleanup.policy" || c.Value == nil {
				continue
			}
			switch {
			case (rc.Name == q.topics.Status || rc.Name == q.topics.Signatures) && strings.Contains(*c.Value, "compact"):
				return fmt.Errorf("queue: kafka: topic %s has cleanup.policy=%s: it must be delete (compaction erases which record came first)", rc.Name, *c.Value)
			case rc.Name == q.topics.Executors && !strings.Contains(*c.Value, "compact"):
				q.opt.Logger.Warn("the executors topic is not compacted: executors that stopped long ago are forgotten after its retention", "topic", rc.Name)
			}
		}
	}
	return nil
}

func describe(s TopicSettings) string {
	keys := make([]string, 0, len(s.Configs))
	for k := range s.Configs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{fmt.Sprintf("partitions=%d", s.Partitions)}
	for _, k := range keys {
		parts = append(parts, k+"="+s.Configs[k])
	}
	return strings.Join(parts, " ")
}
