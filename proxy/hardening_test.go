package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cork-sh/cork/resolve"
)

// serveProxy serves tp's proxy on a listener of its own with NewServer and
// LimitListener, as `cork proxy` does, and returns its address.
func serveProxy(t *testing.T, p *Proxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := p.NewServer()
	go func() { _ = srv.Serve(p.LimitListener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// closedWithin reports whether the peer closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

func TestLimitListener(t *testing.T) {
	e := newStdEnv(t, func(c *Config) { c.MaxConnsPerClient = 3 })
	addr := serveProxy(t, e.tp.Proxy)
	var open []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	get := func() *http.Response {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return rawRequest(t, c, bufio.NewReader(c), "GET http://allowed.example.test/ HTTP/1.1\r\nHost: allowed.example.test\r\n\r\n")
	}
	// The listener counts connections as it accepts them.
	time.Sleep(100 * time.Millisecond)
	assertDeny(t, get(), http.StatusServiceUnavailable, ReasonTooManyConns)
	_ = open[0].Close()
	if !eventually(t, func() bool {
		resp := get()
		readBody(t, resp)
		return resp.StatusCode == 200
	}) {
		t.Error("after one connection closed, a new one is still refused")
	}
	if !strings.Contains(e.tp.logs.String(), `"reason":"too_many_connections"`) {
		t.Error("no audit line for the refused connection")
	}
}

func TestClientIdleTimeout(t *testing.T) {
	e := newStdEnv(t, func(c *Config) { c.ClientIdleTimeout = 300 * time.Millisecond })
	addr := serveProxy(t, e.tp.Proxy)
	t.Run("plain keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		readBody(t, rawRequest(t, c, br, "GET http://allowed.example.test/ HTTP/1.1\r\nHost: allowed.example.test\r\n\r\n"))
		if !closedWithin(c, 3*time.Second) {
			t.Error("idle keep-alive connection still open after 3 s")
		}
	})
	t.Run("intercepted keep-alive", func(t *testing.T) {
		tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
		readBody(t, rawRequest(t, tc, bufio.NewReader(tc), "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n"))
		if !closedWithin(tc, 3*time.Second) {
			t.Error("idle intercepted connection still open after 3 s")
		}
	})
}

// A request head trickled a byte at a time is cut by the header timeout,
// whatever the bytes: the idle reaper does not count them as progress.
func TestHeaderTrickle(t *testing.T) {
	e := newStdEnv(t, func(c *Config) {
		c.ReadHeaderTimeout = 500 * time.Millisecond
		c.TunnelIdleTimeout = time.Hour
	})
	addr := serveProxy(t, e.tp.Proxy)
	trickle := func(t *testing.T, c net.Conn) {
		t.Helper()
		head := "GET / HTTP/1.1\r\nHost: api.example.test\r\nX-Slow: " + strings.Repeat("a", 100)
		cut := make(chan struct{})
		go func() {
			defer close(cut)
			for i := 0; i < len(head); i++ {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		select {
		case <-cut:
			if !closedWithin(c, 2*time.Second) {
				t.Error("connection open after the whole trickle")
			}
		case <-time.After(5 * time.Second):
			t.Error("a trickled head held the connection for 5 s")
		}
	}
	t.Run("outer listener", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		trickle(t, c)
	})
	t.Run("inside an intercepted connection", func(t *testing.T) {
		trickle(t, e.tp.mitm(t, "api.example.test:443", "api.example.test"))
	})
}

// A blind tunnel relays each direction to its end: a client that shuts
// its sending side after the request still gets the whole answer.
func TestTunnelHalfClose(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		_, _ = io.WriteString(c, "got "+strconv.FormatInt(n, 10)+" bytes")
	})
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"b.example.test:443": addr})
	resp, c, br := tp.connect(t, "b.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d", resp.StatusCode)
	}
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(br)
	if string(got) != "got 1000 bytes" {
		t.Errorf("after CloseWrite the client read %q (%v), want the answer", got, err)
	}
	// bytes_down counts the CONNECT answer too.
	want := `"bytes_down":` + strconv.Itoa(len("HTTP/1.1 200 Connection established\r\n\r\n")+len("got 1000 bytes"))
	if !eventually(t, func() bool {
		l := grepLines(tp.logs.String(), `"decision":"tunnel"`)
		return strings.Contains(l, `"status":200`) && strings.Contains(l, `"bytes_up":1000`) && strings.Contains(l, want)
	}) {
		t.Errorf("tunnel audit line: %s", grepLines(tp.logs.String(), `"decision":"tunnel"`))
	}
}

// The upstream gets the canonical authority, not the client's spelling.
func TestCanonicalHost(t *testing.T) {
	e := newStdEnv(t)
	tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	readBody(t, rawRequest(t, tc, bufio.NewReader(tc), "GET / HTTP/1.1\r\nHost: API.Example.TEST.:443\r\n\r\n"))
	if h := e.api.Last(t).Host; h != "api.example.test" {
		t.Errorf("upstream Host = %q, want api.example.test", h)
	}
}

