package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
)

// logFlags are the glog-style flags the original tool took. Scripts that
// start it pass them, so they keep working here; glog flags that no longer
// mean anything are accepted and ignored rather than refused.
type logFlags struct {
	logToStderr, alsoToStderr bool
	dir                       string
	verbosity                 int
	format, level             string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.logToStderr, "logtostderr", false, "log to stderr only (no files)")
	fs.BoolVar(&l.alsoToStderr, "alsologtostderr", false, "with -log_dir, log to stderr as well as to the file")
	fs.StringVar(&l.dir, "log_dir", "", "also write the log to DIR/task-job.log (without it, the log goes to stderr)")
	fs.IntVar(&l.verbosity, "v", 0, "verbosity: 1 = debug, 2 or more = trace")
	fs.StringVar(&l.format, "log_format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log_level", "info", "lowest level logged: trace, debug, info, warn, error")
	for _, ignored := range []string{"stderrthreshold", "vmodule", "log_backtrace_at"} {
		fs.String(ignored, "", "accepted for compatibility; ignored")
	}
}

// logger builds the logger; the returned closer closes the log file.
func (l *logFlags) logger(name string, stderr io.Writer) (hclog.Logger, io.Closer, error) {
	level := hclog.LevelFromString(l.level)
	if level == hclog.NoLevel {
		return nil, nil, fmt.Errorf("-log_level %q: want trace, debug, info, warn or error", l.level)
	}
	switch {
	case l.verbosity >= 2:
		level = hclog.Trace
	case l.verbosity == 1 && level > hclog.Debug:
		level = hclog.Debug
	}
	if l.format != "text" && l.format != "json" {
		return nil, nil, fmt.Errorf("-log_format %q: want text or json", l.format)
	}
	var out io.Writer = stderr
	var closer io.Closer = io.NopCloser(nil)
	if l.dir != "" && !l.logToStderr {
		if err := os.MkdirAll(l.dir, 0o750); err != nil {
			return nil, nil, fmt.Errorf("-log_dir: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(l.dir, "task-job.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("-log_dir: %w", err)
		}
		closer, out = f, f
		if l.alsoToStderr {
			out = io.MultiWriter(f, stderr)
		}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name: name, Level: level, Output: out, JSONFormat: l.format == "json",
		TimeFormat: "2006-01-02T15:04:05.000Z0700",
	}), closer, nil
}

// parseWithLog parses args into fs (which has lf registered) and builds the
// logger: the start shared by the commands that run an executor. A nil
// logger means: exit with code.
func parseWithLog(fs *flag.FlagSet, lf *logFlags, name string, args []string, stdout, stderr io.Writer) (log hclog.Logger, closer io.Closer, code int) {
	if ok, code := parseFlags(fs, name, args, stdout, stderr); !ok {
		return nil, nil, code
	}
	log, closer, err := lf.logger("task-job", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return nil, nil, exitUsage
	}
	return log, closer, 0
}
