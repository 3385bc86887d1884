// Package audit keeps task-job's tamper-evident audit log: a hash-chained,
// append-only file of JSON lines recording every task received, the
// decision taken on it, its start, control messages and its end, plus the
// executor's own lifecycle.
//
// # Format
//
// One JSON object per line, '\n'-terminated, UTF-8. Every line starts with
// the member "seq" and ends with the members "prev" and then "hash":
//
//	{"seq":7,"time":"2026-11-24T01:02:03.456789Z","kind":"end","executor":"host-a","id":"101","status":"failed","exit_code":3,"reason":"exited with status 3","cpu_ms":12,"peak_memory_bytes":3932160,"output_bytes":29,"prev":"9f…64 hex…","hash":"3a…64 hex…"}
//
// The chain members:
//
//   - seq counts records from 1, by exactly 1, across restarts and rotated
//     files: a gap means records were removed.
//   - prev is the "hash" of the previous record (64 zeros for the very first
//     record of a log).
//   - hash is the lower-case hex SHA-256 of the record's canonical bytes.
//
// # Canonical bytes
//
// The canonical bytes of a line are the line exactly as stored (without
// its '\n') with its final member removed: the line must end with
//
//	,"hash":"<64 lower-case hex digits>"}
//
// and the canonical bytes are everything before that suffix followed by a
// single '}'. A verifier in any language therefore needs no JSON
// re-encoding: cut the last 75 bytes, append '}', SHA-256, compare with the
// 64 hex digits that were cut. Because prev is inside the canonical bytes,
// each hash covers the whole history before it.
//
// # What verification proves, and what it does not
//
// Verify catches an edited line (its own hash no longer matches, including
// on the very last line), a deleted line (seq gap and prev mismatch),
// reordered lines, a truncated tail (half a line) and a broken link between
// rotated files. It cannot, on its own, catch someone with write access who
// rewrites the tail and recomputes every hash from there on, nor one who
// deletes the newest records or the whole log: the chain is self-consistent
// after such a rewrite. The Redis stream copy made by Mirror is what catches
// those: Verify compares every local line with the stream's
// copy of the same seq. The stream lives on a Redis other clients reach, so
// give the executor a Redis ACL user that may XADD to it and keep others
// from deleting it.
//
// # Durability
//
// Append returns once the line has been handed to the kernel with write(2):
// if the process dies, nothing appended is lost. fsync runs in batches from
// a background goroutine (every Options.SyncInterval when something was
// written, or sooner once Options.SyncEvery records are pending), so a host
// power loss can lose up to the last SyncInterval of records; Sync forces
// one and Close syncs. A torn last line left by a power loss is terminated
// at the next Open and followed by an "executor" record with event
// "recovered" that names it; Verify reports such a tear as a warning, while
// a torn line that nothing acknowledges is a break.
//
// # Failing closed
//
// When a write or fsync fails (disk full, EIO, the file removed or
// replaced), the Log becomes failed: Append returns the error, and keeps
// returning it, until Healthy or Reopen gets the file writable again; the
// first record written after that is an "executor" record with event
// "recovered" describing the gap. The executor must not start tasks while
// Append fails.
//
// # Rotation
//
// With Options.MaxBytes set, a file grown past it is renamed to
// "<name>.<first seq>-<last seq>.<UTC time>" (seq zero-padded to 20 digits so
// names sort by seq) and a new file is started whose first record is a
// "rotate" record naming the previous file and chaining on from its last
// record. Verify and Read walk all files of the chain in order. External
// rotation that copies and truncates (logrotate copytruncate) breaks the
// chain and loses records: use the built-in rotation only.
package audit
