package policy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestSecretEnvName(t *testing.T) {
	for name, want := range map[string]bool{
		"GITHUB_TOKEN": true, "db_password": true, "AWS_SECRET_ACCESS_KEY": true, "API_KEY": true,
		"Passwd": true, "NPM_AUTH": true, "SSH_PRIVATE": true, "DATABASE_DSN": true, "GPG_PASSPHRASE": true,
		"credentials_file": true, "SESSION_ID": true, "LANG": false, "PATH": false, "MODE": false, "HOME": false,
	} {
		if got := SecretEnvName(name, nil); got != want {
			t.Errorf("SecretEnvName(%q) = %t, want %t", name, got, want)
		}
	}
	if !SecretEnvName("WEBHOOK_URL", []string{"WEBHOOK_URL"}) || SecretEnvName("webhook_url", []string{"WEBHOOK_URL"}) {
		t.Error("a listed name is secret, compared exactly")
	}
}

const secretPolicy = `
defaults {
  env        = { LANG = "C.UTF-8", GITHUB_TOKEN = "ghp_defaultsecret", HOOK = "https://u:pw@hook" }
  secret_env = ["HOOK"]
}
rule "deploy" {
  cmdline    = "deploy.sh"
  env        = { DB_PASSWORD = "hunter2", MODE = "fast", RAW = "plainsecret" }
  secret_env = ["RAW", "HOOK"]
}
rule "plain" {
  cmdline = "plain.sh"
}
`

func TestSecretEnvMasked(t *testing.T) {
	p := mustParse(t, secretPolicy)
	d := p.Decide(Request{Cmdline: "deploy.sh"})
	if !d.Allowed {
		t.Fatal(d.Reason)
	}
	// What the task gets is unchanged.
	if !slices.Contains(d.Limits.Env, "DB_PASSWORD=hunter2") || !slices.Contains(d.Limits.Env, "RAW=plainsecret") {
		t.Fatalf("env %q: the task must still get its values", d.Limits.Env)
	}
	if want := []string{"HOOK", "RAW"}; !slices.Equal(d.Limits.SecretEnv, want) {
		t.Errorf("secret_env %q, want %q (merged with the defaults', sorted, once each)", d.Limits.SecretEnv, want)
	}
	shown := d.Limits.ShownEnv()
	want := []string{"DB_PASSWORD=" + Masked, "GITHUB_TOKEN=" + Masked, "HOOK=" + Masked, "LANG=C.UTF-8", "MODE=fast", "RAW=" + Masked}
	if !slices.Equal(shown, want) {
		t.Errorf("shown env %q, want %q", shown, want)
	}
	b, _ := json.Marshal(d.Limits.Shown())
	for _, secret := range []string{"hunter2", "plainsecret", "ghp_defaultsecret", "u:pw"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("shown limits %s hold %q", b, secret)
		}
	}
	if !slices.Contains(d.Limits.Env, "DB_PASSWORD=hunter2") {
		t.Error("Shown changed the decision's own env")
	}
	// The defaults' secret_env reaches a rule that sets none.
	d = p.Decide(Request{Cmdline: "plain.sh"})
	if !slices.Equal(d.Limits.SecretEnv, []string{"HOOK"}) || !slices.Contains(d.Limits.ShownEnv(), "HOOK="+Masked) {
		t.Errorf("plain: secret_env %q, shown %q", d.Limits.SecretEnv, d.Limits.ShownEnv())
	}
	// The JSON round trip (audit records) keeps it.
	var back Limits
	b, _ = json.Marshal(d.Limits)
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.SecretEnv, d.Limits.SecretEnv) {
		t.Errorf("round trip of %s: %+v %v", b, back, err)
	}
}

func TestSecretEnvParseErrors(t *testing.T) {
	for src, want := range map[string]string{
		"rule \"a\" {\n  cmdline = \"a\"\n  secret_env = \"X\"\n}\n":        "3:16: secret_env must be a list of strings",
		"rule \"a\" {\n  cmdline = \"a\"\n  secret_env = [\"X Y\"]\n}\n":    `3:17: secret_env name "X Y" must be letters, digits and _`,
		"defaults {\n  secret_env = [1]\n}\n":                               "2:17: secret_env[0] must be a string, not number",
		"rule \"a\" {\n  cmdline = \"a\"\n  secret_env = [\"9LIVES\"]\n}\n": `secret_env name "9LIVES"`,
	} {
		_, err := Parse([]byte(src), "p.hcl")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}

func TestCheckTask(t *testing.T) {
	p := mustParse(t, secretPolicy+`
rule "signed" {
  cmdline = "signed.sh"
  args    = ["[a-z]+"]
  timeout = "1m"
  keys    = ["ci"]
}
`)
	c, err := p.CheckTask([]byte(`{"id":"1","type":"t","task":{"cmdline":"signed.sh","cmd_args":["abc"],"timeout":600},"sig":{"key":"ci","ts":1,"mac":"`+strings.Repeat("0", 64)+`"}}`), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Decision.Allowed || c.Decision.Rule != "signed" || c.Request.KeyID != "ci" || c.Decision.Limits.Timeout.Seconds() != 60 || c.Task.ID != "1" {
		t.Fatalf("%+v", c)
	}
	c, err = p.CheckTask([]byte(`{"id":"2","task":{"cmdline":"signed.sh","cmd_args":["abc"]}}`), 1<<20)
	if err != nil || c.Decision.Allowed || !strings.Contains(c.Decision.Reason, `only for keys ["ci"]`) {
		t.Fatalf("unsigned: %+v %v", c, err)
	}
	for _, raw := range []string{`{"id":`, `{"id":1,"task":{"cmdline":"a"}}`, `[]`, `{"id":"x","task":{"cmdline":"` + strings.Repeat("a", 300) + `"}}`} {
		if _, err := p.CheckTask([]byte(raw), 200); err == nil {
			t.Errorf("%.40q: no error", raw)
		}
	}
	var nilPolicy *Policy
	if c, err := nilPolicy.CheckTask([]byte(`{"id":"3","task":{"cmdline":"a"}}`), 0); err != nil || c.Decision.Allowed {
		t.Errorf("a nil policy: %+v %v", c, err)
	}
}
