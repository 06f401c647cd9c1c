package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cork-sh/cork/launch/confine"
)

// The startup phase measures what `cork run --backend local` costs before
// the command runs: "to first instruction" (the command is mark, which
// writes the wall clock first thing) and "whole run" (until the process
// the benchmark started has exited), for the command run directly, under
// `cork run --no-isolate` and in the default confined sandbox. Every
// variant gets the same fixed environment and command; rounds interleave
// the variants, rotating their order.

// startupPath is the PATH every variant gets.
const startupPath = "/usr/local/bin:/usr/bin:/bin"

// startupVariants are the ways of starting the command, in report order.
var startupVariants = []string{"direct", "unconfined", "confined"}

// startupSample is one run of one variant in one round.
type startupSample struct {
	first     time.Duration // start → mark's first instruction
	whole     time.Duration // start → exit, with mark
	wholeTrue time.Duration // start → exit, with /bin/true
}

// sandboxSample is one confined start done in the benchmark process with
// package confine, without cork's proxy: where the sandbox's time goes.
type sandboxSample struct {
	plan  time.Duration // confine.New: the view, the hard-link scan
	start time.Duration // Sandbox.Start: namespaces, mounts, relay, restrictions, until the command's exec
	exec  time.Duration // the exec → mark's first instruction
	exit  time.Duration // mark's first instruction → init waited for
	total time.Duration
}

// startupEnv is what the phase's runs share.
type startupEnv struct {
	dir    string // scratch directory, removed by close
	cork   string // the cork binary
	mark   string // the marker binary
	trueP  string // /bin/true or where true is
	env    []string
	cred   *syscall.Credential // run as another user (-startup-as), or nil
	as     string              // that user's name, or "" for the benchmark's own
	layers string              // the confined run's "sandbox ready (...)" words
}

func (s *startupEnv) close() { os.RemoveAll(s.dir) }

// newStartupEnv builds cork and mark into a scratch directory that the
// user of -startup-as can read, and makes that user's HOME.
func newStartupEnv(o options) (*startupEnv, error) {
	dir, err := os.MkdirTemp("", "cork-bench-startup-")
	if err != nil {
		return nil, err
	}
	s := &startupEnv{dir: dir}
	fail := func(err error) (*startupEnv, error) {
		s.close()
		return nil, err
	}
	// mark lives in a directory of its own: the sandbox shows the
	// directory of a command in /tmp (read-only), and nothing else of it.
	bin := filepath.Join(dir, "bin")
	home := filepath.Join(dir, "home")
	for _, d := range []string{bin, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	s.cork = o.corkBin
	if s.cork == "" {
		logf("building cork and the start marker into %s", bin)
		if s.cork, err = buildCork(root, bin); err != nil {
			return fail(err)
		}
	}
	s.mark = filepath.Join(bin, "mark")
	build := exec.Command("go", "build", "-o", s.mark, "./cmd/corkbench/mark")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fail(fmt.Errorf("go build ./cmd/corkbench/mark: %w", err))
	}
	if s.trueP, err = exec.LookPath("true"); err != nil || !filepath.IsAbs(s.trueP) {
		return fail(fmt.Errorf("true: not on PATH: %v", err))
	}
	if o.startupAs != "" {
		if s.cred, err = credentialOf(o.startupAs); err != nil {
			return fail(err)
		}
		s.as = o.startupAs
		if err := os.Chown(home, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fail(err)
		}
	}
	s.env = []string{"PATH=" + startupPath, "HOME=" + home, "STARTUP_VAR=bench-not-a-secret"}
	if s.as != "" {
		s.env = append(s.env, "USER="+s.as, "LOGNAME="+s.as)
	}
	return s, nil
}

