package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cork-sh/cork/internal/testing/upstreamtest"
	"github.com/cork-sh/cork/proxy/wsrelay"
	"github.com/cork-sh/cork/resolve"
)

// Regressions found by the second review: relays and requests whose other
// side stops, rotations during a WebSocket, placeholders in host names.

func r2Frame(fin, rsv1 bool, op byte, masked bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	var b1 byte
	if masked {
		b1 = 0x80
	}
	var out []byte
	switch n := len(payload); {
	case n < 126:
		out = append(out, b0, b1|byte(n))
	case n <= 0xffff:
		out = append(out, b0, b1|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, b0, b1|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	var key [4]byte
	rand.Read(key[:])
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// r2Upgrade hijacks and answers 101, with ext as Sec-WebSocket-Extensions.
func r2Upgrade(w http.ResponseWriter, r *http.Request, ext string) (net.Conn, *bufio.ReadWriter) {
	c, brw, _ := w.(http.Hijacker).Hijack()
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		wsrelay.AcceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n"
	if ext != "" {
		resp += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	_, _ = brw.WriteString(resp + "\r\n")
	_ = brw.Flush()
	return c, brw
}

const r2Handshake = "GET /ws HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer " + phAPI + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// goroutinesWith reports whether some goroutine's stack mentions fn.
func goroutinesWith(fn string) bool {
	buf := make([]byte, 4<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}

// A WebSocket whose upstream stops reading: once the reaper closes the
// client side, the relay's upstream side is closed too, and the request is
// audited.
func TestRelayEndsWhenUpstreamStopsReading(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	rel := func() { once.Do(func() { close(release) }) }
	defer rel()
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r2Upgrade(w, r, "")
		defer c.Close()
		<-release // never reads, never writes
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()},
		func(c *Config) { c.TunnelIdleTimeout = 300 * time.Millisecond })
	tc := tp.mitm(t, "api.example.test:443", "api.example.test")
	if resp := rawRequest(t, tc, bufio.NewReader(tc), r2Handshake+"\r\n"); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	frame := r2Frame(true, false, 0x2, true, make([]byte, 64<<10))
	_ = tc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, err := tc.Write(frame); err != nil {
			break
		}
	}
	if !eventually(t, func() bool { return !goroutinesWith("wsrelay.(*Relay).Write") }) {
		t.Error("the relay is still blocked writing upstream after the client side was reaped")
	}
	if !eventually(t, func() bool {
		return strings.Contains(grepLines(tp.logs.String(), `"status":101`), `"reason":"idle_timeout"`)
	}) {
		t.Errorf("audit: %q, want the WebSocket's line with reason idle_timeout", grepLines(tp.logs.String(), `"status":101`))
	}
}

// A blind tunnel whose upstream stops reading, and whose client goes away:
// both goroutines end and the upstream connection is closed.
func TestTunnelEndsWhenUpstreamStopsReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	upc := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			upc <- c // never read, never written
		}
	}()
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"b.example.test:443": ln.Addr().String()},
		func(c *Config) { c.TunnelIdleTimeout = 300 * time.Millisecond })
	resp, c, _ := tp.connect(t, "b.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %d", resp.StatusCode)
	}
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	chunk := make([]byte, 64<<10)
	for {
		if _, err := c.Write(chunk); err != nil {
			break
		}
	}
	_ = c.Close()
	u := <-upc
	defer u.Close()
	if !eventually(t, func() bool {
		return !goroutinesWith("proxy.(*Proxy).pipe") && !goroutinesWith("proxy.(*Proxy).serveTunnel")
	}) {
		t.Error("tunnel goroutines still there after the client closed and the reaper ran")
	}
	_ = u.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, u); err != nil {
		t.Errorf("upstream side: %v, want it closed by the proxy", err)
	}
}

