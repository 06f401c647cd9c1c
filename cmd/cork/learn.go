package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/learn"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/settings"
)

// DefaultLearnOut is the file --learn writes without --learn-out, in the
// current directory.
const DefaultLearnOut = "cork-learned.yaml"

// learnHeader starts each header line of a learned file; the lines of an
// earlier run are replaced when the file is learned into again.
const learnHeader = "cork run --learn: "

// maxHeaderCommand bounds the command quoted in the header.
const maxHeaderCommand = 200

// learnFlags are --learn and --learn-out.
type learnFlags struct {
	on  *bool
	out *string
	fs  *flag.FlagSet // to see whether --ask was given
}

// askFlagNames are --ask's flags (ask.go): --learn answers the proxy itself.
var askFlagNames = []string{"ask", "ask-fd", "ask-url", "ask-timeout"}

func newLearnFlags(fs *flag.FlagSet) *learnFlags {
	return &learnFlags{
		fs: fs,
		on: fs.Bool("learn", false, "record what the command reaches: unknown hosts are tunnelled, a credential is never sent anywhere\n"+
			"new, and at exit the least-privilege policy is written to --learn-out (see docs/POLICY.md, \"Learn a policy\")"),
		out: fs.String("learn-out", "", "--learn: the policy file to write (default "+DefaultLearnOut+"); an existing file is refused\n"+
			"unless it is the --policy file, which is then rewritten with the learned entries added"),
	}
}

// learner is one --learn run: it answers the proxy's questions, records
// its audit lines and writes the policy at exit. A nil *learner does
// nothing. Safe for concurrent use (the proxy asks concurrently).
type learner struct {
	out, shown string   // the file to write: absolute, and as given
	base       []byte   // the --policy file's text when out is that file
	header     []string // the file's header comment
	rec        learn.Recorder
}

// start checks --learn's flags and returns nil when --learn is off.
func (lf *learnFlags) start(backend, policyFile string, command []string, now time.Time) (*learner, error) {
	if !*lf.on {
		if *lf.out != "" {
			return nil, usageErrorf("--learn-out: only with --learn")
		}
		return nil, nil
	}
	for _, name := range askFlagNames {
		if fl := lf.fs.Lookup(name); fl != nil && fl.Value.String() != fl.DefValue {
			return nil, usageErrorf("--learn: not with --%s (learning answers every question itself)", name)
		}
	}
	if backend == "docker" || backend == "kubernetes" {
		return nil, usageErrorf("--learn: only for --backend local, smolvm or qemu, whose proxy runs inside cork")
	}
	l := &learner{shown: cmp.Or(*lf.out, DefaultLearnOut)}
	abs, err := filepath.Abs(l.shown)
	if err != nil {
		return nil, usageErrorf("--learn-out: %v", err)
	}
	l.out = abs
	if fi, err := os.Stat(abs); err == nil {
		if !samePolicyFile(fi, policyFile) {
			return nil, usageErrorf("--learn-out %s: the file exists; remove it or name another (only the --policy file is learned into in place)", l.shown)
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			return nil, usageErrorf("--learn-out: %v", pathError(err))
		}
		l.base = dropHeader(data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, usageErrorf("--learn-out: %v", pathError(err))
	}
	cmdline := shellJoin(command)
	if len(cmdline) > maxHeaderCommand {
		cmdline = cmdline[:maxHeaderCommand] + "..."
	}
	l.header = []string{
		learnHeader + "written " + now.UTC().Format(time.RFC3339) + " for: " + cmdline,
		learnHeader + "use it with the same flags and --policy " + l.shown + ", without --learn",
	}
	return l, nil
}

// samePolicyFile reports whether fi is the --policy file.
func samePolicyFile(fi os.FileInfo, policyFile string) bool {
	if policyFile == "" {
		return false
	}
	pi, err := os.Stat(policyFile)
	return err == nil && os.SameFile(fi, pi)
}

// dropHeader removes an earlier run's header lines from the top of data.
func dropHeader(data []byte) []byte {
	for {
		line, rest, _ := strings.Cut(string(data), "\n")
		if !strings.HasPrefix(line, "# "+learnHeader) {
			return data
		}
		data = []byte(rest)
	}
}

// shellJoin quotes args for a comment line a person can read.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
		}) {
			q[i] = a
		} else {
			q[i] = quoteArg(a)
		}
	}
	return strings.Join(q, " ")
}

