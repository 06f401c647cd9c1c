package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/pki"
	"github.com/cork-sh/cork/resolve"
)

// Defaults for the zero values of Config's timeouts.
const (
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 10 * time.Minute // non-streaming LLM answers take minutes before the first header
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultTunnelIdleTimeout     = 10 * time.Minute
	DefaultReadHeaderTimeout     = 30 * time.Second // a client's request head, outer and inside intercepted connections
	DefaultClientIdleTimeout     = 2 * time.Minute  // keep-alive client connections between requests
	// DefaultMaxResponseHeaderBytes caps an upstream's response head.
	DefaultMaxResponseHeaderBytes = 1 << 20
	// DefaultMaxConnsPerClient bounds concurrent connections from one
	// client address (LimitListener); past it a client gets 503.
	DefaultMaxConnsPerClient = 512
	// DefaultMaxIdleConnsPerHost bounds pooled upstream connections per host.
	DefaultMaxIdleConnsPerHost = 64
)

// Config configures a Proxy. Only Policy is required.
type Config struct {
	// Policy decides what may leave the sandbox. Required.
	Policy *policy.Policy
	// Tokens maps slot → credential. Nil or partial is allowed: a request
	// that needs a missing slot gets 503 token_unavailable; see SetTokens.
	Tokens resolve.Tokens
	// CA signs leaf certificates for intercepted hosts. If nil, an
	// ephemeral CA is generated, constrained to Policy.InterceptHosts().
	CA *pki.CA
	// Logger receives the audit log (info, tripwire at warn) and goproxy's
	// own messages (debug). If nil, nothing is logged.
	Logger *zerolog.Logger
	// UpstreamRootCAs verifies upstream servers. If nil, the system roots.
	UpstreamRootCAs *x509.CertPool
	// AllowPrivate lists prefixes exempt from the private-address guard.
	AllowPrivate []netip.Prefix
	// Resolve maps "host:port" → "addr:port", like curl's --resolve: the
	// policy, TLS verification and the Host header still see host; only the
	// dial goes to addr, which is checked by the private-address guard too.
	Resolve map[string]string

	// Timeouts; zero means the matching Default* constant. There is no
	// total request timeout (streams may last hours).
	DialTimeout           time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
	IdleConnTimeout       time.Duration // idle pooled upstream connections
	TunnelIdleTimeout     time.Duration // tunnels and intercepted connections without progress
	ReadHeaderTimeout     time.Duration // a client's request head (outer server and intercepted connections)
	ClientIdleTimeout     time.Duration // keep-alive client connections waiting for their next request

	// MaxResponseHeaderBytes caps an upstream's response head; zero means
	// DefaultMaxResponseHeaderBytes. A larger head is answered with 502.
	MaxResponseHeaderBytes int64
	// MaxConnsPerClient bounds concurrent connections from one client
	// address on a listener wrapped by LimitListener; zero means
	// DefaultMaxConnsPerClient, negative means no bound.
	MaxConnsPerClient int

	// Registerer receives the proxy's metrics. If nil, a private registry
	// is used; either way MetricsHandler serves them when Registerer is
	// also a prometheus.Gatherer (a *prometheus.Registry is).
	Registerer prometheus.Registerer
	// ClientAuth, if not zero, is "user:password" that every client must
	// present in Proxy-Authorization (Basic) on CONNECT and on plain-HTTP
	// requests; others get 407. It keeps anyone but the sandbox from
	// using the proxy's credentials when its listener is reachable from
	// elsewhere (a microVM host's LAN address, a shared host's loopback).
	// It is a session password the sandbox holds, not a real token.
	ClientAuth resolve.Secret
	// TrustUnixSockets, if true, exempts from ClientAuth the clients of a
	// server from NewServer that connect on a Unix socket bound to a path:
	// there the socket file's permissions decide who may connect (`cork
	// proxy` on CORK_LISTEN=unix:PATH, reached by `cork relay`). If false,
	// every client must present ClientAuth, on any listener: the local
	// backend keeps it so, because other sandboxes run as the same user
	// and may see its socket's directory.
	TrustUnixSockets bool
	// Unlisted, if non-nil, is asked about a request the policy would refuse as not_allowed (a
	// CONNECT or plain-HTTP request to a host:port no entry names) or, on a host with method/path
	// rules, as method_not_allowed / path_not_allowed. It may block; the client waits until it
	// returns or ctx ends (ctx ends with the client or the proxy). Allow lets this one request
	// through: an unlisted CONNECT becomes a blind tunnel (never intercepted, nothing injected), an
	// unlisted plain request is forwarded; a method/path denial on a routed host is lifted for this
	// request (the credential injected as usual). The tripwire and the private-address guard still
	// apply. Safe for concurrent calls; the proxy calls it concurrently. If nil, such requests are
	// refused. The audit line of an allowed request has reason "asked" (ReasonAsked).
	Unlisted func(ctx context.Context, q Question) Verdict `json:"-"`
	// SessionID, if not empty, is written as "session" on every log line,
	// so that the audit lines of several sandboxes sharing a log can be
	// told apart (`cork run` sets its session id). At most
	// MaxSessionIDLen bytes of letters, digits, '-', '_' and '.'. It is
	// an identifier, never a secret.
	SessionID string
}

