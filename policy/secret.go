package policy

import (
	"slices"
	"strings"
)

// Masked stands in for the value of a secret variable wherever env is
// shown to people (the management page and API, the status hash the page
// reads): the name stays, so an operator sees that it is set.
const Masked = "********"

// secretWords are the parts of a name that mark it secret, matched
// case-insensitively anywhere in the name: GITHUB_TOKEN, DB_PASSWORD,
// AWS_SECRET_ACCESS_KEY, API_KEY, NPM_AUTH and DATABASE_DSN all match.
// A false positive only hides a value; a false negative shows a secret, so
// the list errs wide. Names it misses go in a rule's secret_env.
var secretWords = []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "COOKIE", "SESSION", "DSN"}

// SecretEnvName reports whether the value of variable name is to be
// masked: its name contains one of the secret words (case-insensitive), or
// it is listed (a rule's secret_env, compared exactly).
func SecretEnvName(name string, listed []string) bool {
	if slices.Contains(listed, name) {
		return true
	}
	up := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	return false
}

// MaskEnv returns env ("NAME=value" entries) with the value of every
// secret name replaced by Masked. An entry without "=" is kept as a name
// alone. It never returns a value it was not sure to be harmless.
func MaskEnv(env, listed []string) []string {
	if env == nil {
		return nil
	}
	out := make([]string, len(env))
	for i, kv := range env {
		name, _, ok := strings.Cut(kv, "=")
		if ok && SecretEnvName(name, listed) {
			kv = name + "=" + Masked
		}
		out[i] = kv
	}
	return out
}

// ShownEnv is the limits' env as people may see it: secret values masked
// (by name, and by the rule's secret_env).
func (l Limits) ShownEnv() []string { return MaskEnv(l.Env, l.SecretEnv) }

// Shown is a copy of the limits fit to show to people: env masked as
// ShownEnv does.
func (l Limits) Shown() Limits {
	l = l.clone()
	l.Env = l.ShownEnv()
	return l
}
