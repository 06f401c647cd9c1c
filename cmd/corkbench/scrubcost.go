package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The scrubcost phase measures what response scrubbing (docs/SECURITY.md)
// costs, as docs/PERFORMANCE.md "The cost of scrubbing" did by hand: cork
// built at -scrub-ref (the last commit before scrubbing) and cork built
// from the working tree run side by side as `cork proxy` next to one
// upstream, with direct runs interleaved. It reuses the requests phase
// (MITM keep-alive at 1 and -conns connections), the SSE phase and the
// bulk phase on those three variants, and reports each figure before and
// now with a verdict: is the difference larger than the run's own spread?

// defaultScrubRef is the last commit before response scrubbing
// (docs/PERFORMANCE.md, "The cost of scrubbing").
const defaultScrubRef = "30e65e4"

// scrubTitle heads the phase's report section.
const scrubTitle = "The cost of response scrubbing"

// gitRef is a commit of the checkout the benchmark runs in.
type gitRef struct {
	top     string // the checkout's top-level directory
	prefix  string // the module root below top ("" or "dir/")
	commit  string // full hash
	short   string
	subject string
}

// refSkip is a reason the phase cannot run here; the phase writes it as
// its note instead of failing the run.
type refSkip struct{ reason string }

func (e *refSkip) Error() string { return e.reason }

func refSkipf(format string, args ...any) error {
	return &refSkip{fmt.Sprintf(format, args...)}
}

// gitOut runs git in dir and returns its trimmed standard output; the error
// carries git's last line of standard error.
func gitOut(dir string, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(tail(stderr.String(), 1)); msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}

// resolveRef finds ref in the checkout holding root (the module root). It
// returns a *refSkip when git is missing, root is not in a checkout or
// ref names no commit there.
func resolveRef(root, ref string) (gitRef, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return gitRef{}, refSkipf("git is not on PATH")
	}
	top, err := gitOut(root, "rev-parse", "--show-toplevel")
	if err != nil {
		return gitRef{}, refSkipf("%s is not in a git checkout", root)
	}
	prefix, err := gitOut(root, "rev-parse", "--show-prefix")
	if err != nil {
		return gitRef{}, refSkipf("%s: %v", root, err)
	}
	commit, err := gitOut(root, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil {
		return gitRef{}, refSkipf("-scrub-ref %s: no such commit in %s (a shallow clone?)", ref, top)
	}
	r := gitRef{top: top, prefix: prefix, commit: commit}
	if r.short, err = gitOut(root, "rev-parse", "--short", commit); err != nil {
		return gitRef{}, refSkipf("-scrub-ref %s: %v", ref, err)
	}
	if r.subject, err = gitOut(root, "log", "-1", "--format=%s", commit); err != nil {
		return gitRef{}, refSkipf("-scrub-ref %s: %v", ref, err)
	}
	return r, nil
}

// buildAt builds ./cmd/cork as it was at r into dir/cork-SHORT, from a
// `git archive` of r unpacked in dir: the working tree and the checkout's
// worktree list stay as they are. The toolchain is the local one
// (GOTOOLCHAIN=local), the one that builds the working tree's cork, so
// the comparison is of the code alone. A failed build (a dependency
// missing from the module cache and no network, say) is a *refSkip
// naming go's last line.
func buildAt(r gitRef, dir string) (string, error) {
	src := filepath.Join(dir, "src-"+r.short)
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", err
	}
	tarball := filepath.Join(dir, "src-"+r.short+".tar")
	if _, err := gitOut(r.top, "archive", "--format=tar", "-o", tarball, r.commit); err != nil {
		return "", refSkipf("cork at %s: %v", r.short, err)
	}
	defer os.Remove(tarball)
	if out, err := exec.Command("tar", "-xf", tarball, "-C", src).CombinedOutput(); err != nil {
		return "", refSkipf("cork at %s: unpack: %v: %s", r.short, err, strings.TrimSpace(tail(string(out), 1)))
	}
	bin := filepath.Join(dir, "cork-"+r.short)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cork")
	cmd.Dir = filepath.Join(src, r.prefix)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", refSkipf("cork at %s: go build ./cmd/cork: %v: %s", r.short, err, strings.TrimSpace(tail(string(out), 1)))
	}
	return bin, nil
}

