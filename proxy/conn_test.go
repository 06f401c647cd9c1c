package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/upstreamtest"
)

// Keep-alive inside MITM: one client connection, one upstream connection.
func TestKeepAliveMITM(t *testing.T) {
	e := newStdEnv(t)
	cl := e.tp.client()
	var reused int
	for i := range 10 {
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "https://api.example.test/k", nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		resp := do(t, cl, req)
		if body := readBody(t, resp); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if reused != 9 {
		t.Errorf("client reused its proxy connection %d times, want 9", reused)
	}
	if n := e.apiSrv.Conns(); n != 1 {
		t.Errorf("upstream saw %d connections, want 1 (pooled)", n)
	}
}

// Connection: close is honoured both ways inside MITM.
func TestConnectionClose(t *testing.T) {
	var sawClose sync.Map
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawClose.Store(r.URL.Path, r.Close)
		if r.URL.Path == "/server-close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, "ok")
	})
	up := newUpstream(t, true, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})

	for _, tc := range []struct{ name, path, hdr string }{
		{"client", "/client-close", "Connection: close\r\n"},
		{"server", "/server-close", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tp.mitm(t, "api.example.test:443", "api.example.test")
			br := bufio.NewReader(c)
			resp := rawRequest(t, c, br, "GET "+tc.path+" HTTP/1.1\r\nHost: api.example.test\r\n"+tc.hdr+"\r\n")
			if body := readBody(t, resp); body != "ok" {
				t.Fatalf("body %q", body)
			}
			if !resp.Close {
				t.Errorf("response does not say Connection: close")
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("connection still open after Connection: close")
			} else if strings.Contains(err.Error(), "timeout") {
				t.Errorf("proxy kept the connection open: %v", err)
			}
		})
	}
	// The client's Connection: close is about its own connection; the
	// proxy keeps its pooled upstream connection (a TLS handshake per
	// request would be its largest cost).
	if v, _ := sawClose.Load("/client-close"); v != false {
		t.Errorf("upstream saw Connection: close = %v, want false (pooled upstream connection)", v)
	}
}

// docs/DESIGN.md, trap 7: idle tunnels and intercepted connections are
// reaped; busy streams are not.
func TestIdleReaping(t *testing.T) {
	const idle = 200 * time.Millisecond
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 8 { // 8 × 100 ms: four idle timeouts of traffic
			_, _ = io.WriteString(w, "data: x\n\n")
			w.(http.Flusher).Flush()
			if i < 7 {
				time.Sleep(idle / 2)
			}
		}
	})
	up := newUpstream(t, true, stream)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443": up.Addr(),
		"b.example.test:443":   up.Addr(),
	}, func(c *Config) { c.TunnelIdleTimeout = idle })

	for _, tc := range []struct{ name, target string }{{"tunnel", "b.example.test:443"}, {"MITM", "api.example.test:443"}} {
		t.Run("idle "+tc.name, func(t *testing.T) {
			resp, c, br := tp.connect(t, tc.target)
			if resp.StatusCode != 200 {
				t.Fatalf("CONNECT %d", resp.StatusCode)
			}
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := br.ReadByte()
			if err == nil || strings.Contains(err.Error(), "timeout") {
				t.Fatalf("idle %s not reaped: %v", tc.name, err)
			}
			if d := time.Since(start); d < idle/2 {
				t.Errorf("reaped after %v, before the idle timeout %v", d, idle)
			}
		})
	}
	for _, tc := range []struct {
		name string
		cl   *http.Client
		u    string
	}{{"tunnel", tp.tunnelClient(), "https://b.example.test/s"}, {"MITM", tp.client(), "https://api.example.test/s"}} {
		t.Run("busy "+tc.name, func(t *testing.T) {
			resp, err := tc.cl.Get(tc.u)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || strings.Count(string(b), "data: x") != 8 {
				t.Errorf("stream cut short: %d events, err %v", strings.Count(string(b), "data: x"), err)
			}
		})
	}
	if !eventually(t, func() bool { return strings.Contains(tp.logs.String(), `"msg":"tunnel_closed"`) }) {
		t.Errorf("no tunnel_closed line for the reaped MITM connection")
	}
}

// Close ends every tunnel and intercepted connection, is idempotent, and
// refuses new requests.
func TestClose(t *testing.T) {
	e := newStdEnv(t)
	resp, c, br := e.tp.connect(t, "b.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %d", resp.StatusCode)
	}
	m := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	if err := e.tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.tp.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("tunnel open after Close: %v", err)
	}
	_ = m.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := m.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("intercepted connection open after Close: %v", err)
	}
	resp, _, _ = e.tp.connect(t, "b.example.test:443")
	assertDeny(t, resp, http.StatusServiceUnavailable, ReasonClosed)
}

// A burst of requests over every path, then Close: no goroutine is left.
func TestGoroutinesBaseline(t *testing.T) {
	runtime.GC()
	base := runtime.NumGoroutine()
	func() {
		e := newStdEnv(t)
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var cl *http.Client
				var u string
				switch i % 3 {
				case 0:
					cl, u = e.tp.client(), "https://api.example.test/g"
				case 1:
					cl, u = e.tp.tunnelClient(), "https://b.example.test/g"
				default:
					cl, u = e.tp.client(), "http://allowed.example.test/g"
				}
				resp, err := cl.Get(u)
				if err != nil {
					t.Errorf("%s: %v", u, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				cl.CloseIdleConnections()
			}()
		}
		wg.Wait()
		_ = e.tp.Close()
		e.tp.srv.Close()
		e.apiSrv.Close()
		e.bSrv.Close()
		e.plainSrv.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+1 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, baseline %d:\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// docs/DESIGN.md, trap 12: upstream HTTP/2 works with our dialer and TLS
// config, while the client side stays HTTP/1.1.
func TestUpstreamHTTP2(t *testing.T) {
	var proto atomic.Int32
	rec := &upstreamtest.Recorder{}
	u := newH2Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		rec.ServeHTTP(w, r)
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": u.Addr()})
	req, _ := http.NewRequest("GET", "https://api.example.test/h2", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp := do(t, tp.client(), req)
	_ = readBody(t, resp)
	if resp.ProtoMajor != 1 {
		t.Errorf("client side spoke HTTP/%d", resp.ProtoMajor)
	}
	if proto.Load() != 2 {
		t.Errorf("upstream saw HTTP/%d, want 2", proto.Load())
	}
	if rec.Last(t).Header.Get("Authorization") != "Bearer "+tokAPI {
		t.Error("token not injected over h2")
	}
}

// Clients resume TLS sessions across intercepted connections (issue #6:
// new-connection-per-request throughput): every CONNECT's TLS config
// shares the proxy's session ticket keys.
func TestMITMSessionResumption(t *testing.T) {
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	cache := tls.NewLRUClientSessionCache(8)
	for i := range 3 {
		resp, c, _ := tp.connect(t, "api.example.test:443")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT = %d", resp.StatusCode)
		}
		tc := tls.Client(c, &tls.Config{RootCAs: tp.ca, ServerName: "api.example.test", NextProtos: []string{"http/1.1"}, ClientSessionCache: cache})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		// TLS 1.3 tickets arrive after the handshake: do a request so the
		// client reads them before the next connection.
		resp2 := rawRequest(t, tc, bufio.NewReader(tc), "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		readBody(t, resp2)
		if got := tc.ConnectionState().DidResume; got != (i > 0) {
			t.Errorf("connection %d: DidResume = %v, want %v", i, got, i > 0)
		}
		tc.Close()
	}
}
