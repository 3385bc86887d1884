package history

import (
	"testing"
	"time"
)

// TestKafkaHistory runs random histories over the Kafka transport, on an
// in-process broker (kafkabroker.go), for its share of -duration, or the
// one history of -seed. The plans have no tubes and no fleet (a tube
// routes nothing over Kafka), and no network faults (cut, delay,
// partition: a Kafka client reaches the broker at its advertised address,
// past any proxy); the "redis" class restarts the broker with its data.
func TestKafkaHistory(t *testing.T) {
	d := kafkaShare(*flagDuration)
	if d <= 0 && *flagSeed == 0 {
		t.Skip("-kafka=0: no share of -duration for Kafka histories")
	}
	p := params(t, *flagFaults)
	p.Kafka = true
	for f := range p.Faults {
		if kafkaless[f] || fleetOnly[f] {
			delete(p.Faults, f)
		}
	}
	runHistories(t, "Kafka history checker", p, d)
}

// kafkaShare is the Kafka histories' part of d, out of the part that
// TestHistory would have had.
func kafkaShare(d time.Duration) time.Duration {
	return time.Duration(float64(d) * min(max(*flagKafka, 0), 1-min(max(*flagFleet, 0), 1)))
}
