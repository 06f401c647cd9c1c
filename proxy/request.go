package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/scrub"
	"github.com/cork-sh/cork/proxy/wsrelay"
	"github.com/cork-sh/cork/resolve"
)

// reqState follows one HTTP request (plain, or inside an intercepted
// connection) from its decision to the end of its response body.
type reqState struct {
	conn     *connState
	start    time.Time
	method   string
	path     string
	host     string
	port     int
	what     string // for messages
	decision string
	slot     string
	ref      string // the first ref a refused push updates (push.go)
	rule     string // the policy entry that decided (rule.go)
	status   int
	up, down atomic.Int64
	busy     *trackedConn // intercepted connection kept busy until done
	// abort, when set, makes serveRequest abort the client connection
	// (panic(http.ErrAbortHandler)) once forward returns: a response body
	// that fails midway sets it. goproxy ignores the copy error, and
	// net/http would end a chunked body cleanly, so a cut stream would look
	// complete to the client. Nil for a request without a respWriter.
	abort *atomic.Bool
	once  sync.Once

	ts        *tokenState // the tokens this request was sent with, and is scrubbed by
	routed    bool        // the host has routes: responses are scrubbed of real tokens
	pass      bool        // every route says unscrubbable: pass
	websocket bool        // the request asks for a WebSocket upgrade
	unbound   []bool      // slots whose placeholders are leaks here (scanner.unbound)
	scrubbed  atomic.Int64
	leakSlot  atomic.Pointer[string] // set when the tripwire fires on the body, a trailer or a frame
	asked     bool                   // Config.Unlisted lifted the policy's denial: audited as ReasonAsked
}

// setLeak records the first slot whose placeholder the request carried
// where the header scan could not see it.
func (rs *reqState) setLeak(slot string) { rs.leakSlot.CompareAndSwap(nil, &slot) }

func (rs *reqState) leaked() string {
	if s := rs.leakSlot.Load(); s != nil {
		return *s
	}
	return ""
}

// finish writes the request's audit line once and releases its connection.
// A request cut while the proxy shuts down is reported as such.
func (p *Proxy) finish(rs *reqState, reason string, warn bool) {
	rs.once.Do(func() {
		p.release(rs)
		if reason != "" && reason != ReasonPlaceholderLeak && p.cutting.Load() {
			reason = reasonShutdown
		}
		if reason == "" && rs.asked {
			reason = ReasonAsked
		}
		p.audit(&auditEntry{
			decision: rs.decision, host: rs.host, port: rs.port, method: rs.method, path: rs.path,
			slot: rs.slot, status: rs.status, up: rs.up.Load(), down: rs.down.Load(),
			dur: time.Since(rs.start), reason: reason, connID: rs.conn.id, warn: warn,
			scrubbed: rs.scrubbed.Load(), ref: rs.ref, rule: rs.rule,
		})
	})
}

// scrubHit counts one real token replaced in what an upstream sent back.
func (p *Proxy) scrubHit(rs *reqState, slot, where string) {
	rs.scrubbed.Add(1)
	p.metrics.scrubbed.WithLabelValues(slot, where).Inc()
}

func (p *Proxy) release(rs *reqState) {
	if c := rs.busy; c != nil {
		rs.busy = nil
		c.touch()
		c.busy.Add(-1)
	}
}

