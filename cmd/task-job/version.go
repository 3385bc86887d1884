package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version, buildDate and commit are set at build time by build.sh and by
// the packaging (go run ./packaging), with -ldflags "-X main.version=…
// -X main.buildDate=… -X main.commit=…". The commit is a fallback: Go
// records it itself, except in a git worktree.
var (
	version   = "dev"
	buildDate = ""
	commit    = ""
)

// versionInfo is what "task-job version" reports. The commit and its time
// come from the build information Go records (a build inside a git
// checkout); the build date from build.sh.
type versionInfo struct {
	Version    string `json:"version"`
	Module     string `json:"module_version,omitempty"`
	Commit     string `json:"commit"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	BuildDate  string `json:"build_date,omitempty"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

func readVersion() versionInfo {
	v := versionInfo{Version: version, Commit: commit, BuildDate: buildDate, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if m := bi.Main.Version; m != "" && m != "(devel)" {
		v.Module = m
		if v.Version == "dev" {
			v.Version = m // installed with go install …@version
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job version")
	asJSON := fs.Bool("json", false, "print the version information as one JSON object")
	if ok, code := parseFlags(fs, "version", args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "version", "unexpected argument %q", fs.Arg(0))
	}
	v := readVersion()
	if *asJSON {
		b, _ := json.Marshal(v)
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	commit := v.Commit
	if v.Modified {
		commit += " (with uncommitted changes)"
	}
	if v.CommitTime != "" {
		commit += ", committed " + v.CommitTime
	}
	built := v.BuildDate
	if built == "" {
		built = "unknown (not built by build.sh)"
	}
	fmt.Fprintf(stdout, "task-job %s\ncommit:  %s\nbuilt:   %s\ngo:      %s %s\n", v.Version, commit, built, v.Go, v.Platform)
	return exitOK
}
