//go:build unix

package privdir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestMake(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Symlink(real, filepath.Join(base, "link"))
	os.Mkdir(filepath.Join(base, "open"), 0o755)
	os.Chmod(filepath.Join(base, "open"), 0o777)
	os.Mkdir(filepath.Join(base, "sticky"), 0o755)
	os.Chmod(filepath.Join(base, "sticky"), 0o777|os.ModeSticky)
	os.Mkdir(filepath.Join(base, "wide"), 0o755)
	os.Mkdir(filepath.Join(base, "writable"), 0o755)
	os.Chmod(filepath.Join(base, "writable"), 0o775)
	os.WriteFile(filepath.Join(base, "file"), nil, 0o600)

	tests := []struct {
		name, path string
		unsafe     bool
	}{
		{"new, with new parents", base + "/a/b/c", false},
		{"existing, private", real, false},
		{"symlink at the end", base + "/link", true},
		{"symlink on the way", base + "/link/sub", true},
		{"a file", base + "/file", true},
		{"readable by others: tightened", base + "/wide", false},
		{"writable by others", base + "/writable", true},
		{"under a world-writable parent", base + "/open/x", true},
		{"under a sticky parent", base + "/sticky/x", false},
		{"not clean", base + "/a/../a/b", true},
		{"relative", "a/b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Make(tt.path, 0o700)
			if tt.unsafe != errors.Is(err, ErrUnsafe) || (!tt.unsafe && err != nil) {
				t.Fatalf("Make(%s) = %v, want unsafe=%v", tt.path, err, tt.unsafe)
			}
			if tt.unsafe {
				return
			}
			fi, err := os.Lstat(tt.path)
			if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("after Make: %v, %v", fi.Mode(), err)
			}
		})
	}
	// What the symlink pointed at was not touched.
	if ents, _ := os.ReadDir(real); len(ents) != 0 {
		t.Errorf("the symlink's target gained %v", ents)
	}
}

func TestMakeRefusesOthersDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root")
		}
		t.Skip("needs root to make a directory owned by someone else")
	}
	base := t.TempDir()
	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{theirs, theirs + "/sub"} {
		if err := Make(p, 0o700); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Make(%s) = %v, want a refusal: another user owns it", p, err)
		}
	}
}