// credentialOf is the uid and primary gid of the named user, for a
// benchmark running as root.
func credentialOf(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("-startup-as %s: the benchmark must run as root to start cork as another user", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("-startup-as: %w", err)
	}
	uid, errU := strconv.Atoi(u.Uid)
	gid, errG := strconv.Atoi(u.Gid)
	if errU != nil || errG != nil {
		return nil, fmt.Errorf("-startup-as %s: uid %q gid %q", name, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// argv is the command line of variant v running command.
func (s *startupEnv) argv(v, command string) []string {
	run := []string{s.cork, "run", "--backend", "local", "--inject", "api.example.com=STARTUP_VAR"}
	switch v {
	case "unconfined":
		return append(run, "--no-isolate", "--", command)
	case "confined":
		return append(run, "--", command)
	}
	return []string{command}
}

// runOnce runs argv to its end and returns the time from just before the
// start to mark's timestamp (when withMark) and to the exit.
func (s *startupEnv) runOnce(argv []string, withMark bool) (first, whole time.Duration, stderr string, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	t0 := time.Now()
	err = cmd.Run()
	whole = time.Since(t0)
	if err != nil {
		return 0, 0, errb.String(), fmt.Errorf("%s: %w; stderr:\n%s", strings.Join(argv, " "), err, tail(errb.String(), 20))
	}
	if withMark {
		ns, perr := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
		if perr != nil {
			return 0, 0, errb.String(), fmt.Errorf("%s: stdout %q is not a timestamp", strings.Join(argv, " "), out.String())
		}
		first = time.Unix(0, ns).Sub(t0)
	}
	return first, whole, errb.String(), nil
}

// sample runs variant v once with mark and once with true.
func (s *startupEnv) sample(v string) (startupSample, error) {
	var r startupSample
	var err error
	var stderr string
	if r.first, r.whole, stderr, err = s.runOnce(s.argv(v, s.mark), true); err != nil {
		return r, err
	}
	if v == "confined" && s.layers == "" {
		s.layers = readyLine(stderr)
	}
	_, r.wholeTrue, _, err = s.runOnce(s.argv(v, s.trueP), false)
	return r, err
}

// readyLine is the words in brackets of cork's "sandbox ready (...)"
// progress line.
func readyLine(stderr string) string {
	_, after, ok := strings.Cut(stderr, "sandbox ready (")
	if !ok {
		return ""
	}
	words, _, _ := strings.Cut(after, ")")
	return words
}

// sandboxAlone starts mark in a confined sandbox from this process (no
// cork, no proxy: the relay's socket is never dialled) and times each
// step.
func (s *startupEnv) sandboxAlone(sockDir, sbHome string) (sandboxSample, error) {
	var r sandboxSample
	spec := &confine.Spec{
		Argv: []string{s.mark},
		Env:  []string{"PATH=" + startupPath, "HOME=" + sbHome},
		Dir:  sbHome,
		View: confine.View{
			Homes:       []string{filepath.Join(s.dir, "home")},
			SandboxHome: sbHome,
			Path:        filepath.SplitList(startupPath),
			Sockets:     []string{sockDir},
		},
		SocketDir: sockDir, SocketName: "proxy.sock", Port: 3128,
	}
	if h, err := os.UserHomeDir(); err == nil {
		spec.View.Homes = append(spec.View.Homes, h)
	}
	t0 := time.Now()
	sb, err := confine.New(spec)
	if err != nil {
		return r, fmt.Errorf("confine.New: %w", err)
	}
	defer sb.Close()
	var out, errb bytes.Buffer
	sb.Cmd.Stdout, sb.Cmd.Stderr = &out, &errb
	t1 := time.Now()
	if err := sb.Start(context.Background()); err != nil {
		if sb.Cmd.Process != nil {
			sb.Cmd.Process.Kill()
			sb.Cmd.Wait()
		}
		return r, fmt.Errorf("confine Start: %w", err)
	}
	t2 := time.Now()
	if err := sb.Cmd.Wait(); err != nil {
		return r, fmt.Errorf("sandboxed mark: %w; stderr:\n%s", err, tail(errb.String(), 20))
	}
	t4 := time.Now()
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		return r, fmt.Errorf("sandboxed mark: stdout %q is not a timestamp", out.String())
	}
	t3 := time.Unix(0, ns)
	r.plan, r.start, r.exec, r.exit, r.total = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t4.Sub(t0)
	return r, nil
}

// startupReport is the phase's figures.
type startupReport struct {
	started  time.Time
	elapsed  time.Duration
	machine  string
	rounds   int
	as       string
	layers   string
	samples  map[string][]startupSample
	version  []time.Duration // `cork version`, whole run: one start of the cork binary
	sandbox  []sandboxSample
	noAlone  string // why there is no sandbox-alone breakdown
	uid, gid int
}

// runStartup runs the phase and writes its report to out.
func runStartup(o options, out io.Writer) error {
	t0 := time.Now()
	if !confine.Supported {
		return errors.New("startup: the local sandbox needs Linux")
	}
	s, err := newStartupEnv(o)
	if err != nil {
		return err
	}
	defer s.close()
	rep := &startupReport{started: t0, machine: machineInfo(), rounds: o.startupRounds, as: s.as,
		samples: map[string][]startupSample{}, uid: os.Getuid(), gid: os.Getgid()}
	if s.cred != nil {
		rep.uid, rep.gid = int(s.cred.Uid), int(s.cred.Gid)
	}
	sockDir := filepath.Join(s.dir, "proxy")
	sbHome := filepath.Join(s.dir, "sandbox-home")
	if s.cred == nil {
		for _, d := range []string{sockDir, sbHome} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
		}
	} else {
		rep.noAlone = fmt.Sprintf("not measured with -startup-as %s (it runs in the benchmark's own process, as uid %d)", s.as, os.Getuid())
	}

	// One round not counted: the first runs fill the page cache.
	for r := -1; r < o.startupRounds; r++ {
		for i := range startupVariants {
			v := startupVariants[(i+max(r, 0))%len(startupVariants)]
			x, err := s.sample(v)
			if err != nil {
				return fmt.Errorf("startup %s: %w", v, err)
			}
			if r < 0 {
				continue
			}
			rep.samples[v] = append(rep.samples[v], x)
			logf("startup round %d %-10s first instruction %8s, whole run %8s (true %8s)", r+1, v,
				fmtDur(x.first), fmtDur(x.whole), fmtDur(x.wholeTrue))
		}
		_, v, _, err := s.runOnce([]string{s.cork, "version"}, false)
		if err != nil {
			return fmt.Errorf("startup: %w", err)
		}
		if r >= 0 {
			rep.version = append(rep.version, v)
		}
		if rep.noAlone == "" {
			x, err := s.sandboxAlone(sockDir, sbHome)
			if err != nil {
				return fmt.Errorf("startup sandbox alone: %w", err)
			}
			if r >= 0 {
				rep.sandbox = append(rep.sandbox, x)
			}
		}
	}
	rep.layers = s.layers
	rep.elapsed = time.Since(t0)
	rep.write(out)
	return nil
}

// startupTarget is the bound (docs/PERFORMANCE.md) on what the sandbox adds to the time
// from `cork run` to the command's first instruction.
const startupTarget = 50 * time.Millisecond

// localRunTarget bounds a whole `cork run --backend local -- true` in the
// confined sandbox (docs/PERFORMANCE.md).
const localRunTarget = 80 * time.Millisecond

// pct is the q-quantile of xs by nearest rank (q=0.9: the value at or
// below which 90 % of the samples lie).
func pct(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// pick is one figure, f, of each of samples.
func pick[S any](samples []S, f func(S) time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(samples))
	for _, x := range samples {
		out = append(out, f(x))
	}
	return out
}

// diffs is, per round, a − b.
func diffs(a, b []time.Duration) []time.Duration {
	var out []time.Duration
	for i := range min(len(a), len(b)) {
		out = append(out, a[i]-b[i])
	}
	return out
}

// field picks one figure of each sample of v.
func (r *startupReport) field(v string, f func(startupSample) time.Duration) []time.Duration {
	return pick(r.samples[v], f)
}

// added is, per round, confined − unconfined of one figure.
func (r *startupReport) added(f func(startupSample) time.Duration) []time.Duration {
	return diffs(r.field("confined", f), r.field("unconfined", f))
}

func medP90(xs []time.Duration) string {
	return fmtMS(median(xs)) + " / " + fmtMS(pct(xs, 0.9))
}

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

var (
	firstOf     = func(x startupSample) time.Duration { return x.first }
	wholeOf     = func(x startupSample) time.Duration { return x.whole }
	wholeTrueOf = func(x startupSample) time.Duration { return x.wholeTrue }
)

func (r *startupReport) write(w io.Writer) {
	who := fmt.Sprintf("uid %d (the benchmark's own user)", r.uid)
	if r.as != "" {
		who = fmt.Sprintf("%s (uid %d, started by the benchmark as root)", r.as, r.uid)
	}
	fmt.Fprintf(w, "### Local sandbox start-up, run %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. Total time %s. cork and the command run as %s; sandbox layers: %s.\n",
		r.machine, r.elapsed.Round(time.Second), who, r.layers)
	fmt.Fprintf(w, "%d rounds after one warm-up round, the three variants interleaved (order rotated per round); "+
		"each variant runs `mark` (writes the wall clock as its first act) and `true` once per round. "+
		"Figures are median / p90 over rounds; \"added\" is taken per round, then the median / p90 of those differences.\n\n", r.rounds)

	fmt.Fprintln(w, "| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	add := median(r.added(firstOf))
	fmt.Fprintf(w, "| the sandbox adds ≤ 50 ms from `cork run` to the command's first instruction (median) | %s (p90 %s) | %s |\n",
		fmtMS(add), fmtMS(pct(r.added(firstOf), 0.9)), passFail(add <= startupTarget))
	whole := median(r.field("confined", wholeTrueOf))
	fmt.Fprintf(w, "| `cork run --backend local -- true` in the confined sandbox ≤ 80 ms wall, start to exit (median) | %s (p90 %s; `true` directly %s) | %s |\n\n",
		fmtMS(whole), fmtMS(pct(r.field("confined", wholeTrueOf), 0.9)), fmtMS(median(r.field("direct", wholeTrueOf))), passFail(whole <= localRunTarget))

	fmt.Fprintln(w, "| | to the first instruction (`mark`) | whole run (`mark`) | whole run (`true`) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	names := map[string]string{
		"direct":     "the command directly (exec)",
		"unconfined": "`cork run --backend local --no-isolate --inject api.example.com=VAR -- CMD`",
		"confined":   "`cork run --backend local --inject api.example.com=VAR -- CMD` (the default sandbox)",
	}
	for _, v := range startupVariants {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", names[v],
			medP90(r.field(v, firstOf)), medP90(r.field(v, wholeOf)), medP90(r.field(v, wholeTrueOf)))
	}
	fmt.Fprintf(w, "| **added by the sandbox** (confined − unconfined) | **%s** | %s | %s |\n",
		medP90(r.added(firstOf)), medP90(r.added(wholeOf)), medP90(r.added(wholeTrueOf)))

	fmt.Fprintf(w, "\nOne start of the cork binary alone (`cork version`, whole run, same user and environment): %s. "+
		"The sandbox starts that binary once more before the command (its init).\n", medP90(r.version))

	if len(r.sandbox) == 0 {
		if r.noAlone != "" {
			fmt.Fprintf(w, "\nWhere the sandbox's time goes: %s.\n", r.noAlone)
		}
		return
	}
	fmt.Fprintf(w, "\nWhere the sandbox's time goes: `confine.New` + `Start` + wait for `mark`, in the benchmark process "+
		"(uid %d), without cork or its proxy, once per round (median / p90). Init is the benchmark's own "+
		"binary re-executed here, not cork's, so its Go start-up differs from cork's:\n\n", os.Getuid())
	fmt.Fprintln(w, "| step | time |")
	fmt.Fprintln(w, "|---|---|")
	for _, row := range []struct {
		what string
		f    func(sandboxSample) time.Duration
	}{
		{"`confine.New`: the filesystem view (globs of the hidden table, other homes) and the hard-link scan", func(x sandboxSample) time.Duration { return x.plan }},
		{"`Start`: init cloned into the namespaces, its view mounted, loopback and relay up, the command's thread restricted, until the command's exec", func(x sandboxSample) time.Duration { return x.start }},
		{"the exec → the command's first instruction", func(x sandboxSample) time.Duration { return x.exec }},
		{"the first instruction → init exited and waited for", func(x sandboxSample) time.Duration { return x.exit }},
		{"total", func(x sandboxSample) time.Duration { return x.total }},
	} {
		fmt.Fprintf(w, "| %s | %s |\n", row.what, medP90(pick(r.sandbox, row.f)))
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