// MaxSessionIDLen bounds Config.SessionID.
const MaxSessionIDLen = 128

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Policy == nil {
		errs = append(errs, errors.New("policy: required"))
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"dial timeout", c.DialTimeout},
		{"TLS handshake timeout", c.TLSHandshakeTimeout},
		{"response header timeout", c.ResponseHeaderTimeout},
		{"idle conn timeout", c.IdleConnTimeout},
		{"tunnel idle timeout", c.TunnelIdleTimeout},
		{"read header timeout", c.ReadHeaderTimeout},
		{"client idle timeout", c.ClientIdleTimeout},
	} {
		if t.d < 0 {
			errs = append(errs, fmt.Errorf("%s: negative (%s)", t.name, t.d))
		}
	}
	if c.MaxResponseHeaderBytes < 0 {
		errs = append(errs, fmt.Errorf("max response header bytes: negative (%d)", c.MaxResponseHeaderBytes))
	}
	for i, p := range c.AllowPrivate {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("allow private[%d]: invalid prefix", i))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Resolve)) {
		if _, err := resolveKey(k); err != nil {
			errs = append(errs, fmt.Errorf("resolve %q: %w", k, err))
		}
		if _, _, err := splitHostPort(c.Resolve[k]); err != nil {
			errs = append(errs, fmt.Errorf("resolve %q: target %q: %w", k, c.Resolve[k], err))
		}
	}
	if err := CheckSessionID(c.SessionID); err != nil {
		errs = append(errs, fmt.Errorf("session id: %w", err))
	}
	return errors.Join(errs...)
}

// Proxy is the egress proxy. It is an http.Handler: serve it with
// http.Server or httptest.NewServer. All methods are safe for concurrent use.
type Proxy struct {
	gp      *goproxy.ProxyHttpServer
	tr      *http.Transport
	ca      *pki.CA
	log     zerolog.Logger
	dialer  *dialer
	metrics *metrics
	rt      goproxy.RoundTripper

	policy atomic.Pointer[policyState]
	tokens atomic.Pointer[tokenState]
	// setMu orders SetTokens and SetPolicy: the token state is derived
	// from both (the scrubber replaces a token by its slot's placeholder).
	setMu     sync.Mutex
	rawTokens resolve.Tokens // as last given to SetTokens; guarded by setMu
	// retired holds, per slot, the last values SetTokens replaced (at most
	// maxRetired): a request in flight may have been sent one, and an
	// upstream may echo it after a rotation; they are scrubbed too.
	retired map[string][]resolve.Secret // guarded by setMu

	// clientAuth is the Proxy-Authorization value clients must send, or
	// empty for none.
	clientAuth []byte
	// trustUnixSockets is Config.TrustUnixSockets.
	trustUnixSockets bool

	// ticketKeys are shared by every intercepted connection's TLS config
	// so that clients can resume sessions across connections: a fresh
	// config per CONNECT would otherwise get its own random ticket key.
	ticketKeys [][32]byte

	// inner serves intercepted connections (mitm.go).
	inner            *http.Server
	innerLn          *mitmListener
	mitmConnect      *goproxy.ConnectAction
	tunnelConnect    *goproxy.ConnectAction
	handshakeTimeout time.Duration

	tunnelIdle        time.Duration
	reapEvery         time.Duration // the idle reaper's period
	readHeaderTimeout time.Duration
	clientIdleTimeout time.Duration
	maxConnsPerClient int // negative: no bound
	conns             connSet
	connSeq           atomic.Uint64
	closed            atomic.Bool
	cutting           atomic.Bool    // Close has begun cutting connections: what ends now ends by shutdown
	inflight          sync.WaitGroup // requests being served (serveRequest), for Shutdown
	closeOnce         sync.Once
	unlisted          func(context.Context, Question) Verdict // Config.Unlisted
	life              context.Context                         // ends with Shutdown or Close: ends the questions to unlisted
	endLife           context.CancelFunc
	stopReaper        chan struct{}
	reaperDone        chan struct{}
}