// describeNow says which cork the "now" variant is.
func describeNow(o options, root string) string {
	if o.corkBin != "" {
		return "the -cork-bin binary " + o.corkBin
	}
	head, err := gitOut(root, "rev-parse", "--short", "HEAD")
	if err != nil {
		return "the working tree"
	}
	if st, err := gitOut(root, "status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		return "the working tree at " + head + " with uncommitted changes"
	}
	return "the working tree at " + head
}

// scrubReport is the phase's figures: the requests, SSE and bulk phases'
// report on the variants direct, cork at the ref (before) and cork now.
type scrubReport struct {
	*report
	skip                    string // why the phase did not run, or ""
	ref                     gitRef
	before, now             string // variant names
	nowDesc                 string
	goVersion               string
	idleKBNow, idleKBBefore int64
}

// runScrubCost is the scrubcost phase.
func runScrubCost(o options, out io.Writer) error {
	t0 := time.Now()
	sr, err := scrubCost(o)
	var skip *refSkip
	switch {
	case errors.As(err, &skip):
		logf("scrubcost phase skipped: %s", skip.reason)
		sr = &scrubReport{report: &report{opts: o, started: t0}, skip: skip.reason}
	case err != nil:
		return err
	}
	sr.elapsed = time.Since(t0)
	sr.write(out)
	return nil
}

// scrubCost builds both corks, starts them and runs the phase's load.
func scrubCost(o options) (*scrubReport, error) {
	t0 := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return nil, refSkipf("%v", err)
	}
	ref, err := resolveRef(root, o.scrubRef)
	if err != nil {
		return nil, err
	}
	e, err := setup(o, true, false)
	if err != nil {
		return nil, err
	}
	defer e.close()
	logf("building cork at %s (%s) into %s", ref.short, ref.subject, e.dir)
	bin, err := buildAt(ref, e.dir)
	if err != nil {
		return nil, err
	}
	refDir := filepath.Join(e.dir, "ref")
	if err := os.Mkdir(refDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := e.up.writeCA(refDir); err != nil {
		return nil, err
	}
	refProc, err := startCork(bin, refDir, e.up.resolveMap(), o.corkLogLevel)
	if err != nil {
		// An older cork may want other variables: a note, not a failed run.
		return nil, refSkipf("cork at %s did not start as `cork proxy` with this benchmark's environment: %s",
			ref.short, strings.Join(strings.Fields(err.Error()), " "))
	}
	defer refProc.stop()
	vRef := proxyVariant("cork@"+ref.short, refProc, e.up)
	if err := probe(e, vRef); err != nil {
		return nil, refSkipf("cork at %s does not serve this benchmark's policy: %v", ref.short, err)
	}
	variants := []variant{e.direct, vRef, e.vCork}
	for _, v := range []variant{e.direct, e.vCork} {
		if err := probe(e, v); err != nil {
			return nil, err
		}
	}

	// The phases' own code on these variants: MITM keep-alive (what
	// scrubbing touches), SSE on the three paths (tunnel and plain are
	// controls: not scrubbed) and bulk through MITM.
	sub := o
	sub.only = "requests,sse,bulk"
	sub.scenarios = "mitm-1,mitm-" + itoa(o.conns)
	sr := &scrubReport{
		report:  &report{opts: sub, started: t0, machine: machineInfo(), variants: []string{e.direct.name, vRef.name, e.vCork.name}},
		ref:     ref,
		before:  vRef.name,
		now:     e.vCork.name,
		nowDesc: describeNow(o, root),
	}
	sr.goVersion, _ = goEnv(root, "GOVERSION")
	time.Sleep(300 * time.Millisecond)
	sr.idleKBBefore, sr.idleKBNow = procStatusKB(refProc.pid(), "VmRSS"), procStatusKB(e.cork.pid(), "VmRSS")
	runRequests(sub, variants, sr.report)
	if err := runSSEPhase(sub, variants, sr.report); err != nil {
		return nil, err
	}
	if err := runBulkPhase(sub, variants, sr.report); err != nil {
		return nil, err
	}
	return sr, nil
}

