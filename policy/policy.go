package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/taskjob/task-job/jail"
)

// Limits is what a task runs with. A zero field means "not set by the
// policy": the caller applies its own configured default.
type Limits struct {
	User, Group string
	MemoryBytes int64
	CPUCores    float64
	Pids        int64
	// Timeout is, in a Decision, the task's effective timeout (0 = none);
	// in the defaults or a rule, the cap.
	Timeout time.Duration
	Network bool
	// Env holds "NAME=value" entries, sorted by name, one per name.
	Env []string
	// CmdDirWritable (a rule's cmd_dir_writable) lets the task write
	// cmd_dir, which the sandbox otherwise shows it read-only.
	CmdDirWritable bool
	// SecretEnv names the variables (secret_env, of the defaults and the
	// rule, sorted) whose values are masked wherever env is shown, on top
	// of the names that look secret (see SecretEnvName). It changes
	// nothing in what the task gets.
	SecretEnv []string
}

// limitsJSON is the wire form of Limits: the timeout in seconds (what
// tasks use) rather than nanoseconds.
type limitsJSON struct {
	User           string   `json:"user,omitempty"`
	Group          string   `json:"group,omitempty"`
	MemoryBytes    int64    `json:"memory_bytes,omitempty"`
	CPUCores       float64  `json:"cpu_cores,omitempty"`
	Pids           int64    `json:"pids,omitempty"`
	TimeoutSeconds float64  `json:"timeout_seconds,omitempty"`
	Network        bool     `json:"network"`
	Env            []string `json:"env,omitempty"`
	CmdDirWritable bool     `json:"cmd_dir_writable,omitempty"`
	SecretEnv      []string `json:"secret_env,omitempty"`
}

// MarshalJSON writes the limits with snake_case names and the timeout in seconds.
func (l Limits) MarshalJSON() ([]byte, error) {
	return json.Marshal(limitsJSON{l.User, l.Group, l.MemoryBytes, l.CPUCores, l.Pids, l.Timeout.Seconds(), l.Network, l.Env, l.CmdDirWritable, l.SecretEnv})
}

// UnmarshalJSON reads what MarshalJSON writes (e.g. from an audit record).
func (l *Limits) UnmarshalJSON(b []byte) error {
	var j limitsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = Limits{j.User, j.Group, j.MemoryBytes, j.CPUCores, j.Pids, time.Duration(j.TimeoutSeconds * float64(time.Second)), j.Network, j.Env, j.CmdDirWritable, j.SecretEnv}
	return nil
}

func (l Limits) clone() Limits {
	l.Env = slices.Clone(l.Env)
	l.SecretEnv = slices.Clone(l.SecretEnv)
	return l
}

// Request is what Decide needs to know about a task.
type Request struct {
	Cmdline string
	Args    []string
	// KeyID is the id of the key the task was signed with, "" when
	// unsigned. The caller verifies the signature first.
	KeyID string
	// Timeout is what the task asked for; 0 (or less) = none.
	Timeout time.Duration
}

// Decision is the policy's answer for one task.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Rule names the rule that allows the task; "" when refused.
	Rule string `json:"rule,omitempty"`
	// Reason explains a refusal to people, starting with "policy: ".
	Reason string `json:"reason,omitempty"`
	// Limits are the effective limits of an allowed task: defaults
	// overlaid with the rule, timeout capped.
	Limits Limits `json:"limits"`
	// Notes tell what the policy changed in an allowed task, e.g. a
	// timeout lowered to the cap.
	Notes []string `json:"notes,omitempty"`
}

// RuleInfo describes one rule, for listings and `policy check`.
type RuleInfo struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Cmdline     string   `json:"cmdline"`
	Args        []string `json:"args,omitempty"`      // the patterns as written
	ArgsRest    string   `json:"args_rest,omitempty"` // as written; "" = no extra args
	Keys        []string `json:"keys,omitempty"`      // nil = any task, signed or not
	Limits      Limits   `json:"limits"`              // defaults overlaid with the rule; Timeout is the cap
	Line        int      `json:"line"`                // where the rule starts in the file
}

// Policy is a loaded policy file. It is immutable and safe for concurrent use.
type Policy struct {
	file     string
	defaults Limits
	rules    []rule
	// byWords indexes rules by their cmdline words (joined with NUL, which
	// no word can hold), in file order, so that Decide does not scan rules
	// for other programs.
	byWords map[string][]int
}

type rule struct {
	name, desc, cmdline string
	words               []string
	args                []*regexp.Regexp
	argSrc              []string
	rest                *regexp.Regexp
	restSrc             string
	keys                []string // nil = anyone
	limits              Limits   // merged with the defaults; Timeout is the cap
	capFrom             string   // "rule's" or "defaults'", for notes
	line                int
	cmdDirWritable      bool
}

// Rules returns the number of rules.
func (p *Policy) Rules() int { return len(p.rules) }

// File returns the file name the policy was parsed from.
func (p *Policy) File() string { return p.file }