// handleRequest decides an HTTP request (docs/DESIGN.md, decisions 2–4):
// goproxy calls it for plain-HTTP requests and for every request inside an
// intercepted connection. It returns a response to refuse, or the request to
// send. Its stages are requestTarget (where the request goes),
// decideRequest (what the policy says), checkPush (a git push's refs), the
// tripwire, and injectRoutes (the route's credentials); then the body is wrapped for the tripwire and
// counting.
func (p *Proxy) handleRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	// docs/DESIGN.md, trap 5: our round tripper turns upstream errors into
	// 502/504.
	ctx.RoundTripper = p.rt
	// Requests inside an intercepted connection come from the inner
	// server (mitm.go) with their connection's state in the context;
	// plain-HTTP ones with a state of their own from ServeHTTP.
	rs := p.newReqState(req)
	ctx.UserData = rs
	st := rs.conn

	t, d := requestTarget(req, st)
	rs.host, rs.port = t.host, t.port
	if d != nil {
		return p.refuse(req, rs, *d)
	}
	scheme, host, port := t.scheme, t.host, t.port
	req.URL.Host = t.dial
	// The upstream gets the authority the policy matched, not the
	// client's spelling of it (case, trailing dot, default port).
	req.Host = canonicalAuthority(scheme, host, port)
	rs.what = requestWhat(req.Method, scheme, req.URL.Host, req.URL)

	ps := p.policy.Load()
	rules := ps.pol.Lookup(host, port)
	var ask func(deny) bool // made only with a hook: no allocation per request otherwise
	if p.unlisted != nil {
		ask = func(d deny) bool {
			// A placeholder this host may not receive: the tripwire below
			// refuses the request whatever the answer (naming the slot), so
			// nobody is asked about it; the denial is left to the tripwire.
			var b [4]int
			if unboundSlot(ps.scan, ps.scan.scanRequest(req, slotSet(b[:0])), rules) != "" {
				return true
			}
			ok := p.askRequest(req, host, port, rules, d)
			rs.asked = rs.asked || ok
			return ok
		}
	}
	v, d := decideRequest(req, scheme, rules, rs.what, ask)
	if d != nil {
		d.rule = deniedBy(ps.pol, rules, req.URL.EscapedPath(), d.reason)
		return p.refuse(req, rs, *d)
	}
	rs.rule = passedBy(ps.pol, rules)
	if resp := p.checkPush(req, rs, rules.Routes, ps.scan); resp != nil {
		return req, resp
	}
	routes := rules.Routes
	rs.websocket = v.websocket
	rs.routed, rs.pass = len(routes) > 0, rules.PassUnscrubbable()
	if rs.routed {
		filterAcceptEncoding(req.Header)
		if !rs.pass {
			// Ranges would let the sandbox fetch an echoed token in pieces
			// the scrubber cannot recognise; the whole answer is fine
			// (RFC 9110 14.2: a server may ignore Range).
			req.Header.Del("Range")
			req.Header.Del("If-Range")
		}
	}

	stripProxyAuth(req.Header)
	// docs/DESIGN.md, decision 3 (the tripwire): a placeholder goes only to
	// its slot's hosts.
	var buf [4]int
	found := ps.scan.scanRequest(req, slotSet(buf[:0]))
	if slot := unboundSlot(ps.scan, found, rules); slot != "" {
		return p.leak(req, rs, ps.scan, slot)
	}
	rs.unbound = ps.scan.unbound(rules)

	rs.decision = decisionForward
	slots, missing := injectRoutes(req.Header, routes, ps.pol.Slots, rs.ts.toks)
	if slots != "" {
		rs.decision, rs.slot = decisionInject, slots
	}
	if missing != "" {
		rs.slot = missing
		return p.refuse(req, rs, deny{reason: ReasonTokenUnavailable, what: rs.what, detail: missing})
	}
	if len(found) > 0 {
		// Placeholders never leave the proxy: one left anywhere after
		// injection (another header, the URL, a malformed Basic) is a leak.
		if left := ps.scan.scanRequest(req, nil); len(left) > 0 {
			return p.leak(req, rs, ps.scan, ps.scan.slots[left[0]])
		}
	}

	return p.guardBody(req, rs, ps.scan)
}

