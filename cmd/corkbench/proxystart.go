package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The proxystart phase times `cork proxy` from its exec to /readyz
// answering 200 (tokens applied, listening), polled from Go every
// pollEvery, and to its proxy port accepting; it also times `cork
// version` (one start of the binary that does nothing) and sums the Go
// package initialisation the runtime reports with GODEBUG=inittrace=1.

// proxyStartTarget is the issue's bound (docs/PERFORMANCE.md) on `cork
// proxy` from its exec to ready.
const proxyStartTarget = 50 * time.Millisecond

// pollEvery is the pause between two readiness polls.
const pollEvery = 500 * time.Microsecond

// readyTimeout bounds one start of `cork proxy`.
const readyTimeout = 15 * time.Second

// readyTimes is one start of `cork proxy`, from just before its exec.
type readyTimes struct {
	accept time.Duration // the proxy port accepts a connection
	ready  time.Duration // /readyz answers 200
}

// corkDir writes what `cork proxy` reads in dir (as startCork does): the
// policy and the upstream's CA.
func corkDir(dir string, up *upstream) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(corkPolicy), 0o644); err != nil {
		return err
	}
	_, err := up.writeCA(dir)
	return err
}

// startReadyCork starts `cork proxy` with startCork's environment in dir
// (see corkDir) plus an admin listener, writes the token map on its
// stdin, and polls until /readyz answers 200. A proxy that exits first
// (a port taken since freePort picked it) is started again, twice at
// most.
func startReadyCork(bin, dir string, res map[string]string, logLevel string) (*proxyProc, readyTimes, error) {
	var err error
	for range 3 {
		var p *proxyProc
		var rt readyTimes
		if p, rt, err = startReadyOnce(bin, dir, res, logLevel); err == nil {
			return p, rt, nil
		}
		if !errors.Is(err, errExited) {
			return nil, rt, err
		}
	}
	return nil, readyTimes{}, err
}

// errExited is a `cork proxy` that exited before /readyz answered 200.
var errExited = errors.New("exited before ready")

