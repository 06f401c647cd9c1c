package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The latency phase measures what one request gains through a proxy:
// closed loop, a fixed number of requests per variant and round, each
// timed on its own, at a few concurrencies; per round the p50/p90/p99 of
// each variant and their difference from direct in the same round; the
// report gives medians over rounds. It also times the first byte of a
// stream (an SSE event, a WebSocket message) on a new connection.

// latKind is how the requests of a latency row use their connections.
type latKind int

const (
	latWarm    latKind = iota // keep-alive connection opened before timing; the whole GET is timed
	latNew                    // new connection per request, no TLS session cache (full handshake)
	latResumed                // new connection per request, a session cache primed before timing
)

// latRow is one row of the latency table.
type latRow struct {
	key, title string
	path       path
	kind       latKind
}

var latRows = []latRow{
	{"mitm-warm", "intercepted, warm connection", pathMITM, latWarm},
	{"mitm-new", "intercepted, new connection, full TLS handshake", pathMITM, latNew},
	{"mitm-resumed", "intercepted, new connection, resumed TLS session", pathMITM, latResumed},
	{"tunnel-warm", "CONNECT tunnel, warm connection", pathTunnel, latWarm},
	{"plain-warm", "plain HTTP forward, warm connection", pathPlain, latWarm},
}

// streamRow is one row of the first-byte table.
type streamRow struct {
	key, title string
	path       path
	ws         bool
}

var streamRows = []streamRow{
	{"sse-mitm", "SSE first event, intercepted", pathMITM, false},
	{"sse-tunnel", "SSE first event, CONNECT tunnel", pathTunnel, false},
	{"ws-mitm", "WebSocket first message, intercepted (wss://bench.test/ws, placeholder injected)", pathMITM, true},
	{"ws-tunnel", "WebSocket first message, CONNECT tunnel", pathTunnel, true},
}

// streamRuns is the number of streams per row, variant and round.
const streamRuns = 10

// latCap bounds one variant's requests in one round: a peer that closes
// every connection (tinyproxy on plain HTTP) would otherwise take most of
// the phase. The report gives the number of requests timed.
const latCap = 3 * time.Second

// latKey names one series of rounds: a row, a concurrency, a variant.
type latKey struct {
	row     string
	conc    int
	variant string
}

// latRun is one variant's requests in one round.
type latRun struct {
	p50, p90, p99  time.Duration
	n, errs        int
	firstErr       error
	resumed, hands int   // TLS handshakes with the client (new-connection rows)
	upConns        int64 // connections the upstream accepted while timing
}

// streamRun is one variant's streams of a row in one round.
type streamRun struct {
	med      time.Duration
	n, errs  int
	firstErr error
}

// latencyResult holds the latency phase's rounds.
type latencyResult struct {
	conc     []int
	variants map[string][]string // row key → variants measured, in report order
	runs     map[latKey][]latRun
	streams  map[string]map[string][]streamRun
}

// parseConc parses -latency-conc ("1,8").
func parseConc(s string) ([]int, error) {
	var cs []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-latency-conc %q: want positive integers separated by commas", s)
		}
		cs = append(cs, n)
	}
	return cs, nil
}

// runLatencyPhase runs the latency rows and the first-byte rows on
// direct, the baseline and cork, and on the peers where nothing is
// intercepted.
func runLatencyPhase(o options, variants, peers []variant, rep *report) error {
	if !o.phase("latency") {
		return nil
	}
	conc, err := parseConc(o.latencyConc)
	if err != nil {
		return err
	}
	res := &latencyResult{conc: conc, variants: map[string][]string{}, runs: map[latKey][]latRun{},
		streams: map[string]map[string][]streamRun{}}
	rep.latency = res
	forPath := func(key string, p path) []variant {
		vs := slices.Clone(variants)
		if !p.auth {
			vs = append(vs, peers...)
		}
		for _, v := range vs {
			res.variants[key] = append(res.variants[key], v.name)
		}
		return vs
	}
	rowVariants := map[string][]variant{}
	for _, row := range latRows {
		rowVariants[row.key] = forPath(row.key, row.path)
	}
	for _, row := range streamRows {
		rowVariants[row.key] = forPath(row.key, row.path)
		res.streams[row.key] = map[string][]streamRun{}
	}
	logf("latency: %d rounds; %d requests per variant (%d on new connections) at %s client(s)",
		o.rounds, o.latencyRequests, o.latencyNewRequests, o.latencyConc)
	for r := range o.rounds {
		for _, row := range latRows {
			n := o.latencyRequests
			if row.kind != latWarm {
				n = o.latencyNewRequests
			}
			vs := rowVariants[row.key]
			for _, c := range conc {
				for i := range vs {
					v := vs[(i+r)%len(vs)]
					lr := runLatency(v, row, c, n)
					k := latKey{row.key, c, v.name}
					res.runs[k] = append(res.runs[k], lr)
					note := ""
					if lr.errs > 0 {
						note = fmt.Sprintf(" errors=%d (%v)", lr.errs, lr.firstErr)
					}
					logf("latency round %d %-12s c=%d %-9s p50 %6s p90 %6s p99 %6s%s", r+1, row.key, c, v.name,
						fmtDur(lr.p50), fmtDur(lr.p90), fmtDur(lr.p99), note)
				}
			}
		}
		for _, row := range streamRows {
			vs := rowVariants[row.key]
			for i := range vs {
				v := vs[(i+r)%len(vs)]
				sr := runStreams(v, row, streamRuns)
				res.streams[row.key][v.name] = append(res.streams[row.key][v.name], sr)
				note := ""
				if sr.errs > 0 {
					note = fmt.Sprintf(" errors=%d (%v)", sr.errs, sr.firstErr)
				}
				logf("first byte round %d %-10s %-9s %6s%s", r+1, row.key, v.name, fmtDur(sr.med), note)
			}
		}
	}
	return nil
}

