//go:build unix

package signature

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keyDir makes a private key directory holding files name → content.
func keyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const goodSecret = "hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM="

func TestLoadKeys(t *testing.T) {
	dir := keyDir(t, map[string]string{
		"web":         goodSecret + "\n",
		"ci.runner-2": goodSecret + "\r\n",
		"raw_bytes":   "\x00\xff" + strings.Repeat("k", 30) + "\n\n", // only one newline is trimmed
		".swp":        "ignored: dotfiles are skipped",
	})
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o700); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(k.IDs(), ","); got != "ci.runner-2,raw_bytes,web" {
		t.Fatalf("IDs() = %s", got)
	}
	for id, want := range map[string]string{
		"web":         goodSecret,
		"ci.runner-2": goodSecret,
		"raw_bytes":   "\x00\xff" + strings.Repeat("k", 30) + "\n",
	} {
		if got, _ := k.secret(id); string(got) != want {
			t.Errorf("secret %s = %q, want %q", id, got, want)
		}
	}
}

// TestLoadKeysSymlink follows links, as a Kubernetes secret volume has,
// and judges the file they lead to.
func TestLoadKeysSymlink(t *testing.T) {
	dir := keyDir(t, map[string]string{".real-web": goodSecret})
	if err := os.Symlink(".real-web", filepath.Join(dir, "web")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(dir); err != nil {
		t.Fatalf("LoadKeys through a symlink: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, ".real-web"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(dir); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("LoadKeys with a symlink to a readable file = %v, want a mode error", err)
	}
}

func TestLoadKeysRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"group-readable file", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "web"), 0o640) },
			[]string{"key file", "web", "mode 0640", "chmod go="}},
		{"world-writable file", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "web"), 0o602) },
			[]string{"mode 0602"}},
		{"group-readable directory", func(t *testing.T, dir string) { chmod(t, dir, 0o750) },
			[]string{"key directory", "mode 0750"}},
		{"world-writable directory", func(t *testing.T, dir string) { chmod(t, dir, 0o703) },
			[]string{"key directory", "mode 0703"}},
		{"short secret", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "web"), strings.Repeat("s", 31)+"\n") },
			[]string{"web", "31 bytes", "minimum of 32", "head -c 32 /dev/urandom"}},
		{"empty secret", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "web"), "") },
			[]string{"web", "0 bytes"}},
		{"huge file", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "web"), strings.Repeat("s", 5000)) },
			[]string{"web", "over 4096 bytes"}},
		{"space in name", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "my key"), goodSecret) },
			[]string{`"my key"`, "not valid", "A-Z a-z 0-9 . _ -"}},
		{"editor backup", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "web~"), goodSecret) },
			[]string{`"web~"`, "not valid"}},
		{"non-ASCII name", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "wéb"), goodSecret) },
			[]string{"not valid"}},
		{"subdirectory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "old"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"old", "not a regular file"}},
		{"no keys", func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "web")) },
			[]string{"holds no keys"}},
		{"not a directory", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, "web"))
			remove(t, dir)
			write(t, dir, goodSecret)
		}, []string{"not a directory"}},
		{"missing directory", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, "web"))
			remove(t, dir)
		}, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := keyDir(t, map[string]string{"web": goodSecret})
			tt.setup(t, dir)
			_, err := LoadKeys(dir)
			if err == nil {
				t.Fatal("LoadKeys succeeded")
			}
			if !strings.HasPrefix(err.Error(), "signature: ") {
				t.Errorf("error %q does not start with \"signature: \"", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLoadKeysOwner checks files owned by another user are refused; only
// root can give a file away, so it is skipped otherwise.
func TestLoadKeysOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user")
	}
	const other = 4242
	for _, target := range []string{"file", "directory"} {
		t.Run(target, func(t *testing.T) {
			dir := keyDir(t, map[string]string{"web": goodSecret})
			p := filepath.Join(dir, "web")
			if target == "directory" {
				p = dir
			}
			if err := os.Chown(p, other, other); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeys(dir)
			if err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
				t.Fatalf("LoadKeys with the %s owned by uid %d = %v, want an owner error", target, other, err)
			}
		})
	}
}

// TestLoadKeysFIFO checks a FIFO in the directory is refused at once,
// not waited on.
func TestLoadKeysFIFO(t *testing.T) {
	dir := keyDir(t, nil)
	if err := mkfifo(filepath.Join(dir, "web")); err != nil {
		t.Skip("mkfifo:", err)
	}
	if _, err := LoadKeys(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadKeys with a FIFO = %v", err)
	}
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web")
	secret := strings.Repeat("s", 40)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeyFile(path)
	if err != nil || k.ID != "web" || string(k.Secret) != secret {
		t.Fatalf("LoadKeyFile = %+v, %v", k, err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadKeyFile(path); err == nil {
		t.Errorf("a world-readable key file was accepted")
	}
}
