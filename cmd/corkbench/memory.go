package main

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The memory phase reads what idle proxies hold: one `cork proxy` next to
// the raw goproxy baseline, then -memory-proxies `cork proxy` processes at
// once, one per session (each its own directory, policy, token map on
// stdin, CA and ports), as a host running that many sandboxes has them.

// Targets (docs/PERFORMANCE.md).
const (
	idleRSSTarget   = 12 << 10  // KiB: one idle proxy's RSS
	manyIdleTarget  = 600 << 10 // KiB: 50 idle proxies in total
	manyIdleTargetN = 50
)

// memSettle is how long a proxy sits idle after /readyz before it is read.
const memSettle = time.Second

// memSample is one process's memory in KiB: VmRSS, RssAnon and RssFile
// from /proc/PID/status, the rest from /proc/PID/smaps_rollup.
type memSample struct {
	rss, anon, file, pss, pssAnon, pssFile, privDirty int64
}

func (m memSample) add(o memSample) memSample {
	return memSample{m.rss + o.rss, m.anon + o.anon, m.file + o.file, m.pss + o.pss,
		m.pssAnon + o.pssAnon, m.pssFile + o.pssFile, m.privDirty + o.privDirty}
}

// parseKB reads the "Name: N kB" lines of a /proc file (status,
// smaps_rollup, meminfo) into KiB by name; other lines are skipped.
func parseKB(data []byte) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// readMem reads pid's memory.
func readMem(pid int) (memSample, error) {
	base := "/proc/" + strconv.Itoa(pid)
	st, err := os.ReadFile(base + "/status")
	if err != nil {
		return memSample{}, err
	}
	ro, err := os.ReadFile(base + "/smaps_rollup")
	if err != nil {
		return memSample{}, err
	}
	s, r := parseKB(st), parseKB(ro)
	return memSample{rss: s["VmRSS"], anon: s["RssAnon"], file: s["RssFile"], pss: r["Pss"],
		pssAnon: r["Pss_Anon"], pssFile: r["Pss_File"], privDirty: r["Private_Dirty"]}, nil
}

// memAvailable is MemAvailable of /proc/meminfo, in KiB.
func memAvailable() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	n, ok := parseKB(data)["MemAvailable"]
	if !ok {
		return 0, fmt.Errorf("/proc/meminfo: no MemAvailable")
	}
	return n, nil
}

// memoryReport is the phase's figures.
type memoryReport struct {
	started    time.Time
	elapsed    time.Duration
	machine    string
	logLevel   string
	build      string // buildLabel
	one, base  memSample
	n          int
	sum        memSample
	perProxy   []memSample
	availDrop  int64 // KiB, MemAvailable before − after starting the n proxies
	availAfter int64
	startAll   time.Duration // starting the n proxies one after another, each to ready
}