// Trailers declared by an HTTP/2 upstream reach an HTTP/1.1 client.
func TestTrailersOverHTTP2(t *testing.T) {
	u := newH2Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Length", "4")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42 "+r.Header.Get("Authorization"))
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": u.Addr()})
	req, _ := http.NewRequest("GET", "https://api.example.test/t", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp := do(t, tp.client(), req)
	if body := readBody(t, resp); body != "body" {
		t.Errorf("body %q", body)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "42 Bearer "+phAPI {
		t.Errorf("trailer X-Sum = %q, want it passed on with the token scrubbed", got)
	}
}

func TestAuditClientGone(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for i := 0; i < 4096; i++ {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	resp := rawRequest(t, tc, bufio.NewReader(tc), "GET /down HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
	_, _ = io.ReadFull(resp.Body, make([]byte, 1<<20))
	_ = tc.Close()
	if !eventually(t, func() bool {
		return strings.Contains(grepLines(e.tp.logs.String(), `"path":"/down"`), `"reason":"client_gone"`)
	}) {
		t.Errorf("audit line: %s", grepLines(e.tp.logs.String(), `"path":"/down"`))
	}
}

func TestAuditShutdownReason(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	resp := rawRequest(t, tc, bufio.NewReader(tc), "GET /sse HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
	_, _ = bufio.NewReader(resp.Body).ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = e.tp.Shutdown(ctx)
	if !eventually(t, func() bool {
		return strings.Contains(grepLines(e.tp.logs.String(), `"path":"/sse"`), `"reason":"shutdown"`)
	}) {
		t.Errorf("audit line: %s", grepLines(e.tp.logs.String(), `"path":"/sse"`))
	}
}

func TestUnusableToken(t *testing.T) {
	e := newStdEnv(t)
	bad := "bad\r\nX-Injected: 1"
	e.tp.SetTokens(resolve.Tokens{"api": resolve.NewSecret(bad), "gh": resolve.NewSecret(tokGH), "other": resolve.NewSecret(tokOther)})
	err := e.tp.Ready()
	if err == nil || !strings.Contains(err.Error(), "unusable token for slot(s) api") {
		t.Errorf("Ready = %v, want the slot named unusable", err)
	}
	req, _ := http.NewRequest("GET", "https://api.example.test/", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	assertDeny(t, do(t, e.tp.client(), req), http.StatusServiceUnavailable, ReasonTokenUnavailable)
	if l := e.tp.logs.String(); strings.Contains(l, "X-Injected") || !strings.Contains(l, `"slots":["api"]`) {
		t.Errorf("log should name the slot and not the value: %s", grepLines(l, "token refused"))
	}
}

func TestUpgrades(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad-accept", "/h2c":
			c, brw, _ := w.(http.Hijacker).Hijack()
			defer c.Close()
			up := "websocket\r\nSec-WebSocket-Accept: d3Jvbmc="
			if r.URL.Path == "/h2c" {
				up = "h2c"
			}
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + up + "\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(io.Discard, c)
		case "/ws":
			wsEcho(t, "Bearer "+tokAPI)(w, r)
		default:
			e.api.ServeHTTP(w, r)
		}
	})
	t.Run("h2c request refused", func(t *testing.T) {
		resp := e.rawMITM(t, "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n", "")
		assertDeny(t, resp, http.StatusForbidden, ReasonUpgradeRefused)
	})
	for _, path := range []string{"/bad-accept", "/h2c"} {
		t.Run("upstream 101 "+path, func(t *testing.T) {
			tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			resp := rawRequest(t, tc, bufio.NewReader(tc), "GET "+path+" HTTP/1.1\r\nHost: api.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			assertDeny(t, resp, http.StatusBadGateway, ReasonBadUpgrade)
		})
	}
	t.Run("raw HTTP after the 101", func(t *testing.T) {
		tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
		br := bufio.NewReader(tc)
		resp := rawRequest(t, tc, br, "GET /ws HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		_, _ = io.WriteString(tc, "GET /oauth/token HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		if !closedWithin(tc, 5*time.Second) {
			t.Error("connection open after raw HTTP bytes on a WebSocket")
		}
		for _, r := range e.api.Requests() {
			if r.Path == "/oauth/token" {
				t.Error("the blocked path reached the upstream through the upgraded connection")
			}
		}
	})
}

// WebSocket messages: the server's are scrubbed of the real token, the
// client's go through the tripwire.
func TestWebSocketScrubAndTripwire(t *testing.T) {
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			return
		}
		ctx := r.Context()
		a := r.Header.Get("Authorization")
		_ = c.Write(ctx, websocket.MessageText, []byte("echo: "+a))
		_ = c.Write(ctx, websocket.MessageBinary, []byte(strings.Repeat("z", 5000)+a))
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			_ = c.Write(ctx, typ, msg)
		}
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover} {
		t.Run(strconv.Itoa(int(mode)), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := tp.wsDial(t, ctx, mode)
			for range 2 {
				_, msg, err := c.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				assertNoTokenForms(t, "message", string(msg))
				if !strings.Contains(string(msg), phAPI) {
					t.Errorf("message %q: want the placeholder where the token was", msg[max(0, len(msg)-60):])
				}
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hi" {
				t.Fatalf("echo = %q, %v", msg, err)
			}
			_ = c.Write(ctx, websocket.MessageText, []byte("leak "+phOther))
			_, _, err := c.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				t.Errorf("after a placeholder of an unbound slot: %v, want close 1008", err)
			}
		})
	}
	if !eventually(t, func() bool { return strings.Contains(tp.logs.String(), `"reason":"placeholder_leak"`) }) {
		t.Error("no audit line for the WebSocket tripwire")
	}
	assertNoSecrets(t, "log", tp.logs.String())
}
