package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// Intercepted connections are served by net/http, not by goproxy's MITM
// loop: goproxy's loop writes every response head and body as separate TLS
// records (one syscall each, and one more wake-up for the client), and
// each chunk of a chunked body as three. net/http's server buffers the
// head with the start of the body and flushes once, handles keep-alive,
// "Connection: close", "Expect: 100-continue", pipelining and unread
// request bodies, and lets a handler hijack for WebSocket. Every inner
// request goes through the same request pipeline as a plain-HTTP one
// (forward: handleRequest, the round tripper, the WebSocket relay), marked
// as intercepted by its connection's state.

// mitmConn is the client side of an intercepted connection after the TLS
// handshake (or the raw connection for cleartext HTTP inside a CONNECT).
type mitmConn struct {
	net.Conn
	st *connState
}

// mitmListener hands intercepted connections to the inner http.Server.
type mitmListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newMITMListener() *mitmListener {
	return &mitmListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *mitmListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// serve passes c to the server; it reports false once the listener is closed.
func (l *mitmListener) serve(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *mitmListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *mitmListener) Addr() net.Addr { return mitmAddr{} }

type mitmAddr struct{}

func (mitmAddr) Network() string { return "mitm" }
func (mitmAddr) String() string  { return "mitm" }

// newInnerServer is the http.Server for intercepted connections. It bounds
// reading a request head and waiting for the next request, like the outer
// server (NewServer), but has no read or write timeout (docs/DESIGN.md,
// trap 7: a WriteTimeout truncates streams).
func (p *Proxy) newInnerServer() *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(p.serveInner),
		ReadHeaderTimeout: p.readHeaderTimeout,
		IdleTimeout:       p.clientIdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if mc, ok := c.(*mitmConn); ok {
				return context.WithValue(ctx, connStateKey{}, mc.st)
			}
			return ctx
		},
		ErrorLog: log.New(debugWriter{p, "mitm server"}, "", 0),
		// "OPTIONS *" goes upstream through the policy like any request.
		DisableGeneralOptionsHandler: true,
	}
}

// mitmAction is the CONNECT action for an intercepted host.
func (p *Proxy) mitmAction() *goproxy.ConnectAction {
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: p.serveMITM}
}

// serveMITM takes over a CONNECT to an intercepted host: it answers 200,
// does the TLS handshake with a leaf for the CONNECT host (not the SNI)
// and hands the connection to the inner server. client is the tracked,
// hijacked connection.
func (p *Proxy) serveMITM(r *http.Request, client net.Conn, ctx *goproxy.ProxyCtx) {
	st, _ := ctx.UserData.(*connState)
	if st == nil { // unreachable: handleConnect sets it
		_ = client.Close()
		return
	}
	if _, err := io.WriteString(client, connectOK(r, "OK")); err != nil {
		_ = client.Close()
		return
	}
	// Bytes the client sent with the CONNECT (an early ClientHello) are in
	// the hijacked reader's buffer: replay them first.
	conn := client
	if pre := st.takeBuffered(); len(pre) > 0 {
		conn = &prefixConn{Conn: client, pre: pre}
	}
	deadline := time.Now().Add(p.handshakeTimeout)
	_ = conn.SetDeadline(deadline)
	first := make([]byte, 1)
	if _, err := io.ReadFull(conn, first); err != nil {
		_ = conn.Close()
		return
	}
	conn = &prefixConn{Conn: conn, pre: first}
	st.scheme = "http"
	if first[0] == recordTypeHandshake {
		st.scheme = "https"
		tc := tls.Server(conn, p.mitmTLSConfig(st))
		if err := tc.HandshakeContext(context.Background()); err != nil {
			p.log.Debug().Str(fieldError, p.scrubErr(err)).Str(fieldHost, st.host).Str(fieldConnID, st.id).Msg("client TLS handshake failed")
			_ = tc.Close()
			return
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Time{})
	if !p.innerLn.serve(&mitmConn{Conn: conn, st: st}) {
		_ = conn.Close()
	}
}

const recordTypeHandshake = 22 // TLS ContentType handshake: a ClientHello

// connectOK is the CONNECT success line in the request's HTTP version,
// with reason as its reason phrase.
func connectOK(r *http.Request, reason string) string {
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		return "HTTP/1.0 200 " + reason + "\r\n\r\n"
	}
	return "HTTP/1.1 200 " + reason + "\r\n\r\n"
}

// serveInner serves one request inside an intercepted connection through
// the request pipeline (forward), as an absolute-form request for the CONNECT
// host (handleRequest checks that the request names it: docs/DESIGN.md,
// trap 4).
func (p *Proxy) serveInner(w http.ResponseWriter, r *http.Request) {
	st := connStateOf(r)
	if st == nil { // unreachable: ConnContext sets it
		writeDeny(w, deny{reason: ReasonBadRequest, what: r.Method})
		return
	}
	if r.Method == http.MethodConnect {
		// goproxy would open a nested tunnel from inside this one.
		d := deny{reason: ReasonBadRequest, what: "CONNECT inside " + st.authority,
			detail: "a CONNECT inside an intercepted connection is not forwarded"}
		p.audit(&auditEntry{decision: d.decision(), host: st.host, port: st.port, method: r.Method,
			status: d.status(), reason: d.reason, connID: st.id})
		w.Header().Set("Connection", "close")
		writeDeny(w, d)
		return
	}
	if r.Host == "" { // HTTP/1.0 without Host: the CONNECT target
		r.Host = st.authority
	}
	r.URL.Scheme = st.scheme
	if r.URL.Host == "" {
		r.URL.Host = r.Host
	}
	p.serveRequest(w, r, st, true)
}

// takeBuffered returns (once) what the client sent after the CONNECT head
// and net/http had already read.
func (st *connState) takeBuffered() []byte {
	br := st.br
	st.br = nil
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

// prefixConn reads pre before the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// debugWriter logs each line written to it at debug level (net/http's
// ErrorLog: TLS and parse errors of misbehaving clients).
type debugWriter struct {
	p         *Proxy
	component string
}

func (d debugWriter) Write(b []byte) (int, error) {
	if e := d.p.log.Debug(); e.Enabled() {
		e.Str(fieldComponent, d.component).Msg(d.p.scrubLog(strings.TrimSpace(string(b))))
	}
	return len(b), nil
}

var _ net.Listener = (*mitmListener)(nil)