// newReqState starts the state of one request: its connection's (inside
// an intercepted connection, from the inner server; a plain request gets
// one of its own), which it keeps busy for the idle reaper.
func (p *Proxy) newReqState(req *http.Request) *reqState {
	st := connStateOf(req)
	if st == nil {
		st = p.newConnState()
	}
	rs := &reqState{conn: st, start: time.Now(), method: req.Method, path: cleanPath(req.URL), ts: p.tokens.Load()}
	rs.abort = st.abort
	if st.mode == modeMITM && st.conn != nil {
		rs.busy = st.conn
		st.conn.busy.Add(1)
	}
	return rs
}

// unboundSlot returns the first slot among found whose placeholder may not
// go to a host with rules, or "".
func unboundSlot(sc *scanner, found []int, rules policy.HostRules) string {
	for _, i := range found {
		if slot := sc.slots[i]; !rules.Binds(slot) {
			return slot
		}
	}
	return ""
}

// guardBody is the last stage of handleRequest: the tripwire on the
// request body (a small body is scanned before anything is sent; a longer
// one, and its trailers, as they stream), and its byte count.
func (p *Proxy) guardBody(req *http.Request, rs *reqState, sc *scanner) (*http.Request, *http.Response) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	if rs.unbound != nil {
		slot, done, err := sc.prescan(req, rs.unbound)
		switch {
		case err != nil:
			return p.refuse(req, rs, deny{reason: ReasonBadRequest, what: rs.what, detail: "the request body could not be read"})
		case slot != "":
			return p.leak(req, rs, sc, slot)
		case !done:
			req.Body = newTripBody(req, sc, rs.unbound, rs)
		}
	}
	req.Body = &countingBody{ReadCloser: req.Body, n: &rs.up}
	return req, nil
}

// target is where a request goes: its scheme, the normalised host and port
// the policy is looked up with, and the authority to dial.
type target struct {
	scheme string
	host   string
	port   int
	dial   string // req.URL.Host to send to
}

// requestTarget is the first stage of handleRequest: it normalises req's
// host, port and scheme, and refuses what cannot be a target. Inside an
// intercepted connection (st in modeMITM) both the URL and the Host header
// must name the CONNECT host:port (docs/DESIGN.md, trap 4), and the target
// is the CONNECT one; a plain request needs an absolute http:// or https://
// URL whose Host header agrees. On refusal the target holds what the audit
// line names (the CONNECT host:port, or nothing). It does not modify req.
func requestTarget(req *http.Request, st *connState) (target, *deny) {
	scheme := req.URL.Scheme
	path := cleanPath(req.URL)
	if st.mode == modeMITM {
		// goproxy sends an inner request wherever its URL or Host says,
		// with whatever we inject. The port defaults to the CONNECT port.
		uh, up, err1 := hostPortOf(req.URL.Host, st.port)
		hh, hp, err2 := hostPortOf(req.Host, st.port)
		t := target{scheme: scheme, host: st.host, port: st.port, dial: st.authority}
		if err1 != nil || err2 != nil || uh != st.host || up != st.port || hh != st.host || hp != st.port {
			bad, badPort, badErr := uh, up, err1
			if err1 == nil && uh == st.host && up == st.port {
				bad, badPort, badErr = hh, hp, err2
			}
			what := req.Method + " " + scheme + "://" + showAuthority(bad, badPort, badErr) + path
			return target{host: st.host, port: st.port}, &deny{reason: ReasonHostMismatch, what: what, detail: st.authority}
		}
		return t, nil
	}
	def := 0
	switch scheme {
	case "http":
		def = 80
	case "https":
		def = 443
	}
	host, port, err := hostPortOf(req.URL.Host, def)
	if err != nil || def == 0 {
		return target{}, &deny{reason: ReasonBadRequest, what: req.Method,
			detail: "the request target must be an absolute http:// URL with a valid host"}
	}
	if hh, hp, err := hostPortOf(req.Host, def); err != nil || hh != host || hp != port {
		return target{}, &deny{reason: ReasonBadRequest, what: req.Method + " " + scheme + "://" + joinHostPort(host, port),
			detail: "the Host header differs from the request URL"}
	}
	return target{scheme: scheme, host: host, port: port, dial: joinHostPort(host, port)}, nil
}

