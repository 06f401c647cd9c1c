// Command corkbench measures cork's proxy against direct access and against a
// raw goproxy MITM proxy (the baseline), on loopback only.
//
//	go run ./cmd/corkbench [-duration 1.5s] [-rounds 3] [-bulk-mib 1024] [-bulk-rounds 3] [-out FILE]
//	go run ./cmd/corkbench -profile cpu.pprof   # CPU profile of cork under MITM keep-alive load
//	go run ./cmd/corkbench -only startup [-startup-rounds 20] [-startup-as USER]   # cork run's start-up (Linux)
//	go run ./cmd/corkbench -only latency [-latency-conc 1,8]                       # added latency per request (latency.go)
//	go run ./cmd/corkbench -only qemu [-qemu-kernel DIR] [-qemu-accel auto]        # a microVM's boot to exit (docs/QEMU.md)
//	go run ./cmd/corkbench -only scrubcost [-scrub-ref 30e65e4]   # cork before response scrubbing against cork now
//	go run ./cmd/corkbench -only proxystart,memory,dockerstart   # `cork proxy` to ready, idle memory, docker start-up
//
// One run starts a fake upstream (HTTP and HTTPS on 127.0.0.1), the baseline
// (this binary re-executed as a child), and `cork proxy` (built from
// ./cmd/cork, a separate process, tokens on stdin, audit log on stderr at
// -cork-log-level). It interleaves direct, baseline and cork runs for
// several rounds and prints a markdown table of targets (see
// docs/PERFORMANCE.md) followed by the detailed figures. Load stays on
// 127.0.0.1, bounded by -duration, -rounds and the sizes given.
//
// squid and tinyproxy, where installed, join direct, the baseline and cork
// on the paths without interception (peers.go).
//
// The startup phase (startup.go) times `cork run --backend local` from its
// start to the command's first instruction and to its exit, unconfined and
// in the default confined sandbox, against the command run directly.
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cork-sh/cork/launch/confine"
)

type options struct {
	duration     time.Duration
	rounds       int
	conns        int
	newConnConns int
	sseRuns      int
	sseEvents    int
	sseGapMS     int
	bulkMiB      int64
	bulkRounds   int
	idleConns    int
	corkBin      string
	corkLogLevel string
	upstreamH2   bool
	out          string
	profile      string
	memProfile   string
	profileDur   time.Duration
	profileWhat  string
	skipBulk     bool
	only         string
	scenarios    string
	// startup phase
	startupRounds int
	qemuKernel    string
	qemuAccel     string
	qemuRounds    int
	startupAs     string
	// latency phase
	latencyConc        string
	latencyRequests    int
	latencyNewRequests int
	scrubRef           string // scrubcost phase
	corkTags           string // build tags of the cork the proxystart and memory phases build
	// proxystart, memory and dockerstart phases
	proxyStartRounds int
	memoryProxies    int
	dockerRounds     int
}

// proxyPhases reports whether -only selects a phase that measures the
// proxy (anything but startup).
func (o options) proxyPhases() bool {
	return o.phase("requests") || o.phase("latency") || o.phase("sse") || o.phase("conns") || (o.phase("bulk") && !o.skipBulk)
}

// phase reports whether -only selects phase (empty: every phase).
func (o options) phase(name string) bool {
	if o.only == "" {
		return true
	}
	for _, p := range strings.Split(o.only, ",") {
		if strings.TrimSpace(p) == name {
			return true
		}
	}
	return false
}

