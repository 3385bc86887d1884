package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// modules are the virtio and 9p modules the init loads, in dependency order
// (the init gets no modules.dep). Only the 9p results mount needs them.
var modules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"9pnet", "9pnet_virtio", "netfs", "fscache", "9p",
}

// deps finds or fetches what the VM needs, keeping downloads in cacheDir.
type deps struct {
	cacheDir string
	updated  bool // apt-get update ran in this process
	log      func(format string, a ...any)
}

// kernel is an extracted Debian kernel.
type kernel struct {
	Release string
	BzImage string
	Vmlinux string // "" when it could not be extracted
	Modules []string
}

func (d *deps) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// aptUpdate runs apt-get update once: a fresh CI machine has no package
// lists, and an old list can name packages the mirror no longer has.
func (d *deps) aptUpdate() error {
	if d.updated {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("apt-get update needs root")
	}
	d.log("apt-get update")
	_, err := d.run("apt-get", "update", "-qq")
	d.updated = err == nil
	return err
}

// withUpdate retries f once after apt-get update.
func (d *deps) withUpdate(f func() error) error {
	err := f()
	if err == nil || d.updated {
		return err
	}
	if uerr := d.aptUpdate(); uerr != nil {
		return fmt.Errorf("%w (and %v)", err, uerr)
	}
	return f()
}

// qemu returns the QEMU binary, installing qemu-system-x86 when it is missing.
func (d *deps) qemu() (string, error) {
	const bin = "qemu-system-x86_64"
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s is missing: apt-get install qemu-system-x86 (or run as root)", bin)
	}
	d.log("installing qemu-system-x86")
	err := d.withUpdate(func() error {
		_, err := d.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86")
		return err
	})
	if err != nil {
		return "", err
	}
	return exec.LookPath(bin)
}

// tool makes sure a command exists, installing pkg when it does not.
func (d *deps) tool(name, pkg string) error {
	if _, err := exec.LookPath(name); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is missing: apt-get install %s", name, pkg)
	}
	d.log("installing %s", pkg)
	return d.withUpdate(func() error {
		_, err := d.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg)
		return err
	})
}

// download fetches pkg's .deb into dir with apt-get download (no root and
// nothing installed) unless a copy is already there, and returns its path.
func (d *deps) download(dir, pkg string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb")); len(m) > 0 {
		sort.Strings(m)
		return m[len(m)-1], nil
	}
	d.log("apt-get download %s", pkg)
	err := d.withUpdate(func() error {
		cmd := exec.Command("apt-get", "download", "-qq", pkg)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, bytes.TrimSpace(out))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) == 0 {
		return "", fmt.Errorf("apt-get download %s left no .deb in %s", pkg, dir)
	}
	return m[0], nil
}

