package audit

import (
	"path/filepath"
	"testing"
	"time"
)

func benchRecord() Record {
	return Record{Kind: KindEnd, ID: "task-000123", Status: "succeeded", ExitCode: IntPtr(0),
		Reason: "exited with status 0", CPUMs: 12, PeakMemoryBytes: 3932160, OutputBytes: 29}
}

func reportSyncs(b *testing.B, l *Log, start time.Time) {
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if s := time.Since(start).Seconds(); s > 0 {
		b.ReportMetric(float64(l.Syncs())/s, "fsyncs/s")
		b.ReportMetric(float64(b.N)/float64(max(l.Syncs(), 1)), "records/fsync")
	}
}

// BenchmarkAppend is one writer: the cost Append adds to each step of a task.
func BenchmarkAppend(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := benchRecord()
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	reportSyncs(b, l, start)
}

// BenchmarkAppendParallel is many task goroutines appending at once.
func BenchmarkAppendParallel(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := benchRecord()
		for pb.Next() {
			if err := l.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportSyncs(b, l, start)
}

// BenchmarkAppendSyncEach is what an fsync per record would cost: the
// baseline the batching avoids.
func BenchmarkAppendSyncEach(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := benchRecord()
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	reportSyncs(b, l, start)
}
