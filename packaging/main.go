// Command packaging builds task-job's release artifacts into dist/: a
// Debian package for Linux and a tarball per OS (a zip for Windows).
//
//	go run ./packaging [-out dist] [-version V] [-os linux,windows,darwin,freebsd] [-arch amd64]
//
// `make package` runs it. It builds the binaries itself (static, trimmed,
// the version, commit and build date stamped in as build.sh does), so the
// artifacts never depend on what happens to be lying in dist/. The build
// date is SOURCE_DATE_EPOCH or the commit's time, never the clock, so a
// commit builds to the same binaries every time. The .deb is made with nfpm
// as a library: no packaging tool has to be installed on the build machine.
//
// The Debian package installs:
//
//	/usr/bin/task-job, /usr/bin/task-job-init     the executor and its sandbox helper, side by side,
//	                                              where the executor looks for the helper by default
//	/etc/task-job/config.json, policy.hcl         conffiles: an upgrade keeps the operator's edits
//	/usr/lib/systemd/system/task-job.service      the unit (see files/task-job.service)
//	/var/lib/task-job/{cmd,spool,audit}           cmd_dir, the spool and the audit log
//	/usr/share/doc/task-job/                      README.md and the container examples
//	/usr/share/bash-completion/completions/task-job, /usr/share/zsh/vendor-completions/_task-job
//	                                              tab completion, found by bash and zsh without setup
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/taskjob/task-job/sandbox"
)

//go:embed files
var embedded embed.FS

// Name is the package's name, and the prefix of every artifact.
const Name = "task-job"

// Installed paths. The executor finds the helper next to itself
// (sandbox_init's default), so both go to /usr/bin.
const (
	BinDir    = "/usr/bin"
	EtcDir    = "/etc/task-job"
	StateDir  = "/var/lib/task-job"
	UnitPath  = "/usr/lib/systemd/system/task-job.service"
	DocDir    = "/usr/share/doc/task-job"
	CmdDir    = StateDir + "/cmd"
	SpoolDir  = StateDir + "/spool"
	AuditDir  = StateDir + "/audit"
	ConfigRel = "config.json"
	PolicyRel = "policy.hcl"
	// Where bash-completion and Debian's zsh look for a command's
	// completion without any setup.
	BashCompletionPath = "/usr/share/bash-completion/completions/task-job"
	ZshCompletionPath  = "/usr/share/zsh/vendor-completions/_task-job"
)

func main() {
	out := flag.String("out", "dist", "directory the artifacts are written to")
	version := flag.String("version", "", "version to stamp and name the artifacts with (default: git describe)")
	oses := flag.String("os", "linux,windows,darwin,freebsd", "comma-separated target operating systems; linux also gets the .deb")
	arch := flag.String("arch", defaultArch(), "target architecture (GOARCH)")
	flag.Parse()
	root, err := repoRoot()
	if err == nil && *version == "" {
		*version = gitVersion(root)
	}
	if err == nil {
		var made []string
		made, err = Build(Options{Root: root, Out: *out, Version: *version, OSes: strings.Split(*oses, ","), Arch: *arch})
		for _, m := range made {
			fmt.Println(m)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func defaultArch() string {
	if a := os.Getenv("GOARCH"); a != "" {
		return a
	}
	return runtime.GOARCH
}

// Options says what Build makes.
type Options struct {
	Root    string // the repository (holds go.mod, README.md, examples/)
	Out     string // where the artifacts go
	Version string // e.g. "v1.2.3" or a git describe output
	OSes    []string
	Arch    string
}

// Build compiles the binaries for every OS in opts and packages them. It
// returns the artifacts' paths.
func Build(opts Options) ([]string, error) {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "task-job-packaging-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	st, err := stampFor(opts.Root, opts.Version)
	if err != nil {
		return nil, err
	}
	var made []string
	for _, goos := range opts.OSes {
		goos = strings.TrimSpace(goos)
		bins, err := buildBinaries(opts.Root, filepath.Join(work, goos), goos, opts.Arch, st)
		if err != nil {
			return made, err
		}
		tb, err := Tarball(opts, goos, bins)
		if err != nil {
			return made, err
		}
		made = append(made, tb)
		if goos == "linux" {
			d, err := Deb(opts, bins[0], bins[1])
			if err != nil {
				return made, err
			}
			made = append(made, d)
		}
	}
	return made, nil
}

// stamp is what the binaries are stamped with: cmd/task-job's main.version,
// main.commit and main.buildDate, the variables build.sh sets too.
type stamp struct {
	Version, Commit, BuildDate string
}

func (s stamp) ldflags() string {
	return "-s -w -X main.version=" + s.Version + " -X main.commit=" + s.Commit + " -X main.buildDate=" + s.BuildDate
}

// stampFor reads root's commit and picks the build date: SOURCE_DATE_EPOCH
// when set, otherwise the commit's time, never the clock, so that building
// one commit twice makes the same binaries. Outside a git checkout (and
// without SOURCE_DATE_EPOCH) both stay empty and task-job version says
// they are unknown.
func stampFor(root, version string) (stamp, error) {
	s := stamp{Version: version}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		b, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	s.Commit = git("rev-parse", "HEAD")
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" && s.Commit != "" {
		epoch = git("log", "-1", "--format=%ct", "HEAD")
	}
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return s, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds: %w", epoch, err)
		}
		s.BuildDate = time.Unix(sec, 0).UTC().Format("2006-01-02T15:04:05Z")
	}
	return s, nil
}