// goEnv is one `go env` value.
func goEnv(dir, key string) (string, error) {
	cmd := exec.Command("go", "env", key)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// judgement is how a difference compares with the run's spread.
type judgement int

const (
	judgedNoSpread judgement = iota // fewer than two rounds: nothing to judge by
	judgedWithin
	judgedWorse
	judgedBetter
)

// judge compares now with before, each a figure per round. The
// difference is median(now) − median(before); the spread is the larger of
// the two variants' ranges (highest − lowest over rounds), what one cork
// varies by between the rounds of this run. A difference no larger than
// that is noise.
func judge(before, now []float64, higherBetter bool) (diff, spread float64, j judgement) {
	diff = median(now) - median(before)
	if len(before) < 2 || len(now) < 2 {
		return diff, 0, judgedNoSpread
	}
	spread = max(spreadOf(before), spreadOf(now))
	switch {
	case math.Abs(diff) <= spread:
		return diff, spread, judgedWithin
	case (diff > 0) == higherBetter:
		return diff, spread, judgedBetter
	default:
		return diff, spread, judgedWorse
	}
}

// spreadOf is the range of xs.
func spreadOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs) - slices.Min(xs)
}

// scrubRow is one figure of the phase, per round for each cork.
type scrubRow struct {
	what         string
	before, now  []float64
	format       string // for one value: "%.2f", "%.0f µs", "%.2f ms"
	higherBetter bool
	target       bool     // counts towards "no regression beyond the noise"
	rates        []string // bulk only: the per-round MiB/s of before and now
}

// perRoundLoad is one figure per round of a request scenario for variant v.
func (r *report) perRoundLoad(key, v string, f func(l, direct loadResult) (float64, bool)) []float64 {
	d, x := r.load[key]["direct"], r.load[key][v]
	var out []float64
	for i := range min(len(d), len(x)) {
		if y, ok := f(x[i], d[i]); ok {
			out = append(out, y)
		}
	}
	return out
}

// ratioToDirect is req/s ÷ direct's in the same round.
func ratioToDirect(l, d loadResult) (float64, bool) { return l.rps() / d.rps(), d.rps() > 0 }

// cpuPerRequest is the proxy's CPU per request in µs.
func cpuPerRequest(l, _ loadResult) (float64, bool) {
	return float64(l.proxyCPU.Microseconds()) / float64(l.n), l.n > 0
}

// perRoundSSE is, per round, v's median minus direct's median of one SSE
// figure in ms (streams are appended round by round, sseRuns each).
func (r *report) perRoundSSE(p, v string, first bool) []float64 {
	n := max(r.opts.sseRuns, 1)
	med := func(name string, round int) (time.Duration, bool) {
		s := r.sse[p][name]
		if (round+1)*n > len(s) {
			return 0, false
		}
		var xs []time.Duration
		for _, x := range s[round*n : (round+1)*n] {
			if first {
				xs = append(xs, x.first)
			} else {
				xs = append(xs, x.maxGap)
			}
		}
		return median(xs), true
	}
	var out []float64
	for round := 0; ; round++ {
		d, ok1 := med("direct", round)
		x, ok2 := med(v, round)
		if !ok1 || !ok2 {
			return out
		}
		out = append(out, ms(x-d))
	}
}