// quoteArg single-quotes s for a POSIX shell.
func quoteArg(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// attach makes spec's proxy ask l about what the policy refuses, and log
// to l's recorder as well as to stderr.
func (l *learner) attach(spec *launch.Spec, plan provision.Plan, opts *settings.Proxy, stderr io.Writer) error {
	if l == nil {
		return nil
	}
	pol, err := plan.Egress.Policy()
	if err != nil {
		return fmt.Errorf("policy from the plan: %w", err)
	}
	l.rec.Scoped = func(host string, port int) bool { return len(pol.Lookup(host, port).Allows) > 0 }
	log := l.logger(opts, stderr)
	spec.Proxy.Logger = &log
	spec.Proxy.Unlisted = l.unlisted
	return nil
}

// logger is the run's logger with every audit line also going to the
// recorder, whatever the log level and format asked for stderr.
func (l *learner) logger(opts *settings.Proxy, stderr io.Writer) zerolog.Logger {
	var out io.Writer = stderr
	if opts.LogFormat == "console" {
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: "15:04:05.000"}
	}
	w := zerolog.MultiLevelWriter(levelGate{w: out, min: opts.LogLevel}, &l.rec)
	return zerolog.New(w).Level(min(opts.LogLevel, zerolog.InfoLevel)).With().Timestamp().Logger()
}

// levelGate passes on the lines at or above min.
type levelGate struct {
	w   io.Writer
	min zerolog.Level
}

func (g levelGate) Write(p []byte) (int, error) { return g.w.Write(p) }

func (g levelGate) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if level < g.min || g.min == zerolog.Disabled {
		return len(p), nil
	}
	return g.w.Write(p)
}

// unlisted answers the proxy: an unknown host is let through (a blind
// tunnel, recorded), a method or path outside the policy is let through
// only when the request spends no credential — a placeholder is never
// sent anywhere new (docs/POLICY.md, "Learn a policy").
func (l *learner) unlisted(_ context.Context, q proxy.Question) proxy.Verdict {
	whole := q.Reason == proxy.ReasonNotAllowed
	l.rec.Note(q.Host, q.Port, q.Slot, whole)
	if !whole && q.Slot != "" {
		return proxy.VerdictDeny
	}
	return proxy.VerdictAllow
}

// finish writes the learned policy and the summary after the run, unless
// runErr says cork did not get to run the command. A nil learner does
// nothing.
func (l *learner) finish(runErr error, plan provision.Plan, stderr io.Writer) error {
	var te *launch.TeardownError
	if l == nil || runErr != nil && !errors.As(runErr, &te) {
		return nil
	}
	res := l.rec.Result()
	data, err := learn.Render(l.header, l.base, res.Allow)
	if err != nil {
		return fmt.Errorf("--learn-out %s: %w", l.shown, err)
	}
	if _, err := provision.ParseGenericPolicy(data); err != nil {
		return fmt.Errorf("--learn-out %s: the learned policy is not valid, not written: %w", l.shown, err)
	}
	eg := plan.Egress
	eg.Allow = append(slices.Clip(eg.Allow), res.Allow...)
	if _, err := eg.Policy(); err != nil {
		fmt.Fprintf(stderr, "cork: --learn-out %s: with this run's profiles the learned entries conflict (edit the file): %v\n", l.shown, err)
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(l.out); err == nil {
		mode = fi.Mode().Perm() // the --policy file, learned into
	}
	if err := writeFileAtomic(l.out, data, mode); err != nil {
		return fmt.Errorf("--learn-out: %w", err)
	}
	res.Summary(stderr, l.shown)
	return nil
}