// buildBinaries builds task-job (and, on Linux, its sandbox helper) for
// goos/goarch into dir, stamped with st, returning their paths, task-job
// first.
func buildBinaries(root, dir, goos, goarch string, st stamp) ([]string, error) {
	ext := ""
	if goos == "windows" {
		ext = ".exe"
	}
	targets := [][2]string{{"task-job" + ext, "./cmd/task-job"}}
	if goos == "linux" {
		targets = append(targets, [2]string{sandbox.InitName, "./cmd/task-job-init"})
	}
	var paths []string
	for _, t := range targets {
		out := filepath.Join(dir, t[0])
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", st.ldflags(), "-o", out, t[1])
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s for %s/%s: %w\n%s", t[1], goos, goarch, err, b)
		}
		paths = append(paths, out)
	}
	return paths, nil
}

// DebVersion turns a git describe output into a Debian version: digits
// first, and only the characters Debian allows. "v1.2.3-4-gabc" becomes
// "1.2.3+4.gabc"; a bare commit "9c37487" becomes "0.0.0+git9c37487".
func DebVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if m := regexp.MustCompile(`^([0-9]+(\.[0-9]+)+)(.*)$`).FindStringSubmatch(v); m != nil {
		rest := strings.NewReplacer("-", ".", "_", ".").Replace(strings.TrimPrefix(m[3], "-"))
		if rest == "" {
			return m[1]
		}
		return m[1] + "+" + clean(rest)
	}
	return "0.0.0+git" + clean(strings.NewReplacer("-", ".", "_", ".").Replace(v))
}

func clean(s string) string {
	return regexp.MustCompile(`[^A-Za-z0-9.+~]`).ReplaceAllString(s, "")
}

