// Package signature signs and verifies task submissions, so that an
// executor can tell a task a trusted client sent from one that anything
// else able to RPUSH on the queue made up, altered, or sent again.
//
// A signed task carries, at the top level of its JSON,
//
//	"sig":{"key":"web","ts":1764000000,"mac":"<64 lowercase hex digits>"}
//
// where key names a shared secret, ts is the signing time in Unix seconds
// and mac is the lowercase hex HMAC-SHA256, keyed with the secret, of the
// task's canonical form below.
//
// # Canonical form
//
// The MAC covers the decoded field values, not the JSON text, so a signer
// in any language needs no particular JSON serializer, and what is
// verified is exactly what the executor decoded and will run. The
// canonical form is the concatenation of these fields, each written as
// its length in bytes (decimal ASCII, no sign, no leading zeros), a colon,
// the bytes themselves and a newline ("\n", 0x0A):
//
//  1. the literal "task-job-sig-v1"
//  2. the key id (sig.key)
//  3. ts in decimal (sig.ts; "-" first if negative)
//  4. id
//  5. type
//  6. tube ("" when absent)
//  7. task.cmdline
//  8. task.timeout as whole milliseconds in decimal: seconds×1000 in
//     IEEE-754 double precision, rounded to the nearest integer with ties
//     away from zero (Go math.Round, JavaScript Math.round for positive
//     numbers; not Python's round, which ties to even); "0" when the
//     result is not positive or the timeout is null or absent
//  9. the number of task.cmd_args in decimal (null and absent are 0)
//  10. each of task.cmd_args, in order
//
// Strings are their UTF-8 bytes as decoded from JSON, without any Unicode
// normalization (task.Parse accepts only valid UTF-8; a lone surrogate
// escape such as "\ud800" decodes differently across languages and cannot
// be signed portably). The length prefixes make every field boundary
// unambiguous whatever bytes a field holds, so two tasks share a canonical
// form only if every field is equal (the timeout to the millisecond). The
// first field names the version: what a later version covers gets a new
// label.
//
// Worked example: key id "web" with the secret
// "hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM=" (those 44 bytes), ts
// 1764000000 and the task
//
//	{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600}}
//
// have the canonical form (Go string syntax)
//
//	"15:task-job-sig-v1\n3:web\n10:1764000000\n3:101\n4:test\n0:\n10:install.sh\n7:3600000\n1:1\n17:feature/homestead\n"
//
// and the MAC
//
//	40aa30eaeb2bfd75b2311405160ed21fcf368e23070050cb985c9f65f4f5791e
//
// which a shell reproduces with
//
//	printf '15:task-job-sig-v1\n3:web\n10:1764000000\n3:101\n4:test\n0:\n10:install.sh\n7:3600000\n1:1\n17:feature/homestead\n' |
//	  openssl dgst -sha256 -hmac 'hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM='
//
// so the submitted task is
//
//	{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600},
//	 "sig":{"key":"web","ts":1764000000,"mac":"40aa30eaeb2bfd75b2311405160ed21fcf368e23070050cb985c9f65f4f5791e"}}
//
// TestWorkedExample checks exactly this.
//
// # Keys
//
// Secrets live in files, never in config.json: LoadKeys reads a directory
// holding one file per key, named after the key id (A-Z a-z 0-9 . _ -;
// names starting with "." are skipped). The file's content is the secret
// as raw bytes, less one trailing newline; it must be 32 to 4096 bytes. No
// decoding is applied, so the recommended
//
//	umask 077; head -c 32 /dev/urandom | base64 > /etc/task-job/keys/web
//
// makes a 44-byte secret that is the base64 text itself, which the client
// is given verbatim. Like sshd, LoadKeys refuses a key directory or file
// that group or others can read or write, or that is owned by neither root
// nor the executor's user (on Unix; on Windows the ACL is not checked).
// Several key ids let clients be told apart and keys be rotated: add the
// new key, move clients over, delete the old one.
//
// # Verification
//
// Verifier.Verify accepts a task when its key is known, its MAC matches,
// its ts is within Options.Window of the executor's clock (either way;
// five minutes by default) and its (key id, MAC) was not accepted before.
// Each refusal wraps its own error — ErrUnsigned, ErrUnknownKey, ErrForged,
// ErrStale, ErrReplayed — for errors.Is.
//
// A signed task is accepted only during the 2×Window around its ts, so
// remembering accepted MACs a little longer than that (2×Window + 1m)
// refuses every replay; after it, a replay is stale anyway. The memory is
// a ReplayGuard: redisguard.Guard, shared by every executor on one Redis, is the
// one for production; MemoryGuard protects a single executor only.
//
// The executor also refuses an id it has seen within status_retention.
// That check is a second line, covering the replay memory's loss (a Redis
// flush, a restarted executor with a MemoryGuard) only if it spans the
// whole 2×Window, so the window must be at most half of status_retention
// (CheckRetention; 5m against the default 24h is far inside). A longer
// retention is not a reason for a longer window. But the window is also
// how long a signed task may wait in the queue: the executor verifies it
// when it takes it, and one that waited longer is refused as stale, so the
// window must cover clock skew plus the longest expected queueing delay.
//
// The signature proves who sent a task, not which deployment it was meant
// for: give each deployment its own keys.
package signature
