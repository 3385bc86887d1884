package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// peer is another way to run /bin/true in fresh namespaces, timed next to
// the sandbox in the same run.
type peer struct {
	name   string // the row's name for it
	flags  string // how it was invoked, for the notes
	setup  string // what the command line does not show
	cmd    func(i int) *exec.Cmd
	status string // why it has no figures ("not installed", a failure); "" when measured
	s      samples
}

// run times one start+wait. The first failure is kept as the peer's status
// and the peer is not run again: a runtime that cannot start here would
// otherwise fail the same way hundreds of times.
func (p *peer) run(i int) {
	if p.status != "" {
		return
	}
	cmd := p.cmd(i)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if line, _, ok := strings.Cut(msg, "\n"); ok {
			msg = line
		}
		p.status = fmt.Sprintf("does not start on this host: %v: %s", err, msg)
		return
	}
	if i >= 0 {
		p.s = append(p.s, d)
	}
}

// peers returns the peer runtimes, each ready to run or with a status
// saying why it is not.
func (b *bench) peers() []*peer {
	var ps []*peer
	add := func(name, bin string, prepare func(path string) (*peer, error)) {
		path, err := exec.LookPath(bin)
		if err != nil {
			ps = append(ps, &peer{name: name, status: "not installed"})
			return
		}
		p, err := prepare(path)
		if err != nil {
			p = &peer{status: "could not be set up: " + err.Error()}
		}
		p.name = name
		ps = append(ps, p)
	}

	add("unshare", "unshare", func(path string) (*peer, error) {
		args := []string{"--fork", "--pid", "--mount-proc", "--net", "--mount", "--ipc", "--uts", "/bin/true"}
		return &peer{flags: "unshare " + strings.Join(args, " "),
			cmd: func(int) *exec.Cmd { return exec.Command(path, args...) }}, nil
	})
	add("bwrap", "bwrap", func(path string) (*peer, error) {
		args := []string{"--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"}
		// On a merged-/usr system /bin and /lib are links into /usr; bwrap
		// needs them, as links, to find /bin/true and its loader.
		for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
			fi, err := os.Lstat(d)
			switch {
			case err != nil:
			case fi.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(d)
				if err != nil {
					return nil, err
				}
				args = append(args, "--symlink", target, d)
			case fi.IsDir():
				args = append(args, "--ro-bind", d, d)
			}
		}
		args = append(args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true")
		return &peer{flags: "bwrap " + strings.Join(args, " "),
			cmd: func(int) *exec.Cmd { return exec.Command(path, args...) }}, nil
	})
	bundle := ""
	var bundleErr error
	oci := func(name string) func(path string) (*peer, error) {
		return func(path string) (*peer, error) {
			if bundle == "" && bundleErr == nil {
				bundle, bundleErr = b.ociBundle(path)
			}
			if bundleErr != nil {
				return nil, bundleErr
			}
			state := filepath.Join(b.tmp, name+"-state")
			return &peer{flags: name + " --root STATE run --bundle BUNDLE ID",
				setup: "the bundle is `" + name + " spec`'s config with the terminal off, namespaces pid, net, ipc, uts and mount, and a read-only rootfs of /bin/true and its libraries",
				cmd: func(i int) *exec.Cmd {
					return exec.Command(path, "--root", state, "run", "--bundle", bundle, fmt.Sprintf("bench-%s-%d", name, i+warmup))
				}}, nil
		}
	}
	add("runc", "runc", oci("runc"))
	add("crun", "crun", oci("crun"))
	return ps
}

// ociBundle makes a minimal OCI bundle that runs /bin/true: the runtime's
// own default config with the terminal off and only the namespaces the
// sandbox uses, on a rootfs holding /bin/true and the libraries ldd names.
func (b *bench) ociBundle(runtime string) (string, error) {
	dir := filepath.Join(b.tmp, "oci-bundle")
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", err
	}
	files := []string{"/bin/true"}
	out, err := exec.Command("ldd", "/bin/true").Output()
	if err != nil {
		return "", fmt.Errorf("ldd /bin/true: %w", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		dst := filepath.Join(rootfs, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, body, 0o755); err != nil {
			return "", err
		}
	}
	spec := exec.Command(runtime, "spec")
	spec.Dir = dir
	if msg, err := spec.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s spec: %v: %s", runtime, err, bytes.TrimSpace(msg))
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", fmt.Errorf("%s spec wrote an unreadable config.json: %w", runtime, err)
	}
	proc, _ := cfg["process"].(map[string]any)
	linux, _ := cfg["linux"].(map[string]any)
	if proc == nil || linux == nil {
		return "", fmt.Errorf("%s spec wrote a config.json without process or linux", runtime)
	}
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	cfg["root"] = map[string]any{"path": "rootfs", "readonly": true}
	var ns []map[string]string
	for _, t := range []string{"pid", "network", "ipc", "uts", "mount"} {
		ns = append(ns, map[string]string{"type": t})
	}
	linux["namespaces"] = ns
	if raw, err = json.MarshalIndent(cfg, "", "\t"); err != nil {
		return "", err
	}
	return dir, os.WriteFile(path, raw, 0o644)
}