// runMemory runs the memory phase and writes its report to out.
func runMemory(o options, out io.Writer) error {
	t0 := time.Now()
	dir, bin, up, cleanup, err := proxyPhaseSetup(o, "memory")
	if err != nil {
		return err
	}
	defer cleanup()
	res := up.resolveMap()
	rep := &memoryReport{started: t0, machine: machineInfo(), logLevel: o.corkLogLevel, n: o.memoryProxies, build: buildLabel(o)}

	// (a) One idle proxy and the baseline.
	if err := corkDir(dir, up); err != nil {
		return err
	}
	p, _, err := startReadyCork(bin, dir, res, o.corkLogLevel)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	b, err := startChild("baseline", dir, res)
	if err != nil {
		p.stop()
		return fmt.Errorf("memory: %w", err)
	}
	time.Sleep(memSettle)
	rep.one, err = readMem(p.pid())
	if err == nil {
		rep.base, err = readMem(b.pid())
	}
	p.stop()
	b.stop()
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	logf("memory: one idle cork proxy VmRSS %.1f MiB (anon %.1f, file %.1f), Pss %.1f MiB; baseline VmRSS %.1f MiB",
		mib(rep.one.rss), mib(rep.one.anon), mib(rep.one.file), mib(rep.one.pss), mib(rep.base.rss))

	// (b) n idle proxies at once.
	before, err := memAvailable()
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	var procs []*proxyProc
	defer func() { stopAll(procs) }()
	t1 := time.Now()
	for i := range o.memoryProxies {
		sdir := filepath.Join(dir, fmt.Sprintf("session-%02d", i))
		if err := corkDir(sdir, up); err != nil {
			return err
		}
		p, _, err := startReadyCork(bin, sdir, res, o.corkLogLevel)
		if err != nil {
			return fmt.Errorf("memory: proxy %d of %d: %w", i+1, o.memoryProxies, err)
		}
		procs = append(procs, p)
	}
	rep.startAll = time.Since(t1)
	time.Sleep(memSettle)
	for _, p := range procs {
		m, err := readMem(p.pid())
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		rep.perProxy = append(rep.perProxy, m)
		rep.sum = rep.sum.add(m)
	}
	if rep.availAfter, err = memAvailable(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	rep.availDrop = before - rep.availAfter
	logf("memory: %d idle cork proxies: VmRSS sum %.1f MiB, Pss sum %.1f MiB, RssAnon sum %.1f MiB, MemAvailable fell by %.1f MiB",
		rep.n, mib(rep.sum.rss), mib(rep.sum.pss), mib(rep.sum.anon), mib(rep.availDrop))
	stopAll(procs)
	procs = nil
	rep.elapsed = time.Since(t0)
	rep.write(out)
	return nil
}

// stopAll stops procs in parallel.
func stopAll(procs []*proxyProc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

func (r *memoryReport) write(w io.Writer) {
	fmt.Fprintf(w, "### Memory of idle proxies: %s, run %s\n\n", r.build, r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. Total time %s.\n", r.machine, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "Each `cork proxy` is the built binary with the benchmark's environment (its own directory, policy file, "+
		"token map on stdin, a session CA generated and written out, its own proxy and admin ports, `CORK_LOG_LEVEL=%s`), "+
		"read %s after `/readyz` answered 200, with no request made. First one proxy alone, next to the raw goproxy "+
		"baseline (a child process, idle likewise); then %d proxies at once, started one after another (%s for all, each to ready), "+
		"as a host running %d sandboxes has them.\n\n", r.logLevel, memSettle, r.n, r.startAll.Round(10*time.Millisecond), r.n)
	perPss := r.sum.pss / int64(max(r.n, 1))
	fmt.Fprintln(w, "| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| idle RSS ≤ 12 MiB per proxy (one proxy's VmRSS) | %.1f MiB VmRSS: %.1f MiB anonymous + %.1f MiB file-backed; Pss %.1f MiB (baseline VmRSS %.1f MiB) | %s |\n",
		mib(r.one.rss), mib(r.one.anon), mib(r.one.file), mib(r.one.pss), mib(r.base.rss), passFail(r.one.rss <= idleRSSTarget))
	total := "Pss sum"
	if r.n != manyIdleTargetN {
		total = fmt.Sprintf("Pss sum × %d/%d", manyIdleTargetN, r.n)
	}
	scaled := r.sum.pss * manyIdleTargetN / int64(max(r.n, 1))
	fmt.Fprintf(w, "| 50 idle proxies ≤ 600 MiB in total (the result uses the %s: the memory they take) | %d proxies: Pss sum %.1f MiB (%.1f MiB per proxy); VmRSS sum %.1f MiB; MemAvailable fell by %.1f MiB | %s |\n\n",
		total, r.n, mib(r.sum.pss), mib(perPss), mib(r.sum.rss), mib(r.availDrop), passFail(scaled <= manyIdleTarget))

	fmt.Fprintln(w, "| MiB | VmRSS | RssAnon | RssFile | Pss | Pss_Anon | Pss_File | Private_Dirty |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	row := func(what string, m memSample) {
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", what,
			mib(m.rss), mib(m.anon), mib(m.file), mib(m.pss), mib(m.pssAnon), mib(m.pssFile), mib(m.privDirty))
	}
	row("one idle `cork proxy`", r.one)
	row("the baseline (raw goproxy, idle)", r.base)
	if len(r.perProxy) > 0 {
		row(fmt.Sprintf("%d idle `cork proxy`: the sum", r.n), r.sum)
		row(fmt.Sprintf("%d idle `cork proxy`: the median proxy", r.n), medianMem(r.perProxy))
	}
	fmt.Fprintf(w, "\nMemAvailable (/proc/meminfo) fell by %.1f MiB while the %d proxies started (%.1f MiB available after); "+
		"other processes on the machine move it too.\n\n", mib(r.availDrop), r.n, mib(r.availAfter))
	fmt.Fprintln(w, "What the columns mean. VmRSS is every page the process has mapped in memory. RssFile is the part backed by "+
		"a file — here the cork binary's text and read-only data, which the kernel keeps once in its page cache and "+
		"shares between every process running that binary (on this kernel a Go binary's text is mapped in large "+
		"folios, so nearly the whole binary shows up as resident though little of it runs). RssAnon is the heap, stacks "+
		"and runtime data: what each proxy adds on its own. Pss (proportional set size) divides each shared page "+
		"among the processes that map it, so the sum of Pss over all proxies counts the binary once and each proxy's "+
		"anonymous memory once: it is the memory the proxies take. The sum of VmRSS counts the binary once per proxy and "+
		"overstates that. Private_Dirty is the pages only this process has written. The baseline is the benchmark's own "+
		"binary re-executed, so it shares its file-backed pages with the benchmark process and its Pss halves them. MemAvailable's drop is the "+
		"machine's view: anonymous memory plus kernel memory (page tables, sockets), the binary being already cached.")
}

// medianMem is the sample with the median Pss.
func medianMem(ms []memSample) memSample {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b memSample) int { return cmp.Compare(a.pss, b.pss) })
	return s[(len(s)-1)/2]
}
