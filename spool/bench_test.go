package spool

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// consume drains n records from s in batches, as the publisher does.
func consume(s *Spool, n int) error {
	ctx := context.Background()
	for n > 0 {
		b, err := s.Batch(ctx, 1024, 1<<20)
		if err != nil {
			return err
		}
		n -= len(b)
		s.Ack(len(b))
	}
	return nil
}

// BenchmarkPushBatchAck measures the memory path: producers push 100-byte
// records while one consumer takes them in batches.
func BenchmarkPushBatchAck(b *testing.B) {
	for _, producers := range []int{1, 4} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			s := setup(b, Options{})
			data := bytes.Repeat([]byte("x"), 100)
			done := make(chan error, 1)
			b.ReportAllocs()
			b.ResetTimer()
			go func() { done <- consume(s, b.N) }()
			var wg sync.WaitGroup
			for p := range producers {
				n := b.N / producers
				if p == 0 {
					n += b.N % producers
				}
				wg.Go(func() {
					for range n {
						s.Push(Record{Kind: 1, Data: data}, true)
					}
				})
			}
			wg.Wait()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			if st := s.Stats(); st.Dropped != 0 || st.Queued != 0 {
				b.Fatalf("Stats = %+v", st)
			}
		})
	}
}

// BenchmarkSpill measures the disk path: rounds of records pushed while
// nobody consumes (so all but the first few KiB go to disk), then read back.
func BenchmarkSpill(b *testing.B) {
	s := setup(b, Options{MemBytes: 64 << 10})
	data := bytes.Repeat([]byte("x"), 100)
	const round = 100_000
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for left := b.N; left > 0; left -= round {
		n := min(left, round)
		for range n {
			s.Push(Record{Kind: 1, Data: data}, true)
		}
		if err := consume(s, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	st := s.Stats()
	if st.Dropped != 0 || st.Queued != 0 {
		b.Fatalf("Stats = %+v", st)
	}
	b.ReportMetric(float64(st.Spilled)/float64(b.N), "spilled/op")
}