// verdict is what decideRequest allows beyond forwarding: a WebSocket
// upgrade (relayed frame by frame, upgrade.go).
type verdict struct {
	websocket bool
}

// decideRequest is the second stage of handleRequest: given the host's
// rules from the policy, it refuses a blocked host or path, a method or
// path outside the host's method rules and scoped allows, a host neither
// routed nor allowed, a route over clear text that does not say
// insecure_http (docs/DESIGN.md, decision 4), TRACE/TRACK to a routed host,
// an opaque target, and any upgrade but WebSocket (decision 5). what names
// the request in messages. ask, if not nil, may lift a method, path or
// not-allowed denial for this request (Config.Unlisted). It does not modify
// req.
func decideRequest(req *http.Request, scheme string, rules policy.HostRules, what string, ask func(deny) bool) (verdict, *deny) {
	lift := func(d *deny) bool { return ask != nil && ask(*d) }
	if b := rules.HostBlock; b != nil {
		return verdict{}, &deny{reason: ReasonBlocked, what: what, detail: b.Reason}
	}
	if b := rules.BlockFor(req.URL.EscapedPath()); b != nil {
		return verdict{}, &deny{reason: ReasonBlocked, what: what, detail: b.Reason}
	}
	if d := permitDeny(req, rules, what); d != nil && !lift(d) {
		return verdict{}, d
	}
	routes := rules.Routes
	if len(routes) == 0 && !rules.Allowed {
		// Made here only: a deny escapes (through lift), one allocation.
		if d := (&deny{reason: ReasonNotAllowed, what: what}); !lift(d) {
			return verdict{}, d
		}
	}
	if scheme != "https" {
		// A real token never travels in clear.
		for _, rt := range routes {
			if !rt.InsecureHTTP {
				return verdict{}, &deny{reason: ReasonInsecureRoute, what: what}
			}
		}
	}
	if len(routes) > 0 && (strings.EqualFold(req.Method, "TRACE") || strings.EqualFold(req.Method, "TRACK")) {
		// TRACE makes the upstream echo the request, injected credential
		// included, back into the sandbox.
		return verdict{}, &deny{reason: ReasonBadRequest, what: what,
			detail: "TRACE is not forwarded to a host that receives a credential: the answer would echo it"}
	}
	if req.URL.Opaque != "" {
		// "GET https:x" reaches the upstream as "GET x": no path the
		// policy could match.
		return verdict{}, &deny{reason: ReasonBadRequest, what: req.Method,
			detail: "the request target must be an absolute path or URL"}
	}
	var v verdict
	if ws, other := wsrelay.IsUpgrade(req); ws || other {
		// Anything but a WebSocket would turn the connection into an
		// unchecked pipe to the upstream.
		if other {
			return verdict{}, &deny{reason: ReasonUpgradeRefused, what: what}
		}
		v.websocket = true
	}
	return v, nil
}

// injectRoutes is the third stage of handleRequest: it applies each
// route's credential to h (injectRoute). It returns the slots injected,
// comma-separated in route order without repeats, and the first slot whose
// token is missing ("" if none), at which it stops.
func injectRoutes(h http.Header, routes []*policy.Route, slots map[string]policy.Slot, toks resolve.Tokens) (injected, missing string) {
	for _, rt := range routes {
		tok, ok := toks[rt.Slot]
		switch injectRoute(h, rt, slots[rt.Slot].Placeholder, tok, ok && !tok.IsZero()) {
		case injectDone:
			if injected == "" {
				injected = rt.Slot
			} else if !strings.Contains(","+injected+",", ","+rt.Slot+",") {
				injected += "," + rt.Slot
			}
		case injectNoToken:
			return injected, rt.Slot
		}
	}
	return injected, ""
}

