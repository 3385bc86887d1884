// Package policy is the whitelist that decides which tasks may run, as whom
// and with which limits. It reads a policy file written in HCL
// (policy.hcl) and answers one question per task: which rule allows it, or
// why none does.
//
// Once a policy file is configured, nothing runs unless a rule allows it
// (default deny). Rules are tried in file order and the first rule that
// allows the task wins, as in a firewall: put narrow rules before broad ones
// for the same cmdline. Without a policy file the caller does not consult
// this package at all (the jail rules alone apply).
//
// # Example
//
//	defaults {
//	  user    = "nobody"
//	  memory  = "256MiB"
//	  cpu     = 1.0      # cores
//	  pids    = 128
//	  timeout = "30m"    # the longest a task may ask for; no timeout asked = this one
//	  network = false
//	}
//
//	rule "install" {
//	  description = "install a feature branch"
//	  cmdline = "install.sh"                   # the cmdline's words must equal this
//	  args    = ["^feature/[A-Za-z0-9._/-]+$"] # one regexp per cmd_args position
//	  user    = "root"
//	  memory  = "1GiB"
//	  network = true
//	  keys    = ["ci"]                         # only tasks signed with key "ci"
//	}
//
// # Blocks
//
//   - defaults { ... } — optional, at most one. Limits every rule inherits
//     unless it sets its own: user, group, memory, cpu, pids, timeout,
//     network, env, secret_env.
//   - rule "NAME" { ... } — any number. NAME is unique in the file, 1 to 64
//     characters of letters, digits and . _ : - starting with a letter or
//     digit; it is what audit records and refusals name.
//
// Any other block or attribute, anywhere, is an error (a misspelt
// attribute would otherwise silently loosen or tighten a rule).
//
// # Rule attributes
//
//   - cmdline (string, required): the cmdline the rule allows. Both this and
//     the task's cmdline are split into words as package jail splits them
//     (POSIX-shell-like quoting, no expansion), and the words must be equal
//     one by one: "deploy.sh  prod" and "deploy.sh 'prod'" are the same
//     cmdline, "deploy.sh prod extra" is not. It must split cleanly into at
//     least one word. Whether the named program may run at all (beneath
//     cmd_dir, trusted owner, …) is still checked by package jail.
//   - args (list of strings, optional): one regular expression (Go RE2
//     syntax) per position of the task's cmd_args. Each must match the WHOLE
//     argument — it is compiled as ^(?:RE)$ whether or not it has anchors —
//     and the number of cmd_args must equal len(args). Absent or [] means
//     the task may send no cmd_args.
//   - args_rest (string, optional, not empty): a regular expression (whole-argument,
//     like args) that every cmd_args entry beyond those in args must match;
//     with it, any number of extra trailing arguments is allowed, so
//     len(args) becomes a minimum.
//   - keys (list of strings, optional): the signing key ids that may use the
//     rule; a task must then be signed by one of them (the signature itself
//     is verified elsewhere, before Decide). Absent: any task, signed or
//     not, may use the rule. An empty list is an error (no task could use
//     the rule).
//   - description (string, optional): free text for people, shown by
//     `task-job policy check`.
//   - cmd_dir_writable (bool, optional, rules only): true lets the task
//     write cmd_dir, which the sandbox otherwise shows it read-only (it
//     always has a private work directory of its own). Every decision of
//     such a rule says so in Decision.Notes, and so in the audit log.
//   - user, group, memory, cpu, pids, timeout, network, env, secret_env: as
//     in defaults (below); a rule's own value replaces the default, except
//     env, which is merged (the rule's value wins for a name set in both),
//     and secret_env, which is merged.
//
// # Limit attributes (defaults and rules)
//
//   - user (string): the user the task runs as, a name or a numeric uid
//     ("nobody", "1000"; a number such as 1000 is accepted too). Not
//     resolved here: the executor resolves it when it starts the task, so a
//     policy can be checked on another host.
//   - group (string): the primary group, a name or numeric gid; unset means
//     the user's own group.
//   - memory (string): a size: plain bytes "1048576"; binary units "512KiB",
//     "256MiB", "1GiB", "1TiB" (powers of 1024); decimal units "500MB",
//     "1GB" (KB=10^3, MB=10^6, GB=10^9, TB=10^12), and "B". A fraction such
//     as "1.5GiB" is allowed when it comes to whole bytes; units ignore case
//     ("512mib"), as in config.json, which reads sizes with the same parser
//     (package bytesize); "M" or "G" alone are refused. A bare number
//     (memory = 256) is refused because its unit would be a guess.
//   - cpu (number): CPU cores, more than 0 and at most 1024; 0.5 is half a
//     core.
//   - pids (number): the most processes and threads the task may have at
//     once, a whole number from 1 to 4194304.
//   - timeout (string): a Go duration ("90s", "30m", "1h30m"), more than 0.
//     It is a cap, not a refusal: a task that asks for no timeout gets the
//     cap, and a task that asks for more is NOT refused but lowered to the
//     cap (Decision.Notes says so). A bare number is refused; write "3600s".
//   - network (bool): true lets the task use the host's network; false (the
//     default) gives it a network namespace with no interfaces.
//   - env (map of string to string): variables added to the task's
//     environment, e.g. env = { LANG = "C.UTF-8", MODE = "ci" }. Names are
//     letters, digits and _ not starting with a digit; values hold no NUL.
//   - secret_env (list of strings): names whose values are masked wherever
//     env is shown to people (the management page and API), on top of the
//     names that look secret (SecretEnvName: TOKEN, SECRET, PASSWORD, KEY,
//     AUTH, … anywhere in the name, ignoring case). Merged, not replaced:
//     a name the defaults list stays secret in every rule. It changes
//     nothing in what the task gets.
//
// Values are literals: variables and functions are refused. In HCL strings
// a backslash starts an escape, so the regexp \d is written "\\d", and
// "${" / "%{" start a template, written "$${" / "%%{" to mean them
// literally.
//
// # Decisions
//
// Decide returns the effective Limits: the defaults overlaid with the
// rule's settings. A zero value in Limits means "not set by the policy":
// the caller applies its own configured default (the executor's
// unprivileged user, no memory cap, …). Timeout is the task's own timeout
// lowered to the cap, the cap when the task asked for none, or the task's
// own (0 = none) when the policy sets no cap.
//
// When no rule allows a task, Decision.Reason says why in words for the
// person who sent it, starting with "policy: ". If a rule has the task's
// cmdline but refused it for another reason (keys, argument count, an
// argument's pattern), the reason names that rule and what failed; among
// several such rules it names the one that came closest (keys accepted
// beats keys refused, count accepted beats count refused, a later failing
// argument beats an earlier one), and the first in file order on a tie.
// When the keys refuse a task, its arguments are not examined, so an
// unauthorised sender learns nothing of the rule's patterns.
//
// A Policy is immutable once loaded and safe for concurrent use; reloading
// means loading a new one and swapping the pointer (keep the old one if
// Load fails).
//
// Parse and Load report every problem in the file at once, each as
// "file:line:col: message", in a *Error. Files over 1 MiB are refused.
package policy