// policyState is a policy with what the hot path precomputes from it.
type policyState struct {
	pol  *policy.Policy
	scan *scanner
}

// New builds a Proxy from cfg. It never panics.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	p := &Proxy{
		ca:                cfg.CA,
		log:               zerolog.Nop(),
		tunnelIdle:        orDefault(cfg.TunnelIdleTimeout, DefaultTunnelIdleTimeout),
		readHeaderTimeout: orDefault(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		clientIdleTimeout: orDefault(cfg.ClientIdleTimeout, DefaultClientIdleTimeout),
		maxConnsPerClient: cfg.MaxConnsPerClient,
		stopReaper:        make(chan struct{}),
		reaperDone:        make(chan struct{}),
		ticketKeys:        make([][32]byte, 1),
	}
	rand.Read(p.ticketKeys[0][:])
	p.reapEvery = min(max(p.tunnelIdle/4, 10*time.Millisecond), 5*time.Second)
	if p.maxConnsPerClient == 0 {
		p.maxConnsPerClient = DefaultMaxConnsPerClient
	}
	maxHead := cfg.MaxResponseHeaderBytes
	if maxHead == 0 {
		maxHead = DefaultMaxResponseHeaderBytes
	}
	if !cfg.ClientAuth.IsZero() {
		p.clientAuth = []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.ClientAuth.Reveal())))
	}
	p.trustUnixSockets = cfg.TrustUnixSockets
	p.unlisted = cfg.Unlisted
	p.life, p.endLife = context.WithCancel(context.Background())
	if cfg.Logger != nil {
		p.log = *cfg.Logger
		if cfg.SessionID != "" {
			p.log = p.log.With().Str(fieldSession, cfg.SessionID).Logger()
		}
	}
	if p.ca == nil {
		ca, err := pki.Generate(cfg.Policy.InterceptHosts())
		if err != nil {
			return nil, fmt.Errorf("generate CA: %w", err)
		}
		p.ca = ca
	}
	if err := p.checkCA(cfg.Policy); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p.metrics = m
	d, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	p.dialer = d
	p.tr = &http.Transport{
		Proxy:       nil, // docs/DESIGN.md, trap 6: never the environment's proxy
		DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    cfg.UpstreamRootCAs,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:      true, // docs/DESIGN.md, trap 12: a custom dialer and TLS config turn h2 off otherwise
		TLSHandshakeTimeout:    orDefault(cfg.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout),
		ResponseHeaderTimeout:  orDefault(cfg.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		IdleConnTimeout:        orDefault(cfg.IdleConnTimeout, DefaultIdleConnTimeout),
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxHead,
		MaxIdleConns:           16 * DefaultMaxIdleConnsPerHost,
		MaxIdleConnsPerHost:    DefaultMaxIdleConnsPerHost,
		DisableCompression:     true, // docs/DESIGN.md, trap 9: bodies pass untouched
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	p.rt = goproxy.RoundTripperFunc(p.roundTrip)
	p.policy.Store(newPolicyState(cfg.Policy))
	p.SetTokens(cfg.Tokens)
	p.gp = p.newGoproxy()
	p.handshakeTimeout = orDefault(cfg.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	p.mitmConnect = p.mitmAction()
	p.tunnelConnect = &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: p.serveTunnel}
	p.inner, p.innerLn = p.newInnerServer(), newMITMListener()
	go func() { _ = p.inner.Serve(p.innerLn) }()
	go p.reap()
	return p, nil
}

// newGoproxy is the goproxy server that parses and dispatches CONNECTs
// (handleConnect). cork serves every other request itself (forward) and
// relays tunnels itself (serveTunnel, serveMITM), so goproxy's request
// path, transport and error handler are never reached; they stay wired to
// cork's policy, guard and answers all the same, so that a goproxy path
// reached by mistake is still decided, guarded and answered by cork.
func (p *Proxy) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	// docs/DESIGN.md, trap 6: NewProxyHttpServer reads HTTPS_PROXY into
	// ConnectDial and Tr.Proxy. With both nil, tunnels dial through
	// Tr.DialContext: the guard.
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = nil
	gp.Tr = p.tr
	gp.Verbose = false
	gp.Logger = goproxyLogger{p} // docs/DESIGN.md, trap 11
	gp.KeepAcceptEncoding = true // docs/DESIGN.md, trap 9
	gp.AllowHTTP2 = false        // docs/DESIGN.md, trap 12: the client side stays HTTP/1.1
	gp.CertStore = nil
	gp.NonproxyHandler = http.HandlerFunc(p.serveNonProxy)
	gp.ConnectionErrHandler = p.connectionError
	gp.OnRequest().HandleConnectFunc(p.handleConnect)
	gp.OnRequest().DoFunc(p.handleRequest)
	return gp
}