// canonicalAuthority is the Host header for host:port: the port only when
// it is not the scheme's default.
func canonicalAuthority(scheme, host string, port int) string {
	if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return joinHostPort(host, port)
}

// refuse answers req with d and audits it (a placeholder leak at warn).
func (p *Proxy) refuse(req *http.Request, rs *reqState, d deny) (*http.Request, *http.Response) {
	rs.decision, rs.status = d.decision(), d.status()
	if d.rule != "" {
		rs.rule = d.rule
	}
	p.finish(rs, d.reason, d.reason == ReasonPlaceholderLeak)
	resp := d.response(req)
	if req.Body != nil && req.Body != http.NoBody {
		// Do not wait for a body we are not going to send anywhere.
		closeAfter(resp)
	}
	return req, resp
}

// leak refuses a request carrying slot's placeholder (docs/DESIGN.md,
// decision 3). Placeholders in the path are replaced by the slot name in the
// log line and the message.
func (p *Proxy) leak(req *http.Request, rs *reqState, sc *scanner, slot string) (*http.Request, *http.Response) {
	rs.slot = slot
	rs.host, rs.path, rs.what = sc.redact(rs.host), sc.redact(rs.path), sc.redact(rs.what)
	return p.refuse(req, rs, deny{reason: ReasonPlaceholderLeak, what: rs.what, detail: slot})
}

// roundTrip sends an approved request upstream. It never returns an
// error: goproxy would close an intercepted connection without a response
// and answer plain HTTP with the raw error text (docs/DESIGN.md, trap 5).
func (p *Proxy) roundTrip(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
	rs, _ := ctx.UserData.(*reqState)
	if rs == nil { // unreachable: handleRequest runs first
		return deny{reason: ReasonBadRequest, what: req.Method, detail: "unexpected request"}.response(req), nil
	}
	start := time.Now()
	out := req
	if req.Close {
		// The client's "Connection: close" is about its own connection,
		// which goproxy honours through ctx.Req. Upstream, keep the pooled
		// connection: a new TLS handshake per request is the proxy's
		// biggest cost.
		out = req.WithContext(req.Context())
		out.Close = false
	}
	resp, err := p.tr.RoundTrip(out)
	if slot := rs.leaked(); slot != "" {
		// The tripwire fired on the body or its trailers (tripBody): the
		// placeholder was held back, and the request is refused.
		if err == nil {
			_ = resp.Body.Close()
		}
		ps := p.policy.Load()
		_, r := p.leak(req, rs, ps.scan, slot)
		return r, nil
	}
	if err != nil {
		d := upstreamDeny(err, rs.what)
		reason := d.reason
		if req.Context().Err() != nil {
			// Not the upstream's fault: the client hung up (net/http
			// cancels the request), and nobody reads this answer.
			reason = reasonClientGone
		}
		p.log.Debug().Str(fieldError, p.scrubErr(err)).Str(fieldConnID, rs.conn.id).Str(fieldReason, reason).Msg("upstream request failed")
		if d.reason == ReasonPrivateAddress {
			rs.decision = decisionDeny
		}
		rs.status = d.status()
		p.finish(rs, reason, false)
		return d.response(req), nil
	}
	p.metrics.latencyFor(rs.decision).Observe(time.Since(start).Seconds())
	rs.status = resp.StatusCode
	// The token state the request was sent with: a rotation since then
	// must not let the token it carried come back unscrubbed.
	ts := rs.ts
	scrubbing := rs.routed && ts.scrub != nil
	if scrubbing {
		// docs/SECURITY.md, invariant 4: no real token back into the sandbox,
		// in any encoding, in a header name or value.
		ts.scrubHeader(resp.Header, func(slot string) { p.scrubHit(rs, slot, "header") })
		// Declared trailers: net/http moved the "Trailer" header into
		// these keys, and goproxy announces them before the body.
		ts.scrubHeader(resp.Trailer, func(slot string) { p.scrubHit(rs, slot, "trailer") })
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return p.upgrade(req, resp, rs, ts, scrubbing), nil
	}
	if len(resp.Trailer) > 0 {
		// Trailers go after a chunked body: a length (HTTP/2 upstreams
		// send both) would make net/http drop them.
		dropLength(resp)
	}
	return p.passResponse(req, resp, rs, ts, scrubbing), nil
}