var kernelDep = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-amd64)\b`)

// kernelPackage names the concrete kernel package linux-image-amd64 points
// at, e.g. linux-image-6.1.0-56-amd64. The -cloud flavour lacks 9p.
func (d *deps) kernelPackage() (string, error) {
	var name string
	err := d.withUpdate(func() error {
		out, err := d.run("apt-cache", "depends", "linux-image-amd64")
		if m := kernelDep.FindSubmatch(out); m != nil {
			name = string(m[1])
			return nil
		}
		if err == nil {
			err = fmt.Errorf("apt-cache depends linux-image-amd64 names no kernel: %q", out)
		}
		return err
	})
	return name, err
}

// kernel returns the cached kernel, fetching and extracting it on first use.
// Only the image and the few modules the init loads are kept (the package
// unpacks to some 400 MB).
func (d *deps) kernel(noVmlinux bool) (*kernel, error) {
	pkg, err := d.kernelPackage()
	if err != nil {
		// Offline with a cache: use whichever kernel is there.
		if m, _ := filepath.Glob(filepath.Join(d.cacheDir, "linux-image-*", "release")); len(m) > 0 {
			sort.Strings(m)
			pkg = filepath.Base(filepath.Dir(m[len(m)-1]))
			d.log("%v; using the cached %s", err, pkg)
		} else {
			return nil, err
		}
	}
	dir := filepath.Join(d.cacheDir, pkg)
	if _, err := os.Stat(filepath.Join(dir, "release")); err != nil {
		if err := d.prepareKernel(pkg, dir); err != nil {
			return nil, err
		}
	}
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, err
	}
	k := &kernel{Release: strings.TrimSpace(string(rel)), BzImage: filepath.Join(dir, "vmlinuz")}
	for _, m := range modules {
		p := filepath.Join(dir, "modules", m+".ko")
		if _, err := os.Stat(p); err == nil {
			k.Modules = append(k.Modules, p)
		}
	}
	if noVmlinux {
		return k, nil
	}
	vmlinux := filepath.Join(dir, "vmlinux")
	if _, err := os.Stat(vmlinux); err != nil {
		if err := d.extractVmlinux(k.BzImage, vmlinux); err != nil {
			d.log("booting the bzImage: cannot extract vmlinux: %v", err)
			return k, nil
		}
	}
	k.Vmlinux = vmlinux
	return k, nil
}

func (d *deps) extractVmlinux(bzImage, dst string) error {
	bz, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	// Install the decompressor the payload needs, if any is missing.
	if len(bz) > 0x250 {
		_ = d.tool("xz", "xz-utils")
	}
	elf, err := extractVmlinux(bz)
	if err != nil {
		return err
	}
	return writeAtomic(dst, elf, 0o644)
}

func (d *deps) prepareKernel(pkg, dir string) error {
	debDir := filepath.Join(d.cacheDir, "debs")
	deb, err := d.download(debDir, pkg)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(d.cacheDir, "extract-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	d.log("extracting %s", filepath.Base(deb))
	if _, err := d.run("dpkg-deb", "-x", deb, filepath.Join(tmp, "x")); err != nil {
		return err
	}
	out := filepath.Join(tmp, "out")
	if err := os.MkdirAll(filepath.Join(out, "modules"), 0o755); err != nil {
		return err
	}
	bz, _ := filepath.Glob(filepath.Join(tmp, "x", "boot", "vmlinuz-*"))
	if len(bz) != 1 {
		return fmt.Errorf("%s holds %d kernels (%v)", deb, len(bz), bz)
	}
	release := strings.TrimPrefix(filepath.Base(bz[0]), "vmlinuz-")
	if err := os.Rename(bz[0], filepath.Join(out, "vmlinuz")); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range modules {
		want[m] = true
	}
	for _, root := range []string{"lib", "usr/lib"} {
		base := filepath.Join(tmp, "x", root, "modules", release, "kernel")
		_ = filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			name := e.Name()
			i := strings.Index(name, ".ko")
			if i < 0 || !want[strings.ReplaceAll(name[:i], "-", "_")] {
				return nil
			}
			b, err := decompressModule(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(out, "modules", strings.ReplaceAll(name[:i], "-", "_")+".ko"), b, 0o644)
		})
	}
	if err := os.WriteFile(filepath.Join(out, "release"), []byte(release+"\n"), 0o644); err != nil {
		return err
	}
	_ = os.RemoveAll(dir) // a half-made one from an interrupted run
	if err := os.Rename(out, dir); err != nil {
		return err
	}
	// A newer kernel replaces older ones in the cache.
	old, _ := filepath.Glob(filepath.Join(d.cacheDir, "linux-image-*"))
	for _, o := range old {
		if o != dir {
			_ = os.RemoveAll(o)
		}
	}
	_ = os.Remove(deb)
	return nil
}

// busybox returns a static busybox and its applet names. It gives the VM
// /bin/sh and the usual commands as one statically linked file, so it runs
// the same on every machine and inside any chroot or pivot_root a sandbox
// test sets up with nothing but that file, where the host's dash and
// coreutils would need their shared libraries copied in too.
func (d *deps) busybox() (string, []string, error) {
	dir := filepath.Join(d.cacheDir, "busybox")
	bin := filepath.Join(dir, "busybox")
	if _, err := os.Stat(bin); err != nil {
		deb, err := d.download(filepath.Join(d.cacheDir, "debs"), "busybox-static")
		if err != nil {
			return "", nil, err
		}
		tmp, err := os.MkdirTemp(d.cacheDir, "extract-")
		if err != nil {
			return "", nil, err
		}
		defer os.RemoveAll(tmp)
		if _, err := d.run("dpkg-deb", "-x", deb, tmp); err != nil {
			return "", nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
		if err := os.Rename(filepath.Join(tmp, "bin", "busybox"), bin); err != nil {
			return "", nil, err
		}
		_ = os.Remove(deb)
	}
	// It is static, so the host can ask it for its applet list.
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return "", nil, fmt.Errorf("%s --list: %w", bin, err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if a := strings.TrimSpace(sc.Text()); a != "" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	return bin, applets, nil
}

func writeAtomic(dst string, b []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp%d", dst, os.Getpid())
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