func newPolicyState(pol *policy.Policy) *policyState {
	return &policyState{pol: pol, scan: newScanner(pol)}
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// ServeHTTP serves one proxy request: CONNECT or absolute-form HTTP.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.closed.Load() {
		writeDeny(w, deny{reason: ReasonClosed})
		return
	}
	st := p.newConnState()
	if p.clientAuth != nil && !(p.trustUnixSockets && isSocketClient(r.Context())) && !p.authorized(r) {
		p.refuseClient(w, r, st)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), connStateKey{}, st))
	if r.Method == http.MethodConnect {
		p.gp.ServeHTTP(&respWriter{ResponseWriter: w, p: p, st: st}, r)
		return
	}
	p.serveRequest(w, r, st, false)
}

// serveRequest passes one HTTP request, plain or inside an intercepted
// connection (inner), through cork's request pipeline (forward).
func (p *Proxy) serveRequest(w http.ResponseWriter, r *http.Request, st *connState, inner bool) {
	p.inflight.Add(1)
	defer p.inflight.Done()
	// A request in flight is not idle to the reaper, so the client's side
	// of it is bounded here: a body that stops coming, or a client that
	// stops reading the answer, is cut after the tunnel idle timeout
	// without progress (deadlines renewed on every read and write;
	// net/http clears them when a WebSocket hijacks the connection).
	rw := &respWriter{ResponseWriter: w, p: p, st: st, inner: inner}
	rw.ctl = *http.NewResponseController(w) // in rw: one allocation less
	rc := &rw.ctl
	rw.rc = rc
	// The transport may still be sending the request body upstream when
	// the answer's head arrives (an upstream that answers before reading
	// it; the transport sends the head first when the body is not in
	// memory). net/http's server would read the rest of the body away
	// before writing the head and then close it: the transport's next read
	// fails and it closes the upstream connection, cutting the answer.
	// Full duplex leaves the body to the transport.
	_ = rc.EnableFullDuplex()
	// net/http keeps a write deadline from the connection's last request
	// (without a WriteTimeout it never resets one): start this one afresh,
	// before net/http itself may write (100 Continue).
	_ = rc.SetWriteDeadline(time.Now().Add(p.tunnelIdle))
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: p.tunnelIdle}
	}
	st.abort = &rw.abort // for newReqState
	p.forward(rw, r)

	if rw.hijacked != nil {
		// forward returns from a WebSocket relay when one side ends but
		// leaves the client connection open: close it so the client sees
		// the end (docs/DESIGN.md, decision 5: then both are closed).
		_ = rw.hijacked.Close()
	}
	if rw.abort.Load() {
		panic(http.ErrAbortHandler) // the upstream cut the body: so does the client's connection
	}
}

// SetTokens replaces the token map atomically; requests in flight keep the
// map they started with. t is copied. A nil t empties the map. A value that
// resolve.CheckToken refuses (control characters, white space) is not used:
// the slot is logged and reported by Ready as unusable, never its value.
func (p *Proxy) SetTokens(t resolve.Tokens) {
	p.setMu.Lock()
	defer p.setMu.Unlock()
	for slot, old := range p.rawTokens {
		if n, ok := t[slot]; !old.IsZero() && (!ok || !n.Equal(old.Reveal())) {
			p.retire(slot, old)
		}
	}
	p.rawTokens = maps.Clone(t)
	ts := newTokenState(p.rawTokens, p.retired, p.policy.Load().pol)
	p.tokens.Store(ts)
	if len(ts.unusable) > 0 {
		p.log.Error().Strs(fieldSlot+"s", ts.unusable).Msg("token refused: it contains control characters or white space; the slot stays unusable until a valid token arrives")
	}
}