// passResponse readies an upstream answer for the client: on a routed
// host its body decoded and scrubbed of real tokens (or, when it cannot
// be scrubbed, refused unless the route says pass), and in every case a
// responseBody that counts it, notices an early end and writes the audit
// line.
func (p *Proxy) passResponse(req *http.Request, resp *http.Response, rs *reqState, ts *tokenState, scrubbing bool) *http.Response {
	var body io.Reader = resp.Body
	release, decoded := func() {}, false
	if scrubbing && bodyAllowed(req, resp) {
		codings, known := contentCodings(resp.Header)
		switch {
		case !known || resp.StatusCode == http.StatusPartialContent:
			// A coding cork cannot decode, or a range (of an encoded body:
			// undecodable on its own; of any body: a token cut in pieces
			// that no scrubber recognises): the body cannot be scrubbed.
			if !rs.pass {
				_ = resp.Body.Close()
				d := deny{reason: ReasonUnscrubbable, what: rs.what}
				rs.status = d.status()
				p.finish(rs, d.reason, false)
				return d.response(req)
			}
		default:
			set := ts.scrub
			if len(codings) > 0 {
				body, release = decodeBody(body, codings)
				decoded = true
				asIdentity(resp)
			} else if resp.ContentLength >= 0 {
				// A body of known length keeps it: each token encoding is
				// replaced by its placeholder's fitted to the same length.
				set = ts.fixed
			}
			body = scrub.NewReader(body, set, func(id int) { p.scrubHit(rs, ts.slots[id], "body") })
		}
	}
	if resp.Close {
		// The upstream closes after this answer; so does the client
		// connection (goproxy copies the header, net/http honours it).
		closeAfter(resp)
	}
	rb := &responseBody{r: body, upstream: resp.Body, release: release, p: p, rs: rs, resp: resp, ctx: req.Context(), decoded: decoded}
	if scrubbing {
		rb.ts = ts
	}
	resp.Body = rb
	return resp
}

// maxDrain bounds what is read past a decoded body's end to reach its
// trailers.
const maxDrain = 64 << 10

// bodyAllowed reports whether resp may carry a body (RFC 9110 6.4.1).
func bodyAllowed(req *http.Request, resp *http.Response) bool {
	switch {
	case req.Method == http.MethodHead, resp.StatusCode == http.StatusNoContent,
		resp.StatusCode == http.StatusNotModified, resp.StatusCode < 200:
		return false
	}
	return true
}

// closeAfter marks resp as the last on its client connection.
func closeAfter(resp *http.Response) {
	resp.Close = true
	resp.Header.Set("Connection", "close")
}

