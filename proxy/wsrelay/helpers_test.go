package wsrelay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	secret      = "SECRET-TOKEN-1234"
	placeholder = "PLACEHOLDER-xxxxx"
	forbidden   = "FORBIDDEN-PH"
)

var errForbidden = errors.New("forbidden placeholder")

// matcher is a streaming Filter that finds needle across chunk ends: it
// replaces it with repl, or refuses the message when refuse is set. It holds
// back a tail that may start a match.
type matcher struct {
	needle, repl []byte
	refuse       bool
	held, buf    []byte
}

func scrubber() Filter { return &matcher{needle: []byte(secret), repl: []byte(placeholder)} }
func checker() Filter  { return &matcher{needle: []byte(forbidden), refuse: true} }

func (m *matcher) Write(dst, p []byte) ([]byte, error) {
	m.buf = append(append(m.buf[:0], m.held...), p...)
	b := m.buf
	for {
		i := bytes.Index(b, m.needle)
		if i < 0 {
			break
		}
		if m.refuse {
			return dst, errForbidden
		}
		dst = append(append(dst, b[:i]...), m.repl...)
		b = b[i+len(m.needle):]
	}
	k := partialSuffix(b, m.needle)
	dst = append(dst, b[:len(b)-k]...)
	m.held = append(m.held[:0], b[len(b)-k:]...)
	return dst, nil
}

func (m *matcher) Flush(dst []byte) ([]byte, error) {
	dst = append(dst, m.held...)
	m.held = m.held[:0]
	return dst, nil
}

// partialSuffix returns the length of the longest suffix of b that is a
// proper prefix of needle.
func partialSuffix(b, needle []byte) int {
	for k := min(len(b), len(needle)-1); k > 0; k-- {
		if bytes.HasPrefix(needle, b[len(b)-k:]) {
			return k
		}
	}
	return 0
}

func filterConfig() Config {
	return Config{Server: scrubber, Client: checker}
}

// upstream is a coder/websocket server; every message it reads is recorded.
type upstream struct {
	url string
	mu  sync.Mutex
	got []string
}

func (u *upstream) received() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

// startUpstream serves handler on a loopback WebSocket server. handler runs
// after Accept; with handler nil, the server echoes every message.
func startUpstream(t *testing.T, mode websocket.CompressionMode, handler func(ctx context.Context, c *websocket.Conn, u *upstream)) *upstream {
	t.Helper()
	u := &upstream{}
	if handler == nil {
		handler = echo
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: mode, CompressionThreshold: 1})
		if err != nil {
			t.Errorf("upstream accept: %v", err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		handler(r.Context(), c, u)
	}))
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

// echo records and echoes messages until the connection ends.
func echo(ctx context.Context, c *websocket.Conn, u *upstream) {
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.got = append(u.got, string(msg))
		u.mu.Unlock()
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// testProxy forwards one WebSocket handshake to an upstream, checks the 101,
// and relays like goproxy does: io.Copy both ways through a Relay, until
// either copy ends.
type testProxy struct {
	url          string
	reasons      chan string
	handshakeErr chan error

	mu       sync.Mutex
	toClient bytes.Buffer // every byte the relay handed the client
}

func (p *testProxy) clientBytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.toClient.Bytes())
}

func (p *testProxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.toClient.Write(b)
}

// reason waits for the relay's OnClose reason.
func (p *testProxy) reason(t *testing.T) string {
	t.Helper()
	select {
	case r := <-p.reasons:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end")
		return ""
	}
}

func startProxy(t *testing.T, upstreamURL string, cfg Config) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{
		url:          "ws://" + ln.Addr().String(),
		reasons:      make(chan string, 16),
		handshakeErr: make(chan error, 16),
	}
	tr := &http.Transport{Proxy: nil}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(func() { ln.Close() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(t, conn, tr, upstreamURL, cfg) })
		}
	})
	return p
}

func (p *testProxy) serve(t *testing.T, conn net.Conn, tr *http.Transport, upstreamURL string, cfg Config) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if ws, other := IsUpgrade(req); !ws || other {
		io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	out := req.Clone(context.Background())
	out.RequestURI = ""
	out.URL, _ = url.Parse(upstreamURL + req.URL.RequestURI())
	out.Host = ""
	resp, err := tr.RoundTrip(out)
	if err != nil {
		io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if err := CheckHandshake(req, resp); err != nil {
		resp.Body.Close()
		p.handshakeErr <- err
		io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	body, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Errorf("101 body is %T, not an io.ReadWriteCloser", resp.Body)
		return
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(&head)
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		body.Close()
		return
	}
	c := cfg
	c.Extensions = strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", ")
	c.OnClose = func(reason string) { p.reasons <- reason }
	relay := New(body, c)
	done := make(chan struct{}, 2)
	go func() { io.Copy(relay, br); done <- struct{}{} }()
	go func() { io.Copy(io.MultiWriter(p, conn), relay); done <- struct{}{} }()
	<-done
	relay.Close()
	conn.Close()
	<-done
}

// dial connects a coder/websocket client through the proxy.
func dial(t *testing.T, proxyURL string, mode websocket.CompressionMode) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, proxyURL, &websocket.DialOptions{
		HTTPClient:           &http.Client{Transport: &http.Transport{Proxy: nil}},
		CompressionMode:      mode,
		CompressionThreshold: 1,
	})
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var modes = []struct {
	name string
	mode websocket.CompressionMode
}{
	{"plain", websocket.CompressionDisabled},
	{"context_takeover", websocket.CompressionContextTakeover},
	{"no_context_takeover", websocket.CompressionNoContextTakeover},
}

// wireFrame is one frame as seen on the wire by a test.
type wireFrame struct {
	fin, rsv1 bool
	op        byte
	payload   []byte
}

// parseFrames splits b into frames, unmasking them; it stops at the first
// incomplete frame.
func parseFrames(t *testing.T, b []byte) []wireFrame {
	t.Helper()
	var frames []wireFrame
	for len(b) > 0 {
		h, n, err := parseHeader(b)
		if err != nil {
			t.Fatalf("parseHeader: %v", err)
		}
		if n == 0 || uint64(len(b)-n) < h.length {
			break
		}
		p := bytes.Clone(b[n : n+int(h.length)])
		if h.masked {
			maskBytes(h.key, 0, p)
		}
		frames = append(frames, wireFrame{fin: h.fin, rsv1: h.rsv1, op: h.opcode, payload: p})
		b = b[n+int(h.length):]
	}
	return frames
}

func (f wireFrame) String() string {
	return fmt.Sprintf("op=%d fin=%t rsv1=%t len=%d", f.op, f.fin, f.rsv1, len(f.payload))
}
