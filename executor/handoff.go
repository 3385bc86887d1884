package executor

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/taskjob/task-job/spool"
)

// A stop that cannot reach the transport (Redis down for the whole
// shutdown grace) must neither wait for ever nor lose what its tasks did:
// the messages it could not deliver are written to one file in the spool
// directory, and the next start of the same executor id delivers them
// before anything else (before it recovers its own previous run, which
// would report those tasks lost). The tasks stay in this executor's
// processing list meanwhile, so if it never comes back its peers report
// them lost: the work stays recoverable either way.
//
// Delivering late is safe because the transport fences it: a done takes
// effect only while its delivery's claim token still owns the id, and a
// line only while its task is still this executor's. So if a peer has
// reported the tasks lost meanwhile, nothing of the hand-off is published.

// handoffName is the file in the spool directory, named after the
// executor id (a spool_dir shared by mistake still keeps each id's own);
// the spool's own files have other names and the spool leaves it alone.
func handoffName(id string) string { return "undelivered-" + strings.ReplaceAll(id, "/", "_") }

// handoffMaxBytes bounds the file: output lines beyond it are left out
// (counted in the log), dones never.
const handoffMaxBytes = 64 << 20

func (e *Executor) handoffPath() string {
	if e.opt.SpoolDir == "" {
		return ""
	}
	return filepath.Join(e.opt.SpoolDir, handoffName(e.opt.ExecutorID))
}

// writeHandoff moves everything still in the outbox to the hand-off file.
// The outbox's publisher must have stopped.
func (e *Executor) writeHandoff() (n int, err error) {
	path := e.handoffPath()
	if path == "" {
		return 0, errors.New("no spool_dir to keep them in")
	}
	var recs []spool.Record
	size, skipped := 0, 0
	for e.out.sp.Len() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		batch, err := e.out.sp.Batch(ctx, batchRecords, batchBytes)
		cancel()
		if err != nil {
			if len(batch) == 0 && e.out.sp.Len() > 0 && !errors.Is(err, context.DeadlineExceeded) {
				continue // a spill file could not be read: its records are counted as dropped
			}
			break
		}
		for _, r := range batch {
			if r.Kind == kindLine && size+len(r.Data) > handoffMaxBytes {
				skipped++
				continue
			}
			size += len(r.Data)
			recs = append(recs, spool.Record{Kind: r.Kind, Data: append([]byte(nil), r.Data...)})
		}
		e.out.sp.Ack(len(batch))
	}
	if skipped > 0 {
		e.log.Warn("output lines left out of the undelivered messages kept for the next start", "lines", skipped)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	// Records of an earlier hand-off not yet delivered come first.
	if old, err := readHandoff(path); err == nil {
		recs = append(old, recs...)
	}
	for _, r := range recs {
		w.WriteByte(r.Kind)
		var hdr [binary.MaxVarintLen64]byte
		w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(r.Data)))])
		w.Write(r.Data)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return len(recs), os.Rename(tmp, path)
}

// readHandoff reads a hand-off file. A file cut short (a crash while it
// was written is excluded by the rename, but a full disk is not) yields
// the records before the cut.
func readHandoff(path string) ([]spool.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var recs []spool.Record
	for {
		kind, err := r.ReadByte()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > handoffMaxBytes+(64<<20) || (kind != kindLine && kind != kindFinish) {
			return recs, fmt.Errorf("executor: %s is corrupt after %d records", path, len(recs))
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return recs, fmt.Errorf("executor: %s is cut short after %d records", path, len(recs))
		}
		recs = append(recs, spool.Record{Kind: kind, Data: data})
	}
}

// deliverHandoff publishes what the previous run of this executor id could
// not, retrying while the transport fails, then removes the file.
func (e *Executor) deliverHandoff(ctx context.Context) error {
	path := e.handoffPath()
	if path == "" {
		return nil
	}
	recs, err := readHandoff(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.log.Error("the previous run's undelivered messages are damaged; delivering what can be read", "error", err)
	}
	published, refused := 0, 0
	for start := 0; start < len(recs); start += batchRecords {
		msgs := e.out.messages(recs[start:min(start+batchRecords, len(recs))], nil)
		applied, err := retry(ctx, e.log, "deliver the previous run's messages", func(ctx context.Context) ([]bool, error) {
			return e.opt.Broker.Publish(ctx, msgs)
		})
		if err != nil {
			return err
		}
		for i, m := range msgs {
			if m.Finish == nil {
				continue
			}
			if i < len(applied) && applied[i] {
				published++
			} else {
				refused++
			}
		}
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	if refused > 0 {
		e.log.Warn("delivered the previous run's undelivered messages; some dones were refused (a peer had reported those tasks lost)",
			"dones", published, "refused", refused)
	} else {
		e.log.Info("delivered the previous run's undelivered messages", "dones", published, "messages", len(recs))
	}
	return nil
}