// countingBody counts request body bytes.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// responseBody counts response bytes, scrubs trailers, notices a body
// that ends early and writes the audit line on Close. r is what the client
// gets: the upstream body, decoded and scrubbed on a routed host.
type responseBody struct {
	r        io.Reader
	upstream io.ReadCloser // the upstream body, closed on Close
	release  func()        // frees decoders
	p        *Proxy
	rs       *reqState
	resp     *http.Response
	ts       *tokenState     // non-nil: scrub trailers
	ctx      context.Context // the request's
	decoded  bool            // r decodes a content coding: the upstream body may go on past its end
	reason   string          // why the body ended early, if it did
	eof      bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	if slot := b.rs.leaked(); slot != "" && b.reason == "" {
		// The upstream answered before reading the request body to the
		// placeholder the tripwire held back: the answer is cut too.
		b.rs.slot, b.reason = slot, ReasonPlaceholderLeak
		if b.rs.abort != nil {
			b.rs.abort.Store(true)
		}
		return 0, errPlaceholderInBody
	}
	n, err := b.r.Read(p)
	b.rs.down.Add(int64(n))
	switch {
	case err == io.EOF:
		b.eof = true
		if b.ctx.Err() != nil && b.reason == "" {
			// The upstream ended the body, but the client's connection
			// is gone already (hung up, or cut by Close): the end never
			// reaches it. (The upstream may have ended it because the
			// request was cancelled.)
			b.reason = reasonClientGone
		}
		if b.decoded {
			// A decoder may stop before the upstream stream ends (zlib's
			// checksum, then an HTTP/2 END_STREAM with the trailers).
			_, _ = io.Copy(io.Discard, io.LimitReader(b.upstream, maxDrain))
		}
		// Trailers arrive with the end of the body; goproxy copies them
		// after it.
		if b.ts != nil {
			b.ts.scrubHeader(b.resp.Trailer, func(slot string) { b.p.scrubHit(b.rs, slot, "trailer") })
		}
	case err != nil && b.reason == "":
		b.reason = reasonUpstreamCut
		if b.ctx.Err() != nil {
			b.reason = reasonClientGone
		}
		if b.rs.abort != nil {
			b.rs.abort.Store(true)
		}
	}
	return n, err
}

func (b *responseBody) Close() error {
	err := b.upstream.Close()
	b.release()
	if !b.eof && b.reason == "" {
		// goproxy stops copying before the end only when writing to the
		// client failed: the client hung up mid-response.
		b.reason = reasonClientGone
	}
	b.p.finish(b.rs, b.reason, b.reason == ReasonPlaceholderLeak)
	return err
}

// upgradeBody is a 101 response body: the upstream side of a WebSocket,
// relayed frame by frame (upgrade.go).
type upgradeBody struct {
	rw     io.ReadWriteCloser
	p      *Proxy
	rs     *reqState
	reason atomic.Pointer[string]
	once   sync.Once // Close comes from goproxy and from the client side's closing (endUpstream)
}

func (b *upgradeBody) Read(p []byte) (int, error) {
	n, err := b.rw.Read(p)
	b.rs.down.Add(int64(n))
	return n, err
}

func (b *upgradeBody) Write(p []byte) (int, error) {
	n, err := b.rw.Write(p)
	b.rs.up.Add(int64(n))
	return n, err
}

func (b *upgradeBody) Close() error {
	var err error
	b.once.Do(func() {
		err = b.rw.Close()
		reason, warn := "", false
		if r := b.reason.Load(); r != nil {
			reason = *r
		}
		if slot := b.rs.leaked(); slot != "" {
			b.rs.slot, reason, warn = slot, ReasonPlaceholderLeak, true
		}
		b.p.finish(b.rs, reason, warn)
	})
	return err
}

// hostPortOf normalises an authority; a missing port is def.
func hostPortOf(authority string, def int) (string, int, error) {
	h, ps := authority, ""
	if strings.IndexByte(authority, ':') >= 0 {
		// Without a colon SplitHostPort fails, and its error is an
		// allocation: the usual inner request names no port.
		if sh, sp, err := net.SplitHostPort(authority); err == nil {
			h, ps = sh, sp
		}
	}
	port := def
	if ps != "" {
		var err error
		if port, err = policy.ParsePort(ps); err != nil {
			return "", 0, errBadPort
		}
	}
	host, err := policy.NormalizeHost(h)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// showAuthority is what a message shows of an inner request's target:
// the normalised authority, never raw client bytes.
func showAuthority(host string, port int, err error) string {
	if err != nil || host == "" {
		return "(invalid host)"
	}
	return joinHostPort(host, port)
}
