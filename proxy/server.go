package proxy

import (
	"bufio"
	"bytes"
	"context"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// ReasonTooManyConns is the deny reason for a client over
// Config.MaxConnsPerClient (LimitListener): 503.
const ReasonTooManyConns = "too_many_connections"

// refuseTimeout bounds how long a refused connection is kept to read the
// request head and write the 503.
const refuseTimeout = 2 * time.Second

// NewServer returns the http.Server for the proxy's own listener: Handler p,
// a bound on reading each request head (Config.ReadHeaderTimeout) and on
// keep-alive connections waiting for their next request
// (Config.ClientIdleTimeout). It has no read or write timeout: streams may
// last hours (docs/DESIGN.md, trap 7). Connections the proxy takes over
// (tunnels, intercepted connections) are watched by the proxy itself.
//
// Its connections accepted on a Unix socket with a path are marked, so
// that with Config.TrustUnixSockets they need no session credential
// (Config.ClientAuth): there the socket file's permissions decide who may
// connect (docs/DESIGN.md, decision 15). A server built otherwise
// (httptest.NewServer(p)) marks nothing: every client must present the
// credential.
func (p *Proxy) NewServer() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.readHeaderTimeout,
		IdleTimeout:       p.clientIdleTimeout,
		MaxHeaderBytes:    http.DefaultMaxHeaderBytes,
		ErrorLog:          log.New(debugWriter{p, "server"}, "", 0),
		ConnContext:       markSocketClient,
	}
}

// socketClientKey marks, in a connection's context, a client connected on
// a Unix socket that has a path in the file system.
type socketClientKey struct{}

// markSocketClient is NewServer's ConnContext: it marks c's context when c
// came in on a Unix socket bound to a path. An abstract socket (Linux,
// "@name") is not marked: it has no file, so no permissions, and any
// process in the network namespace may connect to it.
func markSocketClient(ctx context.Context, c net.Conn) context.Context {
	a := c.LocalAddr()
	if a == nil || a.Network() != "unix" {
		return ctx
	}
	if name := a.String(); name == "" || name[0] == '@' {
		return ctx
	}
	return context.WithValue(ctx, socketClientKey{}, true)
}

// isSocketClient reports whether ctx is that of a connection
// markSocketClient marked.
func isSocketClient(ctx context.Context) bool {
	marked, _ := ctx.Value(socketClientKey{}).(bool)
	return marked
}

// LimitListener wraps ln so that one client address holds at most
// Config.MaxConnsPerClient connections at once. A connection past the
// bound is answered "503 Service Unavailable" with X-Cork-Deny-Reason
// too_many_connections and closed; it is audited. Connections on a Unix
// socket share one address.
func (p *Proxy) LimitListener(ln net.Listener) net.Listener {
	if p.maxConnsPerClient < 0 {
		return ln
	}
	return &limitListener{Listener: ln, p: p, max: p.maxConnsPerClient, n: map[string]int{}}
}

type limitListener struct {
	net.Listener
	p   *Proxy
	max int
	mu  sync.Mutex
	n   map[string]int // open connections by client address
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		l.mu.Lock()
		if l.n[key] >= l.max {
			l.mu.Unlock()
			go l.p.refuseConn(c, key)
			continue
		}
		l.n[key]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, key: key}, nil
	}
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	if l.n[key]--; l.n[key] <= 0 {
		delete(l.n, key)
	}
	l.mu.Unlock()
}

// clientKey is the address a connection limit counts by: the IP.
func clientKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// refuseConn answers a connection over its client's bound: it reads the
// request head (so that closing does not reset the connection before the
// client reads the answer), writes 503 and closes.
func (p *Proxy) refuseConn(c net.Conn, client string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	br := bufio.NewReaderSize(c, 4096)
	var head []byte
	for len(head) < 4096 && !bytes.Contains(head, []byte("\r\n\r\n")) {
		b, err := br.ReadSlice('\n')
		head = append(head, b...)
		if err != nil {
			break
		}
	}
	d := deny{reason: ReasonTooManyConns, what: "connection from " + client}
	writeDenyRaw(c, d)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	p.audit(&auditEntry{decision: decisionDeny, status: d.status(), reason: d.reason, connID: p.newConnState().id})
}

// limitConn releases its slot once, when closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	key  string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// CloseWrite and CloseRead keep half-close working through the wrapper
// (blind tunnels, see trackedConn).
func (c *limitConn) CloseWrite() error { return closeWrite(c.Conn) }
func (c *limitConn) CloseRead() error  { return closeRead(c.Conn) }

// closeWrite half-closes c's sending side, or closes c when it cannot.
func closeWrite(c net.Conn) error {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return c.Close()
}

// closeRead half-closes c's receiving side; without support it does
// nothing (the other direction may still be in use).
func closeRead(c net.Conn) error {
	if hc, ok := c.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return nil
}

var _ net.Listener = (*limitListener)(nil)
