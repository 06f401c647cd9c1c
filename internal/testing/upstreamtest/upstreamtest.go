package upstreamtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cork-sh/cork/internal/localca"
)

// DefaultHosts are the names a Server's certificate covers when
// Config.Hosts is empty.
var DefaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// Request is one request an upstream received.
type Request struct {
	Method string
	Host   string // the Host header as received (HTTP/2: :authority), port included if sent
	Path   string // URL path, decoded
	Query  string // raw query, without "?"
	// Header is every header the client sent, credentials included: tests
	// check which token arrived.
	Header http.Header
	// Body is the request body as far as the handler has read it, up to
	// MaxBody bytes; BodyLen counts every byte read.
	Body    []byte
	BodyLen int64
}

// MaxBody caps the request body a Request keeps, so that a test streaming
// gigabytes through the upstream does not hold them.
const MaxBody = 1 << 20

// Recorder is an http.Handler that records each request when its head
// arrives, then passes it to Handler. The body is recorded as Handler
// reads it, so a handler that streams still streams. If Handler is nil,
// the body is read to its end and the answer is 200 text/plain
// "ok from <Host>". The zero value is ready to use; a Recorder is safe for
// concurrent use.
type Recorder struct {
	Handler http.Handler

	mu   sync.Mutex
	reqs []Request
}

var _ http.Handler = (*Recorder)(nil)

// ServeHTTP records req and answers it with r.Handler.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, Request{
		Method: req.Method,
		Host:   req.Host,
		Path:   req.URL.Path,
		Query:  req.URL.RawQuery,
		Header: req.Header.Clone(),
	})
	i := len(r.reqs) - 1
	r.mu.Unlock()
	if req.Body != nil {
		req.Body = &teeBody{ReadCloser: req.Body, r: r, i: i}
	}
	if r.Handler != nil {
		r.Handler.ServeHTTP(w, req)
		return
	}
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok from "+req.Host)
}

// teeBody appends what is read from a request body to its record.
type teeBody struct {
	io.ReadCloser
	r *Recorder
	i int
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.r.mu.Lock()
		rec := &b.r.reqs[b.i]
		rec.BodyLen += int64(n)
		if keep := min(n, MaxBody-len(rec.Body)); keep > 0 {
			rec.Body = append(rec.Body, p[:keep]...)
		}
		b.r.mu.Unlock()
	}
	return n, err
}

// Requests returns a copy of every request recorded so far, in arrival
// order.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.reqs)
	for i := range out {
		out[i].Body = bytes.Clone(out[i].Body)
	}
	return out
}

// Last returns the latest request; it ends t if there is none.
func (r *Recorder) Last(t testing.TB) Request {
	t.Helper()
	all := r.Requests()
	if len(all) == 0 {
		t.Fatal("upstream saw no request")
	}
	return all[len(all)-1]
}

// Config configures New. The zero value is valid: HTTPS (HTTP/1.1) with a
// fresh CA for DefaultHosts, answering "ok from <Host>".
type Config struct {
	// Handler answers each request after it is recorded. If nil, 200
	// text/plain "ok from <Host>".
	Handler http.Handler
	// Plain serves plain HTTP instead of HTTPS.
	Plain bool
	// HTTP2 offers HTTP/2 (and HTTP/1.1) over TLS.
	HTTP2 bool
	// CA signs the server's certificate. If nil, a fresh CA is made, so
	// set it to have several servers share one trust root.
	CA *localca.CA
	// Hosts are the DNS names (wildcards allowed) and IPs the certificate
	// covers. If empty, DefaultHosts.
	Hosts []string
}

// Server is a running recording upstream, closed at t's cleanup. The
// embedded httptest.Server gives its URL, Listener and Client. A Server is
// safe for concurrent use.
type Server struct {
	*httptest.Server
	rec   Recorder
	ca    *localca.CA
	conns atomic.Int32
}

// New starts a Server on loopback; it ends t if that fails.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{rec: Recorder{Handler: cfg.Handler}}
	s.Server = httptest.NewUnstartedServer(&s.rec)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	if cfg.Plain {
		s.Start()
		t.Cleanup(s.Close)
		return s
	}
	s.ca = cfg.CA
	if s.ca == nil {
		var err error
		if s.ca, err = localca.New("upstreamtest CA"); err != nil {
			t.Fatalf("upstreamtest: %v", err)
		}
	}
	hosts := cfg.Hosts
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	leaf, err := s.ca.Leaf(hosts...)
	if err != nil {
		t.Fatalf("upstreamtest: leaf for %q: %v", hosts, err)
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
	s.EnableHTTP2 = cfg.HTTP2
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// Addr is the listener's address (host:port), for a proxy's Resolve.
func (s *Server) Addr() string { return s.Listener.Addr().String() }

// CA is the CA that signed the certificate; nil for a plain server.
func (s *Server) CA() *localca.CA { return s.ca }

// Roots is a pool holding only the server's CA, for a proxy's
// UpstreamRootCAs; nil for a plain server.
func (s *Server) Roots() *x509.CertPool {
	if s.ca == nil {
		return nil
	}
	return s.ca.Pool()
}

// Conns is the number of connections accepted so far.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// Requests returns a copy of every request recorded so far, in arrival
// order.
func (s *Server) Requests() []Request { return s.rec.Requests() }

// Last returns the latest request; it ends t if there is none.
func (s *Server) Last(t testing.TB) Request {
	t.Helper()
	return s.rec.Last(t)
}