func (sr *scrubReport) rows() []scrubRow {
	var rows []scrubRow
	o := sr.opts
	for _, sc := range scenarios(o) {
		if sr.load[sc.key] == nil {
			continue
		}
		rows = append(rows,
			scrubRow{what: sc.title + ": req/s ÷ direct", format: "%.2f", higherBetter: true, target: true,
				before: sr.perRoundLoad(sc.key, sr.before, ratioToDirect), now: sr.perRoundLoad(sc.key, sr.now, ratioToDirect)},
			scrubRow{what: sc.title + ": proxy CPU per request", format: "%.0f µs",
				before: sr.perRoundLoad(sc.key, sr.before, cpuPerRequest), now: sr.perRoundLoad(sc.key, sr.now, cpuPerRequest)})
	}
	for _, p := range []string{"mitm", "tunnel", "plain"} {
		if sr.sse[p] == nil {
			continue
		}
		note := " (scrubbed)"
		if p != "mitm" {
			note = " (not scrubbed: a control)"
		}
		rows = append(rows,
			scrubRow{what: "SSE " + p + note + ": first event, added over direct", format: "%+.2f ms",
				before: sr.perRoundSSE(p, sr.before, true), now: sr.perRoundSSE(p, sr.now, true)},
			scrubRow{what: "SSE " + p + note + ": largest gap, added over direct", format: "%+.2f ms",
				before: sr.perRoundSSE(p, sr.before, false), now: sr.perRoundSSE(p, sr.now, false)})
	}
	if b := sr.bulk; b != nil {
		d, bf, nw := b["direct"], b[sr.before], b[sr.now]
		for _, up := range []bool{false, true} {
			dir, rb, rn := "down", bf.down, nw.down
			if up {
				dir, rb, rn = "up", bf.up, nw.up
			}
			rows = append(rows, scrubRow{what: fmt.Sprintf("%s %s through MITM: MiB/s ÷ direct", sizeName(o.bulkMiB), dir),
				format: "%.2f", higherBetter: true, target: true,
				before: perRoundBulk(bf, d, up), now: perRoundBulk(nw, d, up),
				rates: []string{perRound(rb) + " MiB/s", perRound(rn) + " MiB/s"}})
		}
		secs := func(xs []time.Duration) []float64 {
			var out []float64
			for _, x := range xs {
				out = append(out, x.Seconds())
			}
			return out
		}
		rows = append(rows, scrubRow{what: "proxy CPU per bulk round (both directions)", format: "%.2f s",
			before: secs(bf.cpu), now: secs(nw.cpu)})
	}
	return rows
}

func sizeName(mibs int64) string {
	if mibs == 1024 {
		return "1 GiB"
	}
	return fmt.Sprintf("%d MiB", mibs)
}

// cell is a row's median with its per-round figures.
func (row scrubRow) cell(xs []float64, rates string) string {
	verb, _, _ := strings.Cut(row.format, " ") // the per-round figures without the unit
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(verb, x)
	}
	s := fmt.Sprintf(row.format, median(xs)) + " (" + strings.Join(parts, " / ")
	if rates != "" {
		s += "; " + rates
	}
	return s + ")"
}

// verdict is the row's difference and what it means.
func (row scrubRow) verdict() (difference, verdict string) {
	diff, spread, j := judge(row.before, row.now, row.higherBetter)
	f := strings.TrimPrefix(row.format, "%")
	difference = fmt.Sprintf("%+"+strings.TrimPrefix(f, "+"), diff)
	sp := fmt.Sprintf("%"+strings.TrimPrefix(f, "+"), spread)
	switch j {
	case judgedNoSpread:
		verdict = "one round: no spread to judge by"
	case judgedWithin:
		verdict = "within the spread (" + sp + ")"
	case judgedWorse:
		verdict = "**worse** beyond the spread (" + sp + ")"
	default:
		verdict = "better beyond the spread (" + sp + ")"
	}
	return difference, verdict
}

