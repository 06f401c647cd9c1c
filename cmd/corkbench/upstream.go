package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cork-sh/cork/internal/localca"
)

// Host names the benchmark uses. They never resolve: every proxy (and the
// direct client) maps them to the upstream's loopback listeners.
const (
	hostMITM   = "bench.test"  // routed: intercepted, bearer injected
	hostTunnel = "tunnel.test" // allowed: blind tunnel (CONNECT) and plain forward
	hostDown   = "down.test"   // routed to a closed port (leak test: 502)
	hostDenied = "evil.test"   // neither: 403

	slotName    = "bench"
	placeholder = "cork-bench-placeholder-00000000000000"
	realToken   = "REAL-bench-token-0123456789abcdef"
)

// upstream is the fake origin: the same handler on plain HTTP and HTTPS.
//
//	GET  /1k               1024 bytes, Content-Length
//	GET  /sse?n=10&ms=20   n server-sent events, ms apart, each flushed
//	GET  /down?n=BYTES     n bytes of generated data, Content-Length
//	POST /up               drains the body, answers the byte count
//	GET  /ws               WebSocket upgrade, then one text message at once (ws.go)
type upstream struct {
	httpLn, tlsLn net.Listener
	srv, tlsSrv   *http.Server
	ca            *localca.CA
	injected      atomic.Int64 // requests that carried the real token
	placeholders  atomic.Int64 // requests that still carried the placeholder
	conns         atomic.Int64 // connections accepted (both listeners)
}

var (
	payload1K   = make([]byte, 1024)
	bulkPattern = make([]byte, 256<<10)
)

func init() {
	for i := range payload1K {
		payload1K[i] = 'a' + byte(i%26)
	}
	// Incompressible enough and cheap: a xorshift stream.
	x := uint64(0x9e3779b97f4a7c15)
	for i := range bulkPattern {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		bulkPattern[i] = byte(x)
	}
}

// startUpstream listens on 127.0.0.1 (two ports). With h2 the HTTPS side
// also offers HTTP/2 (cork's upstream Transport then multiplexes).
func startUpstream(h2 bool) (*upstream, error) {
	ca, err := localca.New("cork bench upstream CA")
	if err != nil {
		return nil, err
	}
	conf, err := ca.ServerConfig(hostMITM, hostTunnel, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	conf.NextProtos = []string{"http/1.1"}
	if h2 {
		conf.NextProtos = []string{"h2", "http/1.1"}
	}
	u := &upstream{ca: ca}
	if u.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if u.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		u.httpLn.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /1k", u.serve1K)
	mux.HandleFunc("GET /sse", u.serveSSE)
	mux.HandleFunc("GET /down", u.serveDown)
	mux.HandleFunc("POST /up", u.serveUp)
	mux.HandleFunc("GET /ws", u.serveWS)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer " + realToken:
			u.injected.Add(1)
		case "Bearer " + placeholder:
			u.placeholders.Add(1)
		}
		mux.ServeHTTP(w, r)
	})
	countConns := func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	quiet := log.New(io.Discard, "", 0) // clients that hang up on purpose
	u.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: countConns, ErrorLog: quiet}
	u.tlsSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: countConns, ErrorLog: quiet}
	go u.srv.Serve(u.httpLn)
	go u.tlsSrv.Serve(tls.NewListener(u.tlsLn, conf))
	return u, nil
}

func (u *upstream) httpAddr() string  { return u.httpLn.Addr().String() }
func (u *upstream) httpsAddr() string { return u.tlsLn.Addr().String() }
func (u *upstream) pool() *x509.CertPool {
	return u.ca.Pool()
}

// resolveMap maps the benchmark's names to the upstream, as CORK_RESOLVE
// and proxy.Config.Resolve take it.
func (u *upstream) resolveMap() map[string]string {
	return map[string]string{
		hostMITM + ":443":   u.httpsAddr(),
		hostTunnel + ":443": u.httpsAddr(),
		hostTunnel + ":80":  u.httpAddr(),
	}
}

// writeCA writes the upstream CA certificate into dir and returns its path.
func (u *upstream) writeCA(dir string) (string, error) {
	path := filepath.Join(dir, "upstream-ca.pem")
	return path, os.WriteFile(path, u.ca.PEM(), 0o644)
}

func (u *upstream) close() {
	u.srv.Close()
	u.tlsSrv.Close()
}

func (u *upstream) serve1K(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", "1024")
	w.Write(payload1K)
}

func (u *upstream) serveSSE(w http.ResponseWriter, r *http.Request) {
	n := queryInt(r, "n", 10)
	gap := time.Duration(queryInt(r, "ms", 20)) * time.Millisecond
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	start := time.Now()
	for i := range n {
		// Scheduled from the start, so one late event does not shift the rest.
		if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
			time.Sleep(d)
		}
		if _, err := fmt.Fprintf(w, "event: delta\ndata: {\"i\":%d}\n\n", i); err != nil {
			return
		}
		if f != nil {
			f.Flush()
		}
	}
}

func (u *upstream) serveDown(w http.ResponseWriter, r *http.Request) {
	n := int64(queryInt(r, "n", 1<<20))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		b := bulkPattern
		if int64(len(b)) > n {
			b = b[:n]
		}
		m, err := w.Write(b)
		n -= int64(m)
		if err != nil {
			return
		}
	}
}

func (u *upstream) serveUp(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%d\n", n)
}

func queryInt(r *http.Request, key string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(key)); err == nil && v >= 0 {
		return v
	}
	return def
}

// genReader yields n bytes of the bulk pattern without allocating.
type genReader struct{ n, off int64 }

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	total := 0
	for len(p) > 0 {
		c := copy(p, bulkPattern[g.off%int64(len(bulkPattern)):])
		p = p[c:]
		g.off += int64(c)
		total += c
	}
	g.n -= int64(total)
	return total, nil
}