// Deb writes the Debian package for opts.Arch and returns its path.
func Deb(opts Options, taskJob, initBin string) (string, error) {
	stage, err := os.MkdirTemp("", "task-job-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	// nfpm reads sources from disk: stage the embedded files there.
	if err := os.CopyFS(stage, embedded); err != nil {
		return "", err
	}
	src := func(name string) string { return filepath.Join(stage, "files", name) }
	file := func(from, to string, mode os.FileMode) *files.Content {
		return &files.Content{Source: from, Destination: to, Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	dir := func(to string, mode os.FileMode) *files.Content {
		return &files.Content{Destination: to, Type: files.TypeDir,
			FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	conf := func(name string) *files.Content {
		c := file(src(name), path.Join(EtcDir, name), 0o644)
		c.Type = files.TypeConfig // listed in conffiles: dpkg keeps local edits
		return c
	}
	completions := map[string]string{"bash": BashCompletionPath, "zsh": ZshCompletionPath}
	var completionFiles files.Contents
	for shell, to := range completions {
		script, err := completionScript(opts.Root, taskJob, shell)
		if err != nil {
			return "", err
		}
		from := filepath.Join(stage, "completion."+shell)
		if err := os.WriteFile(from, script, 0o644); err != nil {
			return "", err
		}
		completionFiles = append(completionFiles, file(from, to, 0o644))
	}
	contents := files.Contents{
		file(taskJob, path.Join(BinDir, "task-job"), 0o755),
		file(initBin, path.Join(BinDir, sandbox.InitName), 0o755),
		conf(ConfigRel),
		conf(PolicyRel),
		file(src("task-job.service"), UnitPath, 0o644),
		dir(EtcDir, 0o755),
		// cmd_dir's trust chain: root-owned, writable by no one else.
		dir(StateDir, 0o755),
		dir(CmdDir, 0o755),
		dir(SpoolDir, 0o700),
		dir(AuditDir, 0o700),
		file(filepath.Join(opts.Root, "README.md"), path.Join(DocDir, "README.md"), 0o644),
	}
	contents = append(contents, completionFiles...)
	ex, err := exampleFiles(opts.Root)
	if err != nil {
		return "", err
	}
	for _, rel := range ex {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(rel, ".sh") {
			mode = 0o755
		}
		contents = append(contents, file(filepath.Join(opts.Root, "examples", rel), path.Join(DocDir, "examples", rel), mode))
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          Name,
		Arch:          opts.Arch,
		Platform:      "linux",
		Version:       DebVersion(opts.Version),
		VersionSchema: "none", // DebVersion already made it a Debian version
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "task-job maintainers <task-job@localhost>",
		Homepage:      "https://github.com/taskjob/task-job",
		Description: "secure host job runner fed by Redis\n" +
			"Takes JSON tasks from a Redis list, checks them against a policy, runs each in a\n" +
			"Linux sandbox (cgroup, namespaces, unprivileged user, seccomp), streams output\n" +
			"back, reports exactly one result per task and keeps a hash-chained audit log.",
		MTime: time.Unix(0, 0).UTC(), // reproducible: the same inputs make the same package
		Overridables: nfpm.Overridables{
			Recommends: []string{"redis-server"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: src("postinst"),
				PreRemove:   src("prerm"),
				PostRemove:  src("postrm"),
			},
		},
	})
	if err := info.Validate(); err != nil {
		return "", fmt.Errorf("package metadata: %w", err)
	}
	out := filepath.Join(opts.Out, fmt.Sprintf("%s_%s_%s.deb", Name, info.Version, opts.Arch))
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return "", fmt.Errorf("build the .deb: %w", err)
	}
	return out, f.Close()
}

// completionScript is what "task-job completion SHELL" prints, from the
// packaged binary; one built for another architecture cannot run here, and
// then the same source prints it through go run (the script does not
// depend on the architecture).
func completionScript(root, taskJob, shell string) ([]byte, error) {
	out, err := exec.Command(taskJob, "completion", shell).Output()
	if err == nil {
		return out, nil
	}
	cmd := exec.Command("go", "run", "./cmd/task-job", "completion", shell)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		return nil, fmt.Errorf("task-job completion %s: %v\n%s", shell, err, stderr.Bytes())
	}
	return out, nil
}

// exampleFiles lists examples/ (relative paths), skipping Go test files
// (they check the examples, they are not examples) and *.key files: the
// README has the operator generate examples/web.key there, a secret that
// must not end up world-readable in a package built from that checkout.
func exampleFiles(root string) ([]string, error) {
	var rel []string
	base := filepath.Join(root, "examples")
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".key") {
			return nil
		}
		r, err := filepath.Rel(base, p)
		rel = append(rel, filepath.ToSlash(r))
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return rel, err
}

// Tarball writes task-job-VERSION-OS-ARCH.tar.gz (.zip for Windows): the
// binaries, the sample config and policy, the README, and on Linux the
// systemd unit, all under one top directory.
func Tarball(opts Options, goos string, bins []string) (string, error) {
	top := fmt.Sprintf("%s-%s-%s-%s", Name, opts.Version, goos, opts.Arch)
	type entry struct {
		name string
		mode int64
		data []byte
	}
	var entries []entry
	for _, b := range bins {
		data, err := os.ReadFile(b)
		if err != nil {
			return "", err
		}
		entries = append(entries, entry{filepath.Base(b), 0o755, data})
	}
	add := func(name string, read func() ([]byte, error)) error {
		data, err := read()
		entries = append(entries, entry{name, 0o644, data})
		return err
	}
	for _, n := range []string{ConfigRel, PolicyRel} {
		if err := add(n, func() ([]byte, error) { return embedded.ReadFile("files/" + n) }); err != nil {
			return "", err
		}
	}
	if goos == "linux" {
		if err := add("task-job.service", func() ([]byte, error) { return embedded.ReadFile("files/task-job.service") }); err != nil {
			return "", err
		}
	}
	if err := add("README.md", func() ([]byte, error) { return os.ReadFile(filepath.Join(opts.Root, "README.md")) }); err != nil {
		return "", err
	}
	mtime := time.Unix(0, 0).UTC()
	var buf bytes.Buffer
	var out string
	if goos == "windows" {
		out = filepath.Join(opts.Out, top+".zip")
		zw := zip.NewWriter(&buf)
		for _, e := range entries {
			h := &zip.FileHeader{Name: top + "/" + e.name, Method: zip.Deflate, Modified: mtime}
			h.SetMode(fs.FileMode(e.mode))
			w, err := zw.CreateHeader(h)
			if err == nil {
				_, err = w.Write(e.data)
			}
			if err != nil {
				return "", err
			}
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
	} else {
		out = filepath.Join(opts.Out, top+".tar.gz")
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		if err := tw.WriteHeader(&tar.Header{Name: top + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return "", err
		}
		for _, e := range entries {
			h := &tar.Header{Name: top + "/" + e.name, Mode: e.mode, Size: int64(len(e.data)), ModTime: mtime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				return "", err
			}
			if _, err := io.Copy(tw, bytes.NewReader(e.data)); err != nil {
				return "", err
			}
		}
		if err := tw.Close(); err != nil {
			return "", err
		}
		if err := gz.Close(); err != nil {
			return "", err
		}
	}
	return out, os.WriteFile(out, buf.Bytes(), 0o644)
}

// repoRoot walks up from the working directory to the directory holding
// go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from inside the task-job repository")
		}
		dir = parent
	}
}

func gitVersion(root string) string {
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(b))
}