// SetPolicy replaces the policy atomically (SIGHUP reload). Connections
// already intercepted apply the new policy to their next request. It
// refuses a policy that intercepts a host the CA may not sign for.
func (p *Proxy) SetPolicy(pol *policy.Policy) error {
	if pol == nil {
		return errors.New("set policy: nil policy")
	}
	if err := p.checkCA(pol); err != nil {
		return fmt.Errorf("set policy: %w", err)
	}
	p.setMu.Lock()
	defer p.setMu.Unlock()
	p.policy.Store(newPolicyState(pol))
	p.tokens.Store(newTokenState(p.rawTokens, p.retired, pol))
	return nil
}

func (p *Proxy) checkCA(pol *policy.Policy) error {
	var bad []string
	for _, h := range pol.InterceptHosts() {
		if !p.ca.Permits(h) {
			bad = append(bad, h)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("CA name constraints do not permit intercepted host(s) %s", strings.Join(bad, ", "))
	}
	return nil
}

// CACertPEM returns the session CA certificate in PEM form, for the sandbox
// to trust. It never returns the key.
func (p *Proxy) CACertPEM() []byte { return p.ca.CertPEM() }

// Ready returns nil when the proxy can serve every route: every slot
// referenced by a route has a token. Otherwise the error names what is
// missing (slot names, never values). New guarantees a policy and a CA.
func (p *Proxy) Ready() error {
	if p.closed.Load() {
		return errors.New("proxy closed")
	}
	ps := p.policy.Load()
	ts := p.tokens.Load()
	var missing, unusable []string
	for _, rt := range ps.pol.Routes {
		switch _, ok := ts.toks[rt.Slot]; {
		case ok:
		case slices.Contains(ts.unusable, rt.Slot):
			if !slices.Contains(unusable, rt.Slot) {
				unusable = append(unusable, rt.Slot)
			}
		case !slices.Contains(missing, rt.Slot):
			missing = append(missing, rt.Slot)
		}
	}
	var msgs []string
	if len(missing) > 0 {
		slices.Sort(missing)
		msgs = append(msgs, "no token for slot(s) "+strings.Join(missing, ", "))
	}
	if len(unusable) > 0 {
		slices.Sort(unusable)
		msgs = append(msgs, "unusable token for slot(s) "+strings.Join(unusable, ", ")+" (control characters or white space)")
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// Close closes idle upstream connections and every open tunnel and
// intercepted connection, and stops the idle reaper. New requests get 503.
// It is idempotent and always returns nil.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.cutting.Store(true)
		p.endLife()
		close(p.stopReaper)
		<-p.reaperDone
		_ = p.inner.Close()
		p.conns.closeAll()
		p.tr.CloseIdleConnections()
	})
	return nil
}

// String describes p without any credential.
func (p *Proxy) String() string {
	n := 0
	if t := p.tokens.Load(); t != nil {
		n = len(t.toks)
	}
	return "proxy.Proxy{tokens: " + strconv.Itoa(n) + " slots, closed: " + strconv.FormatBool(p.closed.Load()) + "}"
}

// GoString is String: %#v must not walk the struct.
func (p *Proxy) GoString() string { return p.String() }

// Format makes every verb print String.
func (p *Proxy) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// serveNonProxy answers origin-form requests sent to the proxy port.
func (p *Proxy) serveNonProxy(w http.ResponseWriter, r *http.Request) {
	writeDeny(w, deny{reason: ReasonBadRequest, what: r.Method + " " + cleanPath(r.URL),
		detail: "not a proxy request; send absolute-form requests or CONNECT (the admin endpoints are on the admin listener)"})
}

// goproxyLogger routes goproxy's Printf logging to zerolog at debug level.
type goproxyLogger struct{ p *Proxy }

func (l goproxyLogger) Printf(format string, v ...any) {
	if e := l.p.log.Debug(); e.Enabled() {
		e.Str(fieldComponent, "goproxy").Msg(l.p.scrubLog(strings.TrimSpace(fmt.Sprintf(format, v...))))
	}
}

