package echoupstream

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cork-sh/cork/internal/localca"
)

// DefaultHosts are the names a Server's certificate covers when
// Config.Hosts is empty.
var DefaultHosts = []string{"echo.test", "git.test", "other.test", "plain.test", "pass.test", "h2.test"}

// maxRecordedBody caps the request body a Request keeps; the rest is read
// and counted, not kept.
const maxRecordedBody = 2 << 20

// Config configures a Server. The zero value is usable.
type Config struct {
	// Hosts are the DNS names the certificate covers. If empty,
	// DefaultHosts.
	Hosts []string
}

// Request is what reached the upstream: one request, recorded when its
// head arrived and completed when its body was read (or failed to be).
type Request struct {
	Method     string
	Path       string // URL path, decoded
	RequestURI string // as sent on the request line
	Host       string // the raw Host header (HTTP/2: :authority)
	Proto      string // "HTTP/1.1", "HTTP/2.0"
	Header     http.Header
	Trailer    http.Header
	Body       []byte // up to 2 MiB; nil while the body is being read
	BodyLen    int64  // bytes read, including what Body does not keep
	BodyErr    string // non-empty when reading the body failed (client gone)
}

// Message is a WebSocket message the /ws endpoint received.
type Message struct {
	Binary bool
	Data   []byte
}

// Server is a running echo upstream. Its methods are safe for concurrent
// use.
type Server struct {
	ca    *localca.CA
	h1    *http.Server
	h2    *http.Server
	plain *http.Server
	addrs [3]string

	mu   sync.Mutex
	reqs []Request
	msgs []Message
	raw  []byte
}

// New starts a Server on three loopback listeners.
func New(cfg Config) (*Server, error) {
	hosts := cfg.Hosts
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	ca, err := localca.New("echo upstream CA")
	if err != nil {
		return nil, fmt.Errorf("echo upstream CA: %w", err)
	}
	leaf, err := ca.Leaf(hosts...)
	if err != nil {
		return nil, fmt.Errorf("echo upstream leaf: %w", err)
	}
	s := &Server{ca: ca}
	mk := func(h2 bool) *http.Server {
		srv := &http.Server{
			Handler:           s.handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          nil,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12},
		}
		if !h2 {
			// A non-nil empty map turns HTTP/2 off.
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
		return srv
	}
	s.h1, s.h2, s.plain = mk(false), mk(true), mk(false)
	var lns [3]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return nil, fmt.Errorf("echo upstream listen: %w", err)
		}
		lns[i] = ln
		s.addrs[i] = ln.Addr().String()
	}
	go func() { _ = s.h1.ServeTLS(lns[0], "", "") }()
	go func() { _ = s.h2.ServeTLS(lns[1], "", "") }()
	go func() { _ = s.plain.Serve(lns[2]) }()
	return s, nil
}

// Addr is the HTTPS listener that speaks only HTTP/1.1.
func (s *Server) Addr() string { return s.addrs[0] }

// H2Addr is the HTTPS listener that offers HTTP/2 (and HTTP/1.1).
func (s *Server) H2Addr() string { return s.addrs[1] }

// PlainAddr is the plain-HTTP listener.
func (s *Server) PlainAddr() string { return s.addrs[2] }

// CAPEM is the certificate of the CA that signed the server's leaf.
func (s *Server) CAPEM() []byte { return s.ca.PEM() }

// Requests returns a copy of every request recorded so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// RequestsTo returns the recorded requests whose path is path.
func (s *Server) RequestsTo(path string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Messages returns the WebSocket messages /ws received, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// RawUpgraded returns every byte clients sent on /ws-raw connections
// after the 101.
func (s *Server) RawUpgraded() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.raw)
}

// Close stops every listener and closes open connections. Hijacked
// connections end on their own deadlines.
func (s *Server) Close() error {
	return errors.Join(s.h1.Close(), s.h2.Close(), s.plain.Close())
}

// record appends r and returns its index for completeRecord.
func (s *Server) record(r Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	return len(s.reqs) - 1
}

// completeRecord adds what reading the body of request i gave.
func (s *Server) completeRecord(i int, body []byte, n int64, trailer http.Header, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.reqs[i]
	r.Body, r.BodyLen, r.Trailer = body, n, trailer
	if err != nil {
		r.BodyErr = err.Error()
	}
}

func (s *Server) recordMessage(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

func (s *Server) recordRaw(b []byte) {
	s.mu.Lock()
	s.raw = append(s.raw, b...)
	s.mu.Unlock()
}

// TCPCounter is a plain TCP server: per connection it reads until EOF,
// writes "got N bytes" and closes. Safe for concurrent use.
type TCPCounter struct {
	ln net.Listener
	wg sync.WaitGroup
}

// NewTCPCounter starts a TCPCounter on 127.0.0.1.
func NewTCPCounter() (*TCPCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcp counter listen: %w", err)
	}
	c := &TCPCounter{ln: ln}
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

// Addr is the listener's address.
func (c *TCPCounter) Addr() string { return c.ln.Addr().String() }

// Close stops accepting and waits for open connections to end (each is
// bounded by a 30 s deadline).
func (c *TCPCounter) Close() error {
	err := c.ln.Close()
	c.wg.Wait()
	return err
}

func (c *TCPCounter) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.Copy(io.Discard, conn)
			fmt.Fprintf(conn, "got %d bytes", n)
		}()
	}
}
