package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// scenario is one throughput measurement: GET /1k on a path.
type scenario struct {
	key, title string
	path       path
	conns      int
	keepAlive  bool
}

func scenarios(o options) []scenario {
	c := o.conns
	return []scenario{
		{"plain-1", "plain HTTP forward (allowed host), keep-alive, 1 conn", pathPlain, 1, true},
		{"plain-" + itoa(c), fmt.Sprintf("plain HTTP forward (allowed host), keep-alive, %d conns", c), pathPlain, c, true},
		{"tunnel-1", "HTTPS through CONNECT tunnel, keep-alive, 1 conn", pathTunnel, 1, true},
		{"tunnel-" + itoa(c), fmt.Sprintf("HTTPS through CONNECT tunnel, keep-alive, %d conns", c), pathTunnel, c, true},
		{"mitm-1", "MITM + inject, keep-alive, 1 conn", pathMITM, 1, true},
		{"mitm-" + itoa(c), fmt.Sprintf("MITM + inject, keep-alive, %d conns", c), pathMITM, c, true},
		{"mitm-new", fmt.Sprintf("MITM + inject, new connection per request, %d workers", o.newConnConns), pathMITM, o.newConnConns, false},
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

// bulkResult is one variant's bulk transfers, one entry per round.
type bulkResult struct {
	down, up []float64 // bytes per second
	peakKB   int64     // the highest over rounds
	cpu      []time.Duration
}

// bulkRatio is the median over rounds of variant ÷ direct in the same
// round, for down or up.
func bulkRatio(v, direct *bulkResult, up bool) float64 {
	return median(perRoundBulk(v, direct, up))
}

// perRoundBulk is v's bulk rate ÷ direct's, per round.
func perRoundBulk(v, direct *bulkResult, up bool) []float64 {
	vs, ds := v.down, direct.down
	if up {
		vs, ds = v.up, direct.up
	}
	var out []float64
	for i := range min(len(vs), len(ds)) {
		out = append(out, vs[i]/ds[i])
	}
	return out
}

// perRound formats rates as "a / b / c" MiB/s.
func perRound(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x/(1<<20))
	}
	return strings.Join(parts, " / ")
}