// startReadyOnce is one try of startReadyCork.
func startReadyOnce(bin, dir string, res map[string]string, logLevel string) (*proxyProc, readyTimes, error) {
	listen, err := freePort()
	if err != nil {
		return nil, readyTimes{}, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, readyTimes{}, err
	}
	cmd := exec.Command(bin, "proxy")
	// As a sidecar starts: no CORK_UPSTREAM_CA_FILE (these proxies make
	// no request), so the upstream roots load once it is ready, not before.
	var env []string
	for _, kv := range corkEnv(dir, listen, res, logLevel) {
		if !strings.HasPrefix(kv, "CORK_UPSTREAM_CA_FILE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "CORK_ADMIN_LISTEN="+admin)
	p := &proxyProc{name: "cork", cmd: cmd, done: make(chan struct{})}
	t0 := time.Now()
	if err := p.start(nil); err != nil {
		return nil, readyTimes{}, err
	}
	if _, err := fmt.Fprintf(p.stdin, "{%q:%q}\n", slotName, realToken); err != nil {
		p.stop()
		return nil, readyTimes{}, fmt.Errorf("cork: write tokens: %w", err)
	}
	rt, err := pollReady(listen, admin, p.done, t0, readyTimeout)
	if err != nil {
		p.stop()
		return nil, rt, fmt.Errorf("cork proxy: %w:\n%s", err, p.lastLines())
	}
	return p, rt, nil
}

// pollReady polls the proxy port (a connect) and the admin port (GET
// /readyz) every pollEvery until both answered, the process is done, or
// limit has passed since t0.
func pollReady(proxyAddr, adminAddr string, done <-chan struct{}, t0 time.Time, limit time.Duration) (readyTimes, error) {
	var rt readyTimes
	for {
		if rt.accept == 0 {
			if c, err := net.DialTimeout("tcp", proxyAddr, time.Second); err == nil {
				rt.accept = time.Since(t0)
				c.Close()
			}
		}
		if rt.ready == 0 && readyz(adminAddr) == 200 {
			rt.ready = time.Since(t0)
		}
		if rt.accept != 0 && rt.ready != 0 {
			return rt, nil
		}
		select {
		case <-done:
			return rt, errExited
		default:
		}
		if time.Since(t0) > limit {
			return rt, fmt.Errorf("not ready within %s", limit)
		}
		time.Sleep(pollEvery)
	}
}

// readyz is the status code of GET /readyz at addr, or 0 when there is
// no answer.
func readyz(addr string) int {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: cork-admin\r\nConnection: close\r\n\r\n"); err != nil {
		return 0
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

// initTrace is the Go package initialisation of one start, from
// GODEBUG=inittrace=1 (lines "init PKG @T ms, C ms clock, B bytes, A allocs").
type initTrace struct {
	packages int
	clock    time.Duration // the sum of every package's clock time
	bytes    int64         // the sum of the bytes they allocated
	end      time.Duration // the last init's @ plus its clock: when main starts
	byModule map[string]time.Duration
}

// parseInitTrace sums the init lines of stderr; other lines are ignored.
func parseInitTrace(stderr string) initTrace {
	t := initTrace{byModule: map[string]time.Duration{}}
	for _, line := range strings.Split(stderr, "\n") {
		f := strings.Fields(line)
		// init PKG @T ms, C ms clock, B bytes, A allocs
		if len(f) < 10 || f[0] != "init" || !strings.HasPrefix(f[2], "@") || f[6] != "clock," {
			continue
		}
		at, err1 := strconv.ParseFloat(strings.TrimPrefix(f[2], "@"), 64)
		clock, err2 := strconv.ParseFloat(f[4], 64)
		b, err3 := strconv.ParseInt(f[7], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		c := msDur(clock)
		t.packages++
		t.clock += c
		t.bytes += b
		t.end = max(t.end, msDur(at)+c)
		t.byModule[moduleOf(f[1])] += c
	}
	return t
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// moduleOf groups a package path for the report: github.com/OWNER/REPO,
// the first element of other hosts' paths (k8s.io, google.golang.org),
// "std" for the standard library.
func moduleOf(pkg string) string {
	el := strings.Split(pkg, "/")
	switch {
	case el[0] == "github.com" && len(el) >= 3:
		return strings.Join(el[:3], "/")
	case el[0] == "golang.org" && len(el) >= 3:
		return strings.Join(el[:3], "/")
	case strings.Contains(el[0], "."):
		return el[0]
	case el[0] == "main":
		return "main"
	}
	return "std"
}

// topModules is the n groups of t with the most init time, most first.
func (t initTrace) topModules(n int) []string {
	keys := make([]string, 0, len(t.byModule))
	for k := range t.byModule {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(t.byModule[b], t.byModule[a]), strings.Compare(a, b))
	})
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s %s", k, fmtMS(t.byModule[k])))
	}
	return out
}

// proxyStartReport is the phase's figures.
type proxyStartReport struct {
	started  time.Time
	elapsed  time.Duration
	machine  string
	rounds   int
	logLevel string
	build    string // buildLabel
	starts   []readyTimes
	version  []time.Duration // `cork version`, whole run
	inits    []initTrace
}

// runProxyStart runs the proxystart phase and writes its report to out.
func runProxyStart(o options, out io.Writer) error {
	t0 := time.Now()
	dir, bin, up, cleanup, err := proxyPhaseSetup(o, "proxystart")
	if err != nil {
		return err
	}
	defer cleanup()
	pdir := filepath.Join(dir, "proxy")
	if err := corkDir(pdir, up); err != nil {
		return err
	}
	res := up.resolveMap()
	rep := &proxyStartReport{started: t0, machine: machineInfo(), rounds: o.proxyStartRounds, logLevel: o.corkLogLevel, build: buildLabel(o)}
	env := corkEnv(pdir, "127.0.0.1:0", res, o.corkLogLevel)
	// One round not counted: the first starts fill the page cache.
	for r := -1; r < o.proxyStartRounds; r++ {
		p, rt, err := startReadyCork(bin, pdir, res, o.corkLogLevel)
		if err != nil {
			return fmt.Errorf("proxystart: %w", err)
		}
		p.stop()
		v, err := timeRun(bin, env, "version")
		if err != nil {
			return fmt.Errorf("proxystart: %w", err)
		}
		tr, err := traceInit(bin, env)
		if err != nil {
			return fmt.Errorf("proxystart: %w", err)
		}
		if r < 0 {
			continue
		}
		rep.starts = append(rep.starts, rt)
		rep.version = append(rep.version, v)
		rep.inits = append(rep.inits, tr)
		logf("proxystart round %d: port accepting %s, /readyz 200 %s; cork version %s; package init %s (%d packages)",
			r+1, fmtMS(rt.accept), fmtMS(rt.ready), fmtMS(v), fmtMS(tr.clock), tr.packages)
	}
	rep.elapsed = time.Since(t0)
	rep.write(out)
	return nil
}

// proxyPhaseSetup is what the proxystart and memory phases start from: a
// temporary directory (cork-bench-NAME-*), the cork binary the phase
// measures (corkBinary) and the fake upstream. cleanup stops and removes
// them.
func proxyPhaseSetup(o options, name string) (dir, bin string, up *upstream, cleanup func(), err error) {
	if dir, err = os.MkdirTemp("", "cork-bench-"+name+"-"); err != nil {
		return "", "", nil, nil, err
	}
	if bin, err = corkBinary(o, dir); err == nil {
		up, err = startUpstream(false)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, nil, err
	}
	return dir, bin, up, func() { up.close(); os.RemoveAll(dir) }, nil
}

// corkBinary is -cork-bin, or cork built into dir.
func corkBinary(o options, dir string) (string, error) {
	if o.corkBin != "" {
		return o.corkBin, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	logf("building cork (go build -o %s/cork ./cmd/cork%s)", dir, tagsNote(o.corkTags))
	bin, err := buildCorkTags(root, dir, o.corkTags)
	if err != nil {
		return "", err
	}
	// Written back to disk: a binary fresh from the linker is dirty page
	// cache, and its mapped pages would count as Private_Dirty.
	f, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", bin, err)
	}
	return bin, nil
}

// tagsNote names the build tags of the cork measured, for the log and
// the reports.
func tagsNote(tags string) string {
	if tags == "" {
		return ""
	}
	return ", -tags " + tags
}

// buildLabel names the cork binary a phase measures, in its heading.
func buildLabel(o options) string {
	switch {
	case o.corkBin != "":
		return "`-cork-bin` " + o.corkBin
	case o.corkTags == "nokube":
		return "cork built with `-tags nokube` (the sidecar image's, as `make image` builds it)"
	case o.corkTags != "":
		return "cork built with `-tags " + o.corkTags + "`"
	}
	return "cork as `go build ./cmd/cork` builds it (every backend)"
}

// timeRun runs bin args to its end with env and times it.
func timeRun(bin string, env []string, args ...string) (time.Duration, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var errb bytes.Buffer
	cmd.Stderr = &errb
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("cork %s: %w: %s", strings.Join(args, " "), err, tail(errb.String(), 5))
	}
	return d, nil
}

// traceInit runs `cork version` with GODEBUG=inittrace=1: package
// initialisation is the same whatever the subcommand, it runs before main.
func traceInit(bin string, env []string) (initTrace, error) {
	cmd := exec.Command(bin, "version")
	cmd.Env = append(slices.Clone(env), "GODEBUG=inittrace=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return initTrace{}, fmt.Errorf("GODEBUG=inittrace=1 cork version: %w", err)
	}
	t := parseInitTrace(errb.String())
	if t.packages == 0 {
		return t, errors.New("GODEBUG=inittrace=1 cork version: no init lines on stderr")
	}
	return t, nil
}

func (r *proxyStartReport) write(w io.Writer) {
	ready := pick(r.starts, func(x readyTimes) time.Duration { return x.ready })
	accept := pick(r.starts, func(x readyTimes) time.Duration { return x.accept })
	var clock, end []time.Duration
	var bytesAlloc []int64
	for _, t := range r.inits {
		clock, end, bytesAlloc = append(clock, t.clock), append(end, t.end), append(bytesAlloc, t.bytes)
	}
	fmt.Fprintf(w, "### Proxy start-up: %s, run %s\n\n", r.build, r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. Total time %s.\n", r.machine, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "%d rounds after one warm-up round. Each round starts `cork proxy` (the built binary) with the benchmark's "+
		"environment (policy file, token map on stdin, a session CA generated and written to `CORK_CA_OUT`, "+
		"`CORK_LOG_LEVEL=%s`) plus `CORK_ADMIN_LISTEN`, and polls from Go every %s — a connect to the proxy port, "+
		"a `GET /readyz` on the admin port — from just before the exec until both answer; then stops it. "+
		"Each round also runs `cork version` and `GODEBUG=inittrace=1 cork version` once. Figures are median / p90 / min over rounds.\n\n",
		r.rounds, r.logLevel, pollEvery)
	fmt.Fprintln(w, "| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| `cork proxy` start to ready (`/readyz` 200) ≤ 50 ms (median) | %s (p90 %s) | %s |\n\n",
		fmtMS(median(ready)), fmtMS(pct(ready, 0.9)), passFail(median(ready) <= proxyStartTarget))
	fmt.Fprintln(w, "| from the exec of `cork` to | median | p90 | min |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(what string, xs []time.Duration) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", what, fmtMS(median(xs)), fmtMS(pct(xs, 0.9)), fmtMS(slices.Min(xs)))
	}
	if len(ready) == 0 {
		return
	}
	row("`cork proxy`: the proxy port accepting", accept)
	row("`cork proxy`: `/readyz` answering 200", ready)
	row("`cork version` exited (one start of the binary: the floor)", r.version)
	row("Go package initialisation done (`inittrace`: last init's @ + its clock)", end)
	var after, beyond []time.Duration
	for i := range min(len(ready), len(end), len(r.version)) {
		after = append(after, ready[i]-end[i])
		beyond = append(beyond, ready[i]-r.version[i])
	}
	row("`cork proxy`'s work after package initialisation (per round: ready − initialisation done)", after)
	row("`cork proxy` beyond a start that does nothing (per round: ready − `cork version`; both parse the compiled-in roots in main)", beyond)
	row(fmt.Sprintf("Go package initialisation, the sum of %d packages' init clock", r.inits[0].packages), clock)
	fmt.Fprintf(w, "\nPackage initialisation allocates %.1f MiB (median). The groups with the most init time (one start, the median one): %s.\n",
		float64(median(bytesAlloc))/(1<<20), strings.Join(r.medianInit().topModules(5), ", "))
}

// medianInit is the round whose summed init clock is the median.
func (r *proxyStartReport) medianInit() initTrace {
	s := slices.Clone(r.inits)
	slices.SortFunc(s, func(a, b initTrace) int { return cmp.Compare(a.clock, b.clock) })
	return s[(len(s)-1)/2]
}