// connState is what the proxy knows about one client request: a CONNECT
// (and every request inside it) or one plain-HTTP request.
type connState struct {
	id    string
	start time.Time
	// Set by handleConnect before the connection is hijacked; read-only after.
	mode      connMode
	host      string // normalised
	port      int
	authority string        // net.JoinHostPort(host, port)
	conn      *trackedConn  // set at hijack, before the connection is served
	br        *bufio.Reader // the hijacked reader: bytes sent after the CONNECT head
	scheme    string        // of requests inside an intercepted connection
	asked     bool          // a tunnel Config.Unlisted allowed: audited as ReasonAsked
	rule      string        // a blind tunnel's allow entry (rule.go)

	// Set when the tunnel ends badly; guarded by mu.
	mu     sync.Mutex
	failed *deny
	// closeUpstream ends the upstream side of a tunnel or relay (with the
	// reason the client side was closed, if any); guarded by mu.
	closeUpstream func(reason string)

	// abort is the abort flag of the request serveRequest is serving on
	// this connection (its respWriter's), which newReqState hands to the
	// request's state. Set and read on the goroutine serving the
	// connection: net/http serves one request of a connection at a time,
	// and a plain request has a connState of its own.
	abort *atomic.Bool
}

// setUpstream records how to end the upstream side of st's tunnel or
// relay; closing the client side calls it (trackedConn.Close).
func (st *connState) setUpstream(close func(reason string)) {
	st.mu.Lock()
	st.closeUpstream = close
	st.mu.Unlock()
}

// endUpstream ends the upstream side, once.
func (st *connState) endUpstream(reason string) {
	st.mu.Lock()
	f := st.closeUpstream
	st.closeUpstream = nil
	st.mu.Unlock()
	if f != nil {
		f(reason)
	}
}

type connMode uint8

const (
	modePlain connMode = iota
	modeDenied
	modeTunnel
	modeMITM
)

type connStateKey struct{}

func (p *Proxy) newConnState() *connState {
	return &connState{id: strconv.FormatUint(p.connSeq.Add(1), 36), start: time.Now()}
}

func connStateOf(r *http.Request) *connState {
	st, _ := r.Context().Value(connStateKey{}).(*connState)
	return st
}

// respWriter wraps the client's ResponseWriter: it tracks hijacked
// connections (for Close and idle reaping) and flushes bodies of unknown
// length as they are written.
type respWriter struct {
	http.ResponseWriter
	p        *Proxy
	st       *connState
	inner    bool                     // a request inside an intercepted connection
	hijacked net.Conn                 // closed by the caller when forward returns
	rc       *http.ResponseController // &ctl, or nil for a CONNECT
	ctl      http.ResponseController
	abort    atomic.Bool // set when the client connection must be aborted (reqState.abort)
}

func (w *respWriter) WriteHeader(code int) {
	h := w.Header()
	// A proxy passes the answer on as it came: net/http would add a Date
	// and a sniffed Content-Type where the upstream sent none.
	for _, k := range [...]string{"Date", "Content-Type"} {
		if _, ok := h[k]; !ok {
			h[k] = nil
		}
	}
	w.ResponseWriter.WriteHeader(code)
	if code >= 200 && h.Get("Content-Length") == "" {
		// A stream's head goes out at once, not with its first event
		// (which may be minutes away). A body of known length goes out
		// with its head, in one TLS record when it is small.
		w.Flush()
	}
}

// Write passes on what the upstream sent as soon as it came (docs/DESIGN.md,
// trap 8: goproxy's plain path flushes only text/event-stream, so NDJSON or a
// slow body of known length would wait in net/http's buffer).
func (w *respWriter) Write(b []byte) (int, error) {
	if w.rc != nil {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.p.tunnelIdle))
	}
	n, err := w.ResponseWriter.Write(b)
	if err == nil {
		w.Flush()
	}
	return n, err
}

// ReadFrom copies a response body through a pooled buffer (io.Copy would
// allocate 32 KiB per response), with a loop of its own: io.CopyBuffer
// would need w boxed without its ReadFrom, an allocation per response.
func (w *respWriter) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// idleBody renews the client connection's read deadline before every read
// of a request body, and clears it at the body's end: net/http then starts
// its own background read on the connection, which must not time out.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// An expired deadline stays: closing the body drains what is
		// left of it, which must fail fast too.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (w *respWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if w.inner {
		// A WebSocket inside an intercepted connection: the client
		// connection underneath is tracked already; from now on it is a
		// relay, outside the inner server.
		if tc := w.st.conn; tc != nil {
			tc.relay.Store(true)
		}
		w.hijacked = c
		return c, rw, nil
	}
	w.st.br = rw.Reader
	tc := w.p.track(c, w.st)
	w.hijacked = tc
	return tc, rw, nil
}

var (
	_ http.Handler  = (*Proxy)(nil)
	_ http.Hijacker = (*respWriter)(nil)
	_ http.Flusher  = (*respWriter)(nil)
)