type report struct {
	opts     options
	started  time.Time
	elapsed  time.Duration
	machine  string
	variants []string

	load map[string]map[string][]loadResult
	sse  map[string]map[string][]sseResult
	bulk map[string]*bulkResult

	latency *latencyResult
	peers   peerSet

	idleRSS, idleRSSBase   int64
	connsRSS, connsRSSBase int64
	corkHWM                int64
	corkLogLines           int64
	corkLogBytes           int64
	injected               int64
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rps is the median throughput of a variant in a scenario.
func (r *report) rps(key, v string) float64 {
	var xs []float64
	for _, l := range r.load[key][v] {
		xs = append(xs, l.rps())
	}
	return median(xs)
}

// ratio is the median over rounds of variant ÷ direct in the same round:
// pairing the rounds cancels slow drifts in the machine's load.
func (r *report) ratio(key, v string) float64 {
	d, x := r.load[key]["direct"], r.load[key][v]
	var xs []float64
	for i := range min(len(d), len(x)) {
		if d[i].rps() > 0 {
			xs = append(xs, x[i].rps()/d[i].rps())
		}
	}
	return median(xs)
}

func (r *report) lat(key, v string, q float64) time.Duration {
	var xs []time.Duration
	for _, l := range r.load[key][v] {
		xs = append(xs, l.pct(q))
	}
	return median(xs)
}

func (r *report) cpuPerReq(key, v string) float64 {
	var xs []float64
	for _, l := range r.load[key][v] {
		if l.n > 0 {
			xs = append(xs, float64(l.proxyCPU.Microseconds())/float64(l.n))
		}
	}
	return median(xs)
}

func (r *report) errs(key, v string) int {
	n := 0
	for _, l := range r.load[key][v] {
		n += l.errs
	}
	return n
}

func (r *report) resumed(key, v string) string {
	var res, hs int
	for _, l := range r.load[key][v] {
		res += l.resumed
		hs += l.handshake
	}
	if hs == 0 {
		return "–"
	}
	return fmt.Sprintf("%d%%", res*100/hs)
}

// upConnsPerReq is upstream connections opened per request.
func (r *report) upConnsPerReq(key, v string) float64 {
	var c int64
	var n int
	for _, l := range r.load[key][v] {
		c += l.upConns
		n += l.n
	}
	if n == 0 {
		return 0
	}
	return float64(c) / float64(n)
}

func (r *report) sseStat(p, v string, first bool) (med, worst time.Duration) {
	var xs []time.Duration
	for _, s := range r.sse[p][v] {
		if first {
			xs = append(xs, s.first)
		} else {
			xs = append(xs, s.maxGap)
		}
	}
	if len(xs) == 0 {
		return 0, 0
	}
	return median(xs), slices.Max(xs)
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func (r *report) write(w io.Writer) {
	o := r.opts
	c := itoa(o.conns)
	fmt.Fprintf(w, "### Run %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. Total benchmark time %s.\n", r.machine, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "Each scenario: %d rounds × %s per variant, interleaved (variant order rotated per round); "+
		"figures are medians over rounds, ratios are the median of per-round variant ÷ direct. "+
		"cork: the `cork proxy` binary, CORK_LOG_LEVEL=%s (%d log lines, %.1f MiB of JSON on stderr during the run). "+
		"Upstream HTTP/%s.\n\n", o.rounds, o.duration, o.corkLogLevel, r.corkLogLines, float64(r.corkLogBytes)/(1<<20),
		map[bool]string{false: "1.1", true: "2 (HTTPS) and 1.1"}[o.upstreamH2])

	fmt.Fprintln(w, "| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	row := func(target, measured string, ok bool) {
		fmt.Fprintf(w, "| %s | %s | %s |\n", target, measured, passFail(ok))
	}
	if r.load["mitm-"+c] != nil {
		mk, base := r.ratio("mitm-"+c, "cork"), r.ratio("mitm-"+c, "baseline")
		row("MITM + inject, keep-alive, "+c+" conns: ≥ 0.45 of direct and above the baseline",
			fmt.Sprintf("%.2f (baseline %.2f)", mk, base), mk >= 0.45 && mk > base)
		mn := r.ratio("mitm-new", "cork")
		row("MITM + inject, new connection per request: ≥ 0.55 of direct",
			fmt.Sprintf("%.2f (baseline %.2f; client TLS sessions resumed: cork %s, direct %s; upstream connections per request: cork %.2f, baseline %.2f)",
				mn, r.ratio("mitm-new", "baseline"), r.resumed("mitm-new", "cork"), r.resumed("mitm-new", "direct"),
				r.upConnsPerReq("mitm-new", "cork"), r.upConnsPerReq("mitm-new", "baseline")), mn >= 0.55)
	}
	r.tunnelTarget(row)
	r.latencyTargets(row)

	var firstParts, gapParts []string
	firstOK, gapOK := true, true
	for _, p := range []string{"mitm", "tunnel", "plain"} {
		if r.sse[p] == nil {
			continue
		}
		df, _ := r.sseStat(p, "direct", true)
		cf, _ := r.sseStat(p, "cork", true)
		dg, _ := r.sseStat(p, "direct", false)
		cg, _ := r.sseStat(p, "cork", false)
		firstParts = append(firstParts, fmt.Sprintf("%s %+.2f ms", p, ms(cf-df)))
		gapParts = append(gapParts, fmt.Sprintf("%s %+.2f ms", p, ms(cg-dg)))
		firstOK = firstOK && cf-df <= time.Millisecond
		gapOK = gapOK && cg-dg <= 2*time.Millisecond
	}
	if len(firstParts) > 0 {
		row("SSE: first event adds ≤ 1 ms (median vs direct)", strings.Join(firstParts, ", "), firstOK)
		row("SSE: largest inter-event gap grows by ≤ 2 ms (median vs direct)", strings.Join(gapParts, ", "), gapOK)
	}
	if b := r.bulk; b != nil {
		size := fmt.Sprintf("%d MiB", o.bulkMiB)
		if o.bulkMiB == 1024 {
			size = "1 GiB"
		}
		d, k, bl := b["direct"], b["cork"], b["baseline"]
		for _, up := range []bool{false, true} {
			dir, ks, ds := "down", k.down, d.down
			if up {
				dir, ks, ds = "up", k.up, d.up
			}
			kr := bulkRatio(k, d, up)
			row(size+" "+dir+" through MITM: ≥ 0.60 of direct",
				fmt.Sprintf("%.2f (%.0f vs %.0f MiB/s; baseline %.2f)", kr, median(ks)/(1<<20), median(ds)/(1<<20), bulkRatio(bl, d, up)),
				kr >= 0.60)
		}
		row("proxy peak RSS during the "+size+" transfers ≤ 48 MiB",
			fmt.Sprintf("%.1f MiB (baseline %.1f MiB)", mib(k.peakKB), mib(b["baseline"].peakKB)), mib(k.peakKB) <= 48)
	}
	row("idle RSS ≤ 20 MiB", fmt.Sprintf("%.1f MiB (baseline %.1f MiB)", mib(r.idleRSS), mib(r.idleRSSBase)), mib(r.idleRSS) <= 20)
	if r.connsRSS > 0 {
		row(fmt.Sprintf("RSS with %d open idle keep-alive MITM connections ≤ 48 MiB", o.idleConns),
			fmt.Sprintf("%.1f MiB (baseline %.1f MiB)", mib(r.connsRSS), mib(r.connsRSSBase)), mib(r.connsRSS) <= 48)
	}

	if len(r.load) > 0 {
		r.writeRequests(w)
		r.writePeers(w)
	}
	r.writeLatency(w)
	r.writeRest(w)
}

func (r *report) writeRequests(w io.Writer) {
	o := r.opts
	fmt.Fprintf(w, "\n#### Requests (GET 1 KiB body)\n\n")
	fmt.Fprintln(w, "| scenario | direct req/s | baseline req/s (÷ direct) | cork req/s (÷ direct) | p50 direct / baseline / cork | p99 direct / baseline / cork | proxy CPU per request baseline / cork |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, sc := range scenarios(o) {
		k := sc.key
		if r.load[k] == nil {
			continue
		}
		errNote := ""
		if n := r.errs(k, "direct") + r.errs(k, "baseline") + r.errs(k, "cork"); n > 0 {
			errNote = fmt.Sprintf(" (errors: direct %d, baseline %d, cork %d)", r.errs(k, "direct"), r.errs(k, "baseline"), r.errs(k, "cork"))
		}
		fmt.Fprintf(w, "| %s%s | %.0f | %.0f (%.2f) | %.0f (%.2f) | %s / %s / %s | %s / %s / %s | %.0f / %.0f µs |\n",
			sc.title, errNote,
			r.rps(k, "direct"), r.rps(k, "baseline"), r.ratio(k, "baseline"), r.rps(k, "cork"), r.ratio(k, "cork"),
			fmtDur(r.lat(k, "direct", .5)), fmtDur(r.lat(k, "baseline", .5)), fmtDur(r.lat(k, "cork", .5)),
			fmtDur(r.lat(k, "direct", .99)), fmtDur(r.lat(k, "baseline", .99)), fmtDur(r.lat(k, "cork", .99)),
			r.cpuPerReq(k, "baseline"), r.cpuPerReq(k, "cork"))
	}

}

func (r *report) writeRest(w io.Writer) {
	o := r.opts
	if len(r.sse) > 0 {
		fmt.Fprintf(w, "\n#### SSE (%d events, %d ms apart, warm keep-alive connection; %d streams per variant and path)\n\n",
			o.sseEvents, o.sseGapMS, o.sseRuns*o.rounds)
		fmt.Fprintln(w, "| path | first event direct / baseline / cork (median) | largest gap direct / baseline / cork (median; worst) |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, p := range []string{"mitm", "tunnel", "plain"} {
			if r.sse[p] == nil {
				continue
			}
			var first, gap []string
			for _, v := range r.variants {
				f, _ := r.sseStat(p, v, true)
				g, gw := r.sseStat(p, v, false)
				first = append(first, fmtDur(f))
				gap = append(gap, fmt.Sprintf("%s (%s)", fmtDur(g), fmtDur(gw)))
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", p, strings.Join(first, " / "), strings.Join(gap, " / "))
		}
	}

	if b := r.bulk; b != nil {
		fmt.Fprintf(w, "\n#### Bulk through MITM (%d MiB each way, one warm connection, %d rounds interleaved; per-round figures, median ratio in brackets)\n\n",
			o.bulkMiB, o.bulkRounds)
		d, bl, k := b["direct"], b["baseline"], b["cork"]
		fmt.Fprintln(w, "| | direct | baseline | cork |")
		fmt.Fprintln(w, "|---|---|---|---|")
		fmt.Fprintf(w, "| down MiB/s | %s | %s (%.2f) | %s (%.2f) |\n", perRound(d.down), perRound(bl.down), bulkRatio(bl, d, false), perRound(k.down), bulkRatio(k, d, false))
		fmt.Fprintf(w, "| up MiB/s | %s | %s (%.2f) | %s (%.2f) |\n", perRound(d.up), perRound(bl.up), bulkRatio(bl, d, true), perRound(k.up), bulkRatio(k, d, true))
		fmt.Fprintf(w, "| proxy peak RSS | – | %.1f MiB | %.1f MiB |\n", mib(bl.peakKB), mib(k.peakKB))
		fmt.Fprintf(w, "| proxy CPU per round (both directions), median | – | %.1f s | %.1f s |\n", median(bl.cpu).Seconds(), median(k.cpu).Seconds())
	}
	fmt.Fprintf(w, "\ncork's peak RSS over the whole run (VmHWM): %.1f MiB. Requests that reached the upstream with the real token: %d.\n",
		mib(r.corkHWM), r.injected)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