// Defaults returns the defaults block's limits (zero values where unset).
func (p *Policy) Defaults() Limits { return p.defaults.clone() }

// RuleList describes every rule in file order.
func (p *Policy) RuleList() []RuleInfo {
	out := make([]RuleInfo, len(p.rules))
	for i := range p.rules {
		out[i] = p.rules[i].info()
	}
	return out
}

// Rule describes the rule called name.
func (p *Policy) Rule(name string) (RuleInfo, bool) {
	for i := range p.rules {
		if p.rules[i].name == name {
			return p.rules[i].info(), true
		}
	}
	return RuleInfo{}, false
}

func (r *rule) info() RuleInfo {
	return RuleInfo{
		Name: r.name, Description: r.desc, Cmdline: r.cmdline,
		Args: slices.Clone(r.argSrc), ArgsRest: r.restSrc, Keys: slices.Clone(r.keys),
		Limits: r.limits.clone(), Line: r.line,
	}
}

func wordsKey(words []string) string { return strings.Join(words, "\x00") }

// Decide says whether the policy allows r, under which rule and with which
// limits. The first rule in file order that allows it wins. A nil Policy
// refuses everything: a caller that meant to run without a policy must not
// ask one.
func (p *Policy) Decide(r Request) Decision {
	if p == nil {
		return Decision{Reason: "policy: no policy is loaded, so nothing is allowed"}
	}
	words, err := jail.Split(r.Cmdline)
	if err != nil {
		why := err.Error()
		var re *jail.RefusedError
		if errors.As(err, &re) {
			why = re.Reason
		}
		return Decision{Reason: fmt.Sprintf("policy: no rule allows cmdline %s: %s", quote(r.Cmdline), why)}
	}
	cands := p.byWords[wordsKey(words)]
	if len(cands) == 0 {
		return Decision{Reason: fmt.Sprintf("policy: no rule allows cmdline %s", quote(r.Cmdline))}
	}
	best, bestScore := "", -1
	for _, i := range cands {
		ru := &p.rules[i]
		why, score := ru.refuses(r)
		if why == "" {
			return ru.allow(r)
		}
		if score > bestScore {
			best, bestScore = why, score
		}
	}
	return Decision{Reason: best}
}

// refuses returns why the rule refuses r ("" if it allows it), and how far
// r got through the rule's checks, so that Decide can name the closest rule.
func (ru *rule) refuses(r Request) (string, int) {
	if ru.keys != nil && !slices.Contains(ru.keys, r.KeyID) {
		signed := "the task is unsigned"
		if r.KeyID != "" {
			signed = "the task is signed by " + quote(r.KeyID)
		}
		return fmt.Sprintf("policy: rule %q is only for keys %s, %s", ru.name, quoteList(ru.keys), signed), 0
	}
	n := len(r.Args)
	switch {
	case ru.rest == nil && n != len(ru.args):
		if len(ru.args) == 0 {
			return fmt.Sprintf("policy: rule %q allows no arguments, the task has %d", ru.name, n), 1
		}
		return fmt.Sprintf("policy: rule %q allows %s, the task has %d", ru.name, plural(len(ru.args), "argument"), n), 1
	case ru.rest != nil && n < len(ru.args):
		return fmt.Sprintf("policy: rule %q needs at least %s, the task has %d", ru.name, plural(len(ru.args), "argument"), n), 1
	}
	for i, a := range r.Args {
		if i < len(ru.args) {
			if !ru.args[i].MatchString(a) {
				return fmt.Sprintf("policy: rule %q refuses argument %d %s: it must match %s", ru.name, i+1, quote(a), ru.argSrc[i]), 2 + i
			}
		} else if !ru.rest.MatchString(a) {
			return fmt.Sprintf("policy: rule %q refuses argument %d %s: it must match %s (args_rest)", ru.name, i+1, quote(a), ru.restSrc), 2 + i
		}
	}
	return "", 0
}

func (ru *rule) allow(r Request) Decision {
	d := Decision{Allowed: true, Rule: ru.name, Limits: ru.limits.clone()}
	if ru.limits.CmdDirWritable {
		// Said in every decision, so the audit log records it.
		d.Notes = append(d.Notes, fmt.Sprintf("cmd_dir is writable for this task: rule %q sets cmd_dir_writable = true", ru.name))
	}
	asked, limit := r.Timeout, ru.limits.Timeout
	if asked < 0 {
		asked = 0
	}
	switch {
	case limit == 0:
		d.Limits.Timeout = asked
	case asked == 0:
		d.Notes = append(d.Notes, fmt.Sprintf("no timeout asked: the %s cap %s applies", ru.capFrom, formatDuration(limit)))
	case asked > limit:
		d.Notes = append(d.Notes, fmt.Sprintf("timeout %s lowered to the %s cap %s", formatDuration(asked), ru.capFrom, formatDuration(limit)))
	default:
		d.Limits.Timeout = asked
	}
	return d
}

// quote quotes s for a message, cut short: an argument can be a megabyte.
func quote(s string) string {
	const max = 120
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