func (sr *scrubReport) write(w io.Writer) {
	fmt.Fprintf(w, "\n### %s, run %s\n\n", scrubTitle, sr.started.UTC().Format("2006-01-02 15:04 MST"))
	if sr.skip != "" {
		fmt.Fprintf(w, "Skipped: %s.\n", sr.skip)
		return
	}
	o := sr.opts
	fmt.Fprintf(w, "Machine: %s. Total time %s.\n", sr.machine, sr.elapsed.Round(time.Second))
	fmt.Fprintf(w, "Before: `cork proxy` built at %s (%q, -scrub-ref). Now: `cork proxy` built from %s. "+
		"Both built with %s, CORK_LOG_LEVEL=%s, side by side next to one upstream; direct runs interleaved with them "+
		"(variant order rotated per round). MITM keep-alive: %d rounds × %s per variant; SSE: %d stream(s) per variant, "+
		"path and round (%d events, %d ms apart; a round's figure is the median of its streams); bulk: %d rounds of %s down and up on one warm MITM connection.\n",
		sr.ref.short, sr.ref.subject, sr.nowDesc, sr.goVersion, o.corkLogLevel,
		o.rounds, o.duration, o.sseRuns, o.sseEvents, o.sseGapMS, o.bulkRounds, sizeName(o.bulkMiB))
	fmt.Fprintln(w, "Each cell: the median over rounds (the per-round figures in brackets), each taken against direct in the same round "+
		"where the row says so. Difference: now − before, of the medians. Spread: the larger of the two corks' ranges "+
		"(highest − lowest per-round figure): how much one cork varies between rounds of this run. "+
		"A difference no larger than the spread is noise.")
	fmt.Fprintln(w)

	rows := sr.rows()
	var parts []string
	regressed, judged := false, true
	for _, row := range rows {
		if !row.target {
			continue
		}
		diff, spread, j := judge(row.before, row.now, row.higherBetter)
		sp := fmt.Sprintf("spread %.2f", spread)
		if j == judgedNoSpread {
			sp = "no spread"
		}
		parts = append(parts, fmt.Sprintf("%s: %+.2f (%s)", shortWhat(row.what), diff, sp))
		regressed = regressed || j == judgedWorse
		judged = judged && j != judgedNoSpread
	}
	if len(parts) > 0 {
		fmt.Fprintln(w, "| target | measured | result |")
		fmt.Fprintln(w, "|---|---|---|")
		result := passFail(!regressed)
		if !judged && !regressed {
			result = "– (one round)"
		}
		fmt.Fprintf(w, "| MITM keep-alive and bulk: no regression beyond the run-to-run noise after scrubbing | %s (÷ direct, now − before of the medians) | %s |\n\n",
			strings.Join(parts, "; "), result)
	}

	fmt.Fprintf(w, "| | before (%s) | now | difference | verdict |\n", sr.ref.short)
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, row := range rows {
		rb, rn := "", ""
		if row.rates != nil {
			rb, rn = row.rates[0], row.rates[1]
		}
		diff, verdict := row.verdict()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", row.what, row.cell(row.before, rb), row.cell(row.now, rn), diff, verdict)
	}
	if b := sr.bulk; b != nil {
		fmt.Fprintf(w, "| proxy peak RSS in the bulk rounds | %.1f MiB | %.1f MiB | %+.1f MiB | – (one figure) |\n",
			mib(b[sr.before].peakKB), mib(b[sr.now].peakKB), mib(b[sr.now].peakKB-b[sr.before].peakKB))
	}
	fmt.Fprintf(w, "| idle RSS | %.1f MiB | %.1f MiB | %+.1f MiB | – (one figure) |\n",
		mib(sr.idleKBBefore), mib(sr.idleKBNow), mib(sr.idleKBNow-sr.idleKBBefore))

	var direct []string
	for _, sc := range scenarios(o) {
		if l := sr.load[sc.key]["direct"]; l != nil {
			var xs []float64
			for _, x := range l {
				xs = append(xs, x.rps())
			}
			direct = append(direct, fmt.Sprintf("%s %s req/s", sc.key, perRoundN(xs)))
		}
	}
	if d := sr.bulk["direct"]; d != nil {
		direct = append(direct, "bulk down "+perRound(d.down)+" MiB/s", "bulk up "+perRound(d.up)+" MiB/s")
	}
	if len(direct) > 0 {
		fmt.Fprintf(w, "\nDirect, per round: %s.\n", strings.Join(direct, "; "))
	}
}

// perRoundN formats figures as "a / b / c".
func perRoundN(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, " / ")
}

// shortWhat names a target row in the target table.
func shortWhat(what string) string {
	what, _, _ = strings.Cut(what, ":")
	what = strings.TrimPrefix(what, "MITM + inject, ")
	return what
}