// runLatency sends n requests on row's path through v from conc clients
// in a closed loop and returns the percentiles of those that succeeded.
// Clients are made (and warm ones warmed) before the timing starts.
func runLatency(v variant, row latRow, conc, n int) latRun {
	p := v.route(row.path)
	var cache tls.ClientSessionCache
	if row.kind == latResumed {
		cache = tls.NewLRUClientSessionCache(4 * conc)
	}
	clients := make([]*http.Client, conc)
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := range clients {
		if row.kind == latWarm {
			c, tr, err := warmClient(v, row.path)
			if err != nil {
				return latRun{errs: n, firstErr: err}
			}
			clients[i], closers = c, append(closers, tr.CloseIdleConnections)
			continue
		}
		tr := v.clientTransport(false, cache)
		clients[i], closers = &http.Client{Transport: tr, Timeout: 30 * time.Second}, append(closers, tr.CloseIdleConnections)
		if row.kind == latResumed {
			if err := get1k(context.Background(), clients[i], p); err != nil {
				return latRun{errs: n, firstErr: err}
			}
		}
	}
	var conns0 int64
	if v.up != nil {
		conns0 = v.up.conns.Load()
	}
	stopAt := time.Now().Add(latCap)
	var (
		next          atomic.Int64
		resumed, hand atomic.Int64
		mu            sync.Mutex
		wg            sync.WaitGroup
		all           []time.Duration
		errs          int
		firstErr      error
	)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var e int
			var fe error
			for next.Add(1) <= int64(n) && time.Now().Before(stopAt) {
				var d time.Duration
				var err error
				if row.kind == latWarm {
					t0 := time.Now()
					err = get1k(context.Background(), c, p)
					d = time.Since(t0)
				} else {
					d, err = timeFirstByte(c, p, &resumed, &hand)
				}
				if err != nil {
					e++
					if fe == nil {
						fe = err
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			if firstErr == nil {
				firstErr = fe
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	var upConns int64
	if v.up != nil {
		upConns = v.up.conns.Load() - conns0
	}
	slices.Sort(all)
	lr := loadResult{lat: all}
	return latRun{p50: lr.pct(.50), p90: lr.pct(.90), p99: lr.pct(.99), n: len(all), errs: errs, firstErr: firstErr,
		resumed: int(resumed.Load()), hands: int(hand.Load()), upConns: upConns}
}

// timeFirstByte sends GET /1k on a new connection and returns the time
// from the request's start (dial, CONNECT, TLS) to the response's first
// byte; the body is read and checked after.
func timeFirstByte(c *http.Client, p path, resumed, hand *atomic.Int64) (time.Duration, error) {
	var first time.Time
	trace := &httptrace.ClientTrace{
		GotFirstResponseByte: func() { first = time.Now() },
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			if err == nil {
				hand.Add(1)
				if cs.DidResume {
					resumed.Add(1)
				}
			}
		},
	}
	t0 := time.Now()
	if err := get1k(httptrace.WithClientTrace(context.Background(), trace), c, p); err != nil {
		return 0, err
	}
	if first.IsZero() {
		return 0, errors.New("no first response byte seen")
	}
	return first.Sub(t0), nil
}

// runStreams opens n streams of row through v, one after another, and
// returns the median time to the first event or message.
func runStreams(v variant, row streamRow, n int) streamRun {
	var ds []time.Duration
	var sr streamRun
	for range n {
		d, err := firstByte(v, row.path, row.ws)
		if err != nil {
			sr.errs++
			if sr.firstErr == nil {
				sr.firstErr = err
			}
			continue
		}
		ds = append(ds, d)
	}
	sr.n, sr.med = len(ds), median(ds)
	return sr
}

// pct is the median over rounds of a percentile (q: 50, 90, 99).
func (l *latencyResult) pct(k latKey, q int) time.Duration {
	var xs []time.Duration
	for _, r := range l.runs[k] {
		if r.n > 0 {
			xs = append(xs, r.at(q))
		}
	}
	return median(xs)
}

func (r latRun) at(q int) time.Duration {
	switch q {
	case 50:
		return r.p50
	case 90:
		return r.p90
	}
	return r.p99
}

// added is the median over rounds of variant − direct in the same round.
func (l *latencyResult) added(row string, conc int, v string, q int) (time.Duration, bool) {
	d, x := l.runs[latKey{row, conc, "direct"}], l.runs[latKey{row, conc, v}]
	var xs []time.Duration
	for i := range min(len(d), len(x)) {
		if d[i].n > 0 && x[i].n > 0 {
			xs = append(xs, x[i].at(q)-d[i].at(q))
		}
	}
	return median(xs), len(xs) > 0
}

// streamAdded is the median over rounds of the variant's median first
// byte − direct's in the same round.
func (l *latencyResult) streamAdded(row, v string) (abs, added time.Duration, ok bool) {
	d, x := l.streams[row]["direct"], l.streams[row][v]
	var as, xs []time.Duration
	for i := range min(len(d), len(x)) {
		if x[i].n > 0 {
			as = append(as, x[i].med)
		}
		if d[i].n > 0 && x[i].n > 0 {
			xs = append(xs, x[i].med-d[i].med)
		}
	}
	return median(as), median(xs), len(as) > 0
}

// count sums a series' requests timed, errors and upstream connections.
func (l *latencyResult) count(k latKey) (n, errs int, upConns int64, first error) {
	for _, r := range l.runs[k] {
		n, errs, upConns = n+r.n, errs+r.errs, upConns+r.upConns
		if first == nil {
			first = r.firstErr
		}
	}
	return n, errs, upConns, first
}

// latencyTargets adds the latency targets to the targets table.
func (r *report) latencyTargets(row func(target, measured string, ok bool)) {
	l := r.latency
	if l == nil || !slices.Contains(l.conc, 1) {
		return
	}
	k50, ok1 := l.added("mitm-warm", 1, "cork", 50)
	k99, ok2 := l.added("mitm-warm", 1, "cork", 99)
	b50, ok3 := l.added("mitm-warm", 1, "baseline", 50)
	b99, _ := l.added("mitm-warm", 1, "baseline", 99)
	if ok1 && ok2 && ok3 {
		row("added latency, warm intercepted connection, 1 client: p50 ≤ +0.25 ms and p99 ≤ +1 ms over direct",
			fmt.Sprintf("p50 %+.3f ms, p99 %+.3f ms (baseline %+.3f / %+.3f ms)", ms(k50), ms(k99), ms(b50), ms(b99)),
			k50 <= 250*time.Microsecond && k99 <= time.Millisecond)
		ratio := "–"
		if b50 > 0 {
			ratio = fmt.Sprintf("%.2f", float64(k50)/float64(b50))
		}
		row("added latency, warm intercepted connection, 1 client: at or below the baseline's (aim: cork ÷ baseline ≤ 0.8)",
			fmt.Sprintf("p50 cork %+.3f vs baseline %+.3f ms: cork ÷ baseline %s", ms(k50), ms(b50), ratio), k50 <= b50)
	}
	n50, ok1 := l.added("mitm-new", 1, "cork", 50)
	nb50, _ := l.added("mitm-new", 1, "baseline", 50)
	r50, ok2 := l.added("mitm-resumed", 1, "cork", 50)
	rb50, _ := l.added("mitm-resumed", 1, "baseline", 50)
	if ok1 && ok2 {
		row("new intercepted connection (CONNECT + TLS + first byte), 1 client: p50 ≤ +3 ms over direct TLS",
			fmt.Sprintf("full handshake %+.2f ms (baseline %+.2f ms); resumed session %+.2f ms (baseline %+.2f ms)",
				ms(n50), ms(nb50), ms(r50), ms(rb50)), n50 <= 3*time.Millisecond)
	}
}

// writeLatency writes the latency phase's tables.
func (r *report) writeLatency(w io.Writer) {
	l := r.latency
	if l == nil {
		return
	}
	o := r.opts
	fmt.Fprintf(w, "\n#### Added latency per request\n\n")
	fmt.Fprintf(w, "Closed loop: %d requests per variant, round and concurrency (%d on new connections; a run stops after %s), "+
		"each timed on its own, from %s client(s) at once; %d rounds, variants interleaved (order rotated per round). "+
		"Warm rows time a whole GET of 1 KiB on a keep-alive connection opened before the timing; new-connection rows time "+
		"from the request's start (dial, CONNECT, TLS handshake with the proxy's leaf or, direct, the upstream) to the first byte "+
		"of the response, with no TLS session cache (full handshake) or with one primed before the timing (resumed: %s). "+
		"Per round: p50 / p90 / p99 of each variant and variant − direct; figures are medians over rounds. %s\n\n",
		o.latencyRequests, o.latencyNewRequests, latCap, strings.ReplaceAll(o.latencyConc, ",", " or "), o.rounds, l.resumedNote(), r.peers.sentence())
	fmt.Fprintln(w, "| path | clients | variant | p50 | p90 | p99 | added p50 / p90 / p99 | requests timed (errors) | upstream connections per request |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, row := range latRows {
		for _, c := range l.conc {
			for _, v := range l.variants[row.key] {
				k := latKey{row.key, c, v}
				if len(l.runs[k]) == 0 {
					continue
				}
				added := "–"
				if v != "direct" {
					a50, _ := l.added(row.key, c, v, 50)
					a90, _ := l.added(row.key, c, v, 90)
					a99, _ := l.added(row.key, c, v, 99)
					added = fmt.Sprintf("%+.3f / %+.3f / %+.3f ms", ms(a50), ms(a90), ms(a99))
				}
				n, errs, upConns, first := l.count(k)
				timed := fmt.Sprintf("%d (0)", n)
				if errs > 0 {
					timed = fmt.Sprintf("%d (%d: %s)", n, errs, firstLine(first))
				}
				fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %.2f |\n", row.title, c, v,
					fmtDur(l.pct(k, 50)), fmtDur(l.pct(k, 90)), fmtDur(l.pct(k, 99)), added, timed,
					float64(upConns)/float64(max(n+errs, 1)))
			}
		}
	}

	fmt.Fprintf(w, "\n#### First byte of a stream on a new connection\n\n")
	fmt.Fprintf(w, "From the start of the dial (TCP, CONNECT through a proxy, a full TLS handshake) to the first SSE event "+
		"(`GET /sse?n=1`) or the first WebSocket message's payload read (`GET /ws`: the upstream completes the upgrade and "+
		"sends one text frame at once); %d streams per variant and round, %d rounds; median of the round's streams, "+
		"then the median over rounds (in brackets: added over direct, per round, then the median).\n\n", streamRuns, o.rounds)
	names := []string{"direct", "baseline", "cork"}
	names = append(names, r.peers.names...)
	fmt.Fprintf(w, "| stream | %s |\n|---|%s\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
	for _, row := range streamRows {
		cells := make([]string, len(names))
		for i, v := range names {
			cells[i] = "–"
			runs := l.streams[row.key][v]
			if len(runs) == 0 {
				continue
			}
			var n, errs int
			var first error
			for _, s := range runs {
				n, errs = n+s.n, errs+s.errs
				if first == nil {
					first = s.firstErr
				}
			}
			abs, added, ok := l.streamAdded(row.key, v)
			switch {
			case !ok:
				cells[i] = fmt.Sprintf("no stream of %d: %s", errs, firstLine(first))
			case v == "direct":
				cells[i] = fmtDur(abs)
			default:
				cells[i] = fmt.Sprintf("%s (%+.2f ms)", fmtDur(abs), ms(added))
			}
			if ok && errs > 0 {
				cells[i] += fmt.Sprintf("; %d of %d failed: %s", errs, n+errs, firstLine(first))
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", row.title, strings.Join(cells, " | "))
	}
}

// resumedNote says how many client handshakes resumed in the resumed row.
func (l *latencyResult) resumedNote() string {
	var parts []string
	for _, v := range l.variants["mitm-resumed"] {
		var res, hs int
		for _, c := range l.conc {
			for _, r := range l.runs[latKey{"mitm-resumed", c, v}] {
				res, hs = res+r.resumed, hs+r.hands
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d of %d", v, res, hs))
	}
	return strings.Join(parts, ", ")
}

// firstLine is an error's text without newlines, cut short for a table.
func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return strings.ReplaceAll(s, "|", "/")
}
