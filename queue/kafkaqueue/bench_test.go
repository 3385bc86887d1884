package kafkaqueue

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkLifecycle measures, on the in-process broker, one task's way
// through the transport: submit → take (dispatch), the claim (a status
// record read back, then the offset commit) and the finish (a status
// record read back, then the done). It reports p50/p99 of each.
//
//	go test ./queue/kafkaqueue -run '^$' -bench Lifecycle -benchtime 300x
func BenchmarkLifecycle(b *testing.B) {
	c := startKafka(b)
	q := open(b, c, testNames(), execID("bench"))
	ctx := context.Background()
	var dispatch, claim, fin []time.Duration
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("b", i)
		raw := []byte(fmt.Sprintf(`{"id":%q,"type":"t","tube":"","task":{"cmdline":"x.sh"}}`, id))
		t0 := time.Now()
		if err := q.prod.ProduceSync(ctx, &kgo.Record{Topic: q.topics.Tasks, Value: raw}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		d, err := q.Take(ctx)
		for d == nil && err == nil {
			d, err = q.Take(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := q.Claim(ctx, d, id); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := q.finish(ctx, finishOf(q, d, id)); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		dispatch, claim, fin = append(dispatch, t1.Sub(t0)), append(claim, t2.Sub(t1)), append(fin, t3.Sub(t2))
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"dispatch", dispatch}, {"claim", claim}, {"finish", fin}} {
		sort.Slice(m.d, func(i, j int) bool { return m.d[i] < m.d[j] })
		b.ReportMetric(float64(m.d[len(m.d)/2].Microseconds())/1000, m.name+"-p50-ms")
		b.ReportMetric(float64(m.d[len(m.d)*99/100].Microseconds())/1000, m.name+"-p99-ms")
	}
}