// A request whose body never comes, or whose answer the client never
// reads, is cut after the tunnel idle timeout without progress.
func TestStalledRequestCut(t *testing.T) {
	e := newStdEnv(t, func(c *Config) { c.TunnelIdleTimeout = 300 * time.Millisecond })
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for range 1024 { // 32 MiB
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	addr := serveProxy(t, e.tp.Proxy)
	t.Run("body never sent, intercepted", func(t *testing.T) {
		tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
		_, _ = io.WriteString(tc, "POST /x HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 10\r\n\r\n")
		if !closedWithin(tc, 5*time.Second) {
			t.Error("connection held 5 s waiting for a body")
		}
	})
	t.Run("body never sent, outer", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "POST http://allowed.example.test/x HTTP/1.1\r\nHost: allowed.example.test\r\nContent-Length: 10\r\n\r\n")
		if !closedWithin(c, 5*time.Second) {
			t.Error("connection held 5 s waiting for a body")
		}
	})
	t.Run("answer never read", func(t *testing.T) {
		tc := e.tp.mitm(t, "api.example.test:443", "api.example.test")
		_, _ = io.WriteString(tc, "GET /big HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		// The write fails 300 ms after the buffers fill; closing the TLS
		// connection may then wait up to 5 s more for its close_notify
		// (crypto/tls bounds that write itself).
		deadline := time.Now().Add(15 * time.Second)
		for len(e.tp.conns.snapshot()) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(e.tp.conns.snapshot()); n > 0 {
			t.Errorf("%d connection(s) open 15 s after the client stopped reading", n)
		}
	})
}

// A WebSocket opened before a rotation is scrubbed of the new token too.
func TestWebSocketRotation(t *testing.T) {
	const rotated = "REAL-api-token-ROTATED-9999"
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		for {
			_, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			_ = c.Write(r.Context(), websocket.MessageText, []byte("seen elsewhere: "+string(msg)))
		}
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := tp.wsDial(t, ctx, websocket.CompressionDisabled)
	toks := testTokens()
	toks["api"] = resolve.NewSecret(rotated)
	tp.SetTokens(toks)
	// The upstream would learn the new token over another connection.
	_ = c.Write(ctx, websocket.MessageText, []byte(rotated))
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(msg), rotated) || !strings.Contains(string(msg), phAPI) {
		t.Errorf("message %q: want the rotated token replaced by the placeholder", msg)
	}
}

// A placeholder as a DNS label under a wildcard is refused at CONNECT.
func TestPlaceholderInHostname(t *testing.T) {
	up := newUpstream(t, true, &upstreamtest.Recorder{})
	pol := `
slots:
  api:   { placeholder: "` + phAPI + `" }
  other: { placeholder: "` + phOther + `" }
routes:
  - host: "*.example.test"
    slot: api
  - host: other.test
    slot: other
allow:
  - "*.wild.test"
`
	label := strings.ToLower(phOther)
	tp := startProxy(t, pol, testTokens(), map[string]string{
		label + ".example.test:443": up.Addr(), label + ".wild.test:443": up.Addr()})
	for _, host := range []string{label + ".example.test", label + ".wild.test"} {
		resp, _, _ := tp.connect(t, host+":443")
		assertDeny(t, resp, http.StatusForbidden, ReasonPlaceholderLeak)
	}
	if n := strings.Count(tp.logs.String(), `"reason":"placeholder_leak"`); n != 2 {
		t.Errorf("%d placeholder_leak audit lines, want 2", n)
	}
}

// A WebSocket that keeps talking outlives the tunnel idle timeout: the
// request's deadlines end with the upgrade.
func TestActiveWebSocketOutlivesIdleTimeout(t *testing.T) {
	up := newUpstream(t, true, wsEcho(t, ""))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()},
		func(c *Config) { c.TunnelIdleTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := tp.wsDial(t, ctx, websocket.CompressionDisabled)
	for i := range 15 { // 1.5 s, five idle timeouts
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wsDial opens wss://api.example.test/ws through tp with the api
// placeholder, closed at cleanup.
func (tp *testProxy) wsDial(t *testing.T, ctx context.Context, mode websocket.CompressionMode) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "wss://api.example.test/ws", &websocket.DialOptions{
		HTTPClient: tp.client(), HTTPHeader: http.Header{"Authorization": {"Bearer " + phAPI}}, CompressionMode: mode,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}