func main() {
	confine.Main() // the startup phase's sandbox re-executes this binary as its init
	var o options
	var child string
	var cc childConfig
	flag.DurationVar(&o.duration, "duration", 1500*time.Millisecond, "length of each timed throughput run")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each round runs every scenario once per variant, interleaved")
	flag.IntVar(&o.conns, "conns", 32, "client connections for the concurrent scenarios")
	flag.IntVar(&o.newConnConns, "newconn-conns", 32, "concurrent workers for the new-connection-per-request scenario")
	flag.IntVar(&o.sseRuns, "sse-runs", 2, "SSE streams per path, variant and round")
	flag.IntVar(&o.sseEvents, "sse-events", 10, "events per SSE stream")
	flag.IntVar(&o.sseGapMS, "sse-gap-ms", 20, "milliseconds between SSE events")
	flag.Int64Var(&o.bulkMiB, "bulk-mib", 1024, "MiB moved down and up through MITM per variant")
	flag.IntVar(&o.bulkRounds, "bulk-rounds", 3, "bulk transfers per variant and direction, interleaved; figures are medians")
	flag.BoolVar(&o.skipBulk, "skip-bulk", false, "skip the bulk transfers")
	flag.StringVar(&o.scenarios, "scenarios", "", "comma-separated request scenario keys to run (mitm-32, tunnel-32, ...; default all)")
	flag.StringVar(&o.only, "only", "", "comma-separated phases to run: requests, latency, sse, conns, bulk, startup, proxystart, memory, dockerstart, scrubcost (default all), and qemu (only when named)")
	flag.StringVar(&o.latencyConc, "latency-conc", "1,8", "latency phase: comma-separated client concurrencies")
	flag.IntVar(&o.latencyRequests, "latency-requests", 1000, "latency phase: requests per variant, round and concurrency on warm connections")
	flag.IntVar(&o.latencyNewRequests, "latency-new-requests", 100, "latency phase: requests per variant, round and concurrency on new connections")
	flag.StringVar(&o.qemuKernel, "qemu-kernel", "/opt/cork-guest-kernel", "qemu phase: the guest kernel directory (vmlinux, lib/modules/VERSION; docs/QEMU.md)")
	flag.StringVar(&o.qemuAccel, "qemu-accel", "auto", "qemu phase: --accel for cork run (kvm, tcg or auto)")
	flag.IntVar(&o.qemuRounds, "qemu-rounds", 10, "qemu phase: rounds")
	flag.IntVar(&o.startupRounds, "startup-rounds", 20, "startup phase: rounds; each runs every variant once, interleaved")
	flag.IntVar(&o.proxyStartRounds, "proxystart-rounds", 20, "proxystart phase: starts of `cork proxy` to ready")
	flag.IntVar(&o.memoryProxies, "memory-proxies", 50, "memory phase: idle `cork proxy` processes at once")
	flag.IntVar(&o.dockerRounds, "docker-rounds", 5, "dockerstart phase: rounds; each runs `docker run` and `cork run --backend docker` once, interleaved")
	flag.StringVar(&o.startupAs, "startup-as", "", "startup phase: run cork and the command as this user (the benchmark must be root)")
	flag.StringVar(&o.scrubRef, "scrub-ref", defaultScrubRef, "scrubcost phase: the commit before response scrubbing, built and run against the working tree's cork")
	flag.IntVar(&o.idleConns, "idle-conns", 256, "idle keep-alive connections held open through MITM for the RSS reading")
	flag.StringVar(&o.corkBin, "cork-bin", "", "cork binary (default: go build ./cmd/cork into a temporary directory)")
	flag.StringVar(&o.corkLogLevel, "cork-log-level", "info", "CORK_LOG_LEVEL for cork (info writes one audit line per request)")
	flag.BoolVar(&o.upstreamH2, "upstream-h2", false, "the HTTPS upstream also offers HTTP/2 (cork's upstream leg then multiplexes)")
	flag.StringVar(&o.out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&o.profile, "profile", "", "profile mode: run MITM keep-alive load against an in-process cork child and write its CPU profile here")
	flag.StringVar(&o.memProfile, "memprofile", "", "profile mode: also write the child's allocation profile here")
	flag.DurationVar(&o.profileDur, "profile-duration", 10*time.Second, "profile mode: load duration")
	flag.StringVar(&o.profileWhat, "profile-scenario", "mitm-32", "profile mode: a scenario key (plain-1, tunnel-32, mitm-32, mitm-new, ...) or bulk-down, bulk-up")
	flag.StringVar(&child, "child", "", "internal: run as a proxy child (baseline, cork-inproc)")
	flag.StringVar(&cc.dir, "child-dir", "", "internal")
	flag.StringVar(&cc.resolve, "child-resolve", "", "internal")
	flag.StringVar(&cc.cpuProfile, "child-cpuprofile", "", "internal")
	flag.StringVar(&cc.memProfile, "child-memprofile", "", "internal")
	flag.StringVar(&cc.logLevel, "child-log-level", "info", "internal")
	flag.Parse()

	if child != "" {
		signal.Ignore(syscall.SIGTERM) // the parent closes stdin; finish the profile first
		if err := runChild(child, cc); err != nil {
			fmt.Fprintf(os.Stderr, "bench child %s: %v\n", child, err)
			os.Exit(1)
		}
		return
	}
	var err error
	if o.profile != "" {
		err = runProfile(o)
	} else {
		err = runPhases(o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// runPhases runs the selected phases and writes their report to stdout
// and -out.
func runPhases(o options) error {
	var out io.Writer = os.Stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}
	if o.proxyPhases() {
		if err := run(o, out); err != nil {
			return err
		}
		if o.phase("startup") {
			fmt.Fprintln(out)
		}
	}
	switch {
	case !o.phase("startup"):
	case !confine.Supported && o.only == "":
		logf("startup phase skipped: the local sandbox needs Linux")
	default:
		if err := runStartup(o, out); err != nil {
			return err
		}
	}
	for _, ph := range []struct {
		name string
		run  func(options, io.Writer) error
	}{{"proxystart", runProxyStart}, {"memory", runMemory}, {"dockerstart", runDockerStart}, {"scrubcost", runScrubCost}} {
		if !o.phase(ph.name) {
			continue
		}
		// proxystart and memory measure both builds of cork: the whole
		// binary, and the sidecar image's (-tags nokube).
		tags := []string{""}
		if (ph.name == "proxystart" || ph.name == "memory") && o.corkBin == "" {
			tags = append(tags, "nokube")
		}
		for _, t := range tags {
			o := o
			o.corkTags = t
			fmt.Fprintln(out)
			if err := ph.run(o, out); err != nil {
				return err
			}
		}
	}
	if o.only != "" && slices.Contains(strings.Split(o.only, ","), "qemu") {
		return runQemuBoot(o, out)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// env holds the upstream and the proxies of one run.
type env struct {
	dir      string
	up       *upstream
	cork     *proxyProc
	baseline *proxyProc
	direct   variant
	vBase    variant
	vCork    variant
}

func (e *env) close() {
	for _, p := range []*proxyProc{e.cork, e.baseline} {
		if p != nil {
			p.stop()
		}
	}
	if e.up != nil {
		e.up.close()
	}
	os.RemoveAll(e.dir)
}

func poolWith(base *x509.CertPool, pemBytes []byte) *x509.CertPool {
	p := base.Clone()
	p.AppendCertsFromPEM(pemBytes)
	return p
}

func proxyVariant(name string, p *proxyProc, up *upstream) variant {
	return variant{name: name, proxy: p.url, pid: p.pid(), roots: poolWith(up.pool(), p.caPEM), up: up}
}

func setup(o options, withCork, withBaseline bool) (*env, error) {
	dir, err := os.MkdirTemp("", "cork-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	if e.up, err = startUpstream(o.upstreamH2); err != nil {
		e.close()
		return nil, err
	}
	if _, err := e.up.writeCA(dir); err != nil {
		e.close()
		return nil, err
	}
	res := e.up.resolveMap()
	e.direct = variant{name: "direct", roots: e.up.pool(), resolve: res, up: e.up}
	if withBaseline {
		if e.baseline, err = startChild("baseline", dir, res); err != nil {
			e.close()
			return nil, err
		}
		e.vBase = proxyVariant("baseline", e.baseline, e.up)
	}
	if withCork {
		bin := o.corkBin
		if bin == "" {
			root, err := moduleRoot()
			if err != nil {
				e.close()
				return nil, err
			}
			logf("building cork (go build -o %s/cork ./cmd/cork)", dir)
			if bin, err = buildCork(root, dir); err != nil {
				e.close()
				return nil, err
			}
		}
		if e.cork, err = startCork(bin, dir, res, o.corkLogLevel); err != nil {
			e.close()
			return nil, err
		}
		e.vCork = proxyVariant("cork", e.cork, e.up)
	}
	return e, nil
}

// probe checks that every path works through v and that the MITM path
// injects (the upstream sees the real token, never the placeholder).
func probe(e *env, v variant) error {
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range []path{pathPlain, pathTunnel, pathMITM} {
		for {
			inj, ph := e.up.injected.Load(), e.up.placeholders.Load()
			c, tr, err := warmClient(v, p)
			if err == nil {
				c.CloseIdleConnections()
				tr.CloseIdleConnections()
				if p.auth && v.proxy != nil {
					if e.up.injected.Load() == inj || e.up.placeholders.Load() != ph {
						return fmt.Errorf("%s: MITM request reached the upstream without the real token", v.name)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s %s: %w", v.name, p.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func run(o options, out io.Writer) error {
	t0 := time.Now()
	e, err := setup(o, true, true)
	if err != nil {
		return err
	}
	defer e.close()
	variants := []variant{e.direct, e.vBase, e.vCork}
	for _, v := range variants {
		if err := probe(e, v); err != nil {
			return err
		}
	}
	rep := &report{opts: o, started: t0, variants: []string{"direct", "baseline", "cork"}}
	rep.machine = machineInfo()
	peerVs, peers, stopPeers := runPeers(o, e)
	defer stopPeers()
	rep.peers = peers
	time.Sleep(300 * time.Millisecond)
	rep.idleRSS = procStatusKB(e.cork.pid(), "VmRSS")
	rep.idleRSSBase = procStatusKB(e.baseline.pid(), "VmRSS")
	logf("cork idle RSS %.1f MiB (baseline %.1f MiB)", mib(rep.idleRSS), mib(rep.idleRSSBase))

	runRequests(o, append(slices.Clone(variants), peerVs...), rep)
	if err := runLatencyPhase(o, variants, peerVs, rep); err != nil {
		return err
	}
	if err := runSSEPhase(o, variants, rep); err != nil {
		return err
	}
	if err := runConnsPhase(o, e, rep); err != nil {
		return err
	}
	if err := runBulkPhase(o, variants, rep); err != nil {
		return err
	}
	rep.corkHWM = procStatusKB(e.cork.pid(), "VmHWM")
	rep.corkLogLines = e.cork.logN.Load()
	rep.corkLogBytes = e.cork.logB.Load()
	rep.injected = e.up.injected.Load()
	rep.elapsed = time.Since(t0)
	rep.write(out)
	return nil
}

// runRequests is the requests phase: each scenario's load on every
// variant, the order rotated each round so no variant always runs first.
func runRequests(o options, variants []variant, rep *report) {
	scs := scenarios(o)
	if !o.phase("requests") {
		scs = nil
	}
	if o.scenarios != "" {
		keep := strings.Split(o.scenarios, ",")
		scs = slices.DeleteFunc(scs, func(sc scenario) bool { return !slices.Contains(keep, sc.key) })
	}
	rep.load = map[string]map[string][]loadResult{}
	for r := range o.rounds {
		for _, sc := range scs {
			if rep.load[sc.key] == nil {
				rep.load[sc.key] = map[string][]loadResult{}
			}
			for i := range variants {
				v := variants[(i+r)%len(variants)]
				if v.peer && sc.path.auth {
					continue // peers do not intercept
				}
				res := runLoad(v, sc.path, sc.conns, sc.keepAlive, o.duration)
				rep.load[sc.key][v.name] = append(rep.load[sc.key][v.name], res)
				note := ""
				if res.errs > 0 {
					note = fmt.Sprintf(" errors=%d (%v)", res.errs, res.firstErr)
				}
				logf("round %d %-9s %-8s %8.0f req/s p50 %6s p99 %6s%s", r+1, sc.key, v.name, res.rps(),
					fmtDur(res.pct(0.50)), fmtDur(res.pct(0.99)), note)
			}
		}
	}

}

// runSSEPhase is the SSE phase: event delays on each path, through
// every variant.
func runSSEPhase(o options, variants []variant, rep *report) error {
	rep.sse = map[string]map[string][]sseResult{}
	ssePaths := []path{pathMITM, pathTunnel, pathPlain}
	if !o.phase("sse") {
		ssePaths = nil
	}
	for _, p := range ssePaths {
		logf("SSE %s", p.name)
		rep.sse[p.name] = map[string][]sseResult{}
		clients := map[string]*clientPair{}
		for _, v := range variants {
			c, tr, err := warmClient(v, p)
			if err != nil {
				return fmt.Errorf("SSE %s %s: %w", p.name, v.name, err)
			}
			clients[v.name] = &clientPair{c, tr.CloseIdleConnections}
		}
		for r := range o.rounds {
			for i := range variants {
				v := variants[(i+r)%len(variants)]
				for range o.sseRuns {
					res, err := runSSE(clients[v.name].c, p, o.sseEvents, o.sseGapMS)
					if err != nil {
						return fmt.Errorf("SSE %s %s: %w", p.name, v.name, err)
					}
					rep.sse[p.name][v.name] = append(rep.sse[p.name][v.name], res)
				}
			}
		}
		for _, c := range clients {
			c.close()
		}
	}

	return nil
}

// runConnsPhase measures the RSS of cork and the baseline holding many
// idle intercepted connections.
func runConnsPhase(o options, e *env, rep *report) error {
	idleVariants := []variant{e.vCork, e.vBase}
	if !o.phase("conns") {
		idleVariants = nil
	}
	for _, v := range idleVariants {
		closeAll, err := openIdle(v, pathMITM, o.idleConns)
		if err != nil {
			return fmt.Errorf("%s: %d idle connections: %w", v.name, o.idleConns, err)
		}
		time.Sleep(500 * time.Millisecond)
		rss := procStatusKB(v.pid, "VmRSS")
		closeAll()
		if v.name == "cork" {
			rep.connsRSS = rss
		} else {
			rep.connsRSSBase = rss
		}
		logf("%s RSS with %d idle connections: %.1f MiB", v.name, o.idleConns, mib(rss))
	}
	time.Sleep(300 * time.Millisecond)

	return nil
}

// runBulkPhase is the bulk phase: large bodies down and up, with peak
// RSS.
func runBulkPhase(o options, variants []variant, rep *report) error {
	if o.skipBulk || !o.phase("bulk") {
		return nil
	}
	n := o.bulkMiB << 20
	rep.bulk = map[string]*bulkResult{}
	for _, v := range variants {
		rep.bulk[v.name] = &bulkResult{}
	}
	for r := range o.bulkRounds {
		for i := range variants {
			v := variants[(i+r)%len(variants)]
			if err := runBulkRound(v, n, rep.bulk[v.name]); err != nil {
				return err
			}
			b := rep.bulk[v.name]
			logf("bulk round %d %-8s down %7.1f MiB/s up %7.1f MiB/s peak RSS %.1f MiB", r+1, v.name,
				b.down[r]/(1<<20), b.up[r]/(1<<20), mib(b.peakKB))
		}
	}
	return nil
}

type clientPair struct {
	c     *http.Client
	close func()
}

// runProfile runs the MITM keep-alive load against cork in-process (in a
// child) and writes the child's CPU profile.
func runProfile(o options) error {
	dir, err := os.MkdirTemp("", "cork-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	up, err := startUpstream(o.upstreamH2)
	if err != nil {
		return err
	}
	defer up.close()
	if _, err := up.writeCA(dir); err != nil {
		return err
	}
	extra := []string{"-child-cpuprofile", o.profile, "-child-log-level", o.corkLogLevel}
	if o.memProfile != "" {
		extra = append(extra, "-child-memprofile", o.memProfile)
	}
	p, err := startChild("cork-inproc", dir, up.resolveMap(), extra...)
	if err != nil {
		return err
	}
	v := proxyVariant("cork-inproc", p, up)
	e := &env{up: up}
	if err := probe(e, v); err != nil {
		p.stop()
		return err
	}
	if what, ok := strings.CutPrefix(o.profileWhat, "bulk-"); ok {
		c, tr, err := warmClient(v, pathMITM)
		if err != nil {
			p.stop()
			return err
		}
		logf("profiling: %d MiB %s through MITM", o.bulkMiB, what)
		bps, err := runBulk(c, pathMITM, o.bulkMiB<<20, what == "up")
		tr.CloseIdleConnections()
		p.stop()
		if err != nil {
			return err
		}
		logf("%.0f MiB/s", bps/(1<<20))
	} else {
		var sc *scenario
		for _, s := range scenarios(o) {
			if s.key == o.profileWhat {
				sc = &s
			}
		}
		if sc == nil {
			p.stop()
			return fmt.Errorf("-profile-scenario %q: unknown", o.profileWhat)
		}
		logf("profiling: %s, %s", sc.title, o.profileDur)
		res := runLoad(v, sc.path, sc.conns, sc.keepAlive, o.profileDur)
		p.stop()
		logf("%.0f req/s, p50 %s, p99 %s, errors %d, proxy CPU %.0f µs/request, upstream connections %d, TLS resumed %d of %d; %d log lines",
			res.rps(), fmtDur(res.pct(.5)), fmtDur(res.pct(.99)), res.errs,
			float64(res.proxyCPU.Microseconds())/float64(max(res.n, 1)), res.upConns, res.resumed, res.handshake, p.logN.Load())
	}
	logf("wrote %s; read it with: go tool pprof -top -nodecount=40 %s", o.profile, o.profile)
	return nil
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

// machineInfo describes the host for the report.
func machineInfo() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average " + strings.Join(strings.Fields(string(data))[:3], " ")
	}
	return fmt.Sprintf("%d CPUs (%s), %s %s/%s, GOMAXPROCS %d%s",
		runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), load)
}

// runBulkRound moves n bytes down and then up through MITM on one warm
// connection of v and appends the rates to b; for a proxy it also records
// the peak RSS and the CPU it used.
func runBulkRound(v variant, n int64, b *bulkResult) error {
	c, tr, err := warmClient(v, pathMITM)
	if err != nil {
		return fmt.Errorf("bulk %s: %w", v.name, err)
	}
	defer tr.CloseIdleConnections()
	var s *rssSampler
	resetOK := false
	if v.pid != 0 {
		runtime.GC()
		resetOK = resetPeakRSS(v.pid)
		s = sampleRSS(v.pid, 20*time.Millisecond)
	}
	cpu0 := cpuOf(v.pid)
	down, err := runBulk(c, pathMITM, n, false)
	if err != nil {
		return fmt.Errorf("bulk down %s: %w", v.name, err)
	}
	up, err := runBulk(c, pathMITM, n, true)
	if err != nil {
		return fmt.Errorf("bulk up %s: %w", v.name, err)
	}
	b.cpu = append(b.cpu, cpuOf(v.pid)-cpu0)
	b.down, b.up = append(b.down, down), append(b.up, up)
	if s != nil {
		peak := s.finish()
		if resetOK {
			peak = max(peak, procStatusKB(v.pid, "VmHWM"))
		}
		b.peakKB = max(b.peakKB, peak)
	}
	return nil
}
