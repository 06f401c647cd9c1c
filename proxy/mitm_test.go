package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A client that sends its ClientHello in the same write as the CONNECT
// (before the 200) is served: the bytes net/http buffered are replayed.
func TestMITMEarlyClientHello(t *testing.T) {
	e := newStdEnv(t)
	raw, err := net.DialTimeout("tcp", e.tp.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	ec := &earlyConn{Conn: raw, head: "CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n"}
	tc := tls.Client(ec, &tls.Config{RootCAs: e.tp.ca, ServerName: "api.example.test", NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS with the ClientHello sent alongside the CONNECT: %v", err)
	}
	if !strings.HasPrefix(ec.reply, "HTTP/1.1 200 ") {
		t.Fatalf("CONNECT reply %q", ec.reply)
	}
	resp := rawRequest(t, tc, bufio.NewReader(tc), "GET /early HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
	if body := readBody(t, resp); resp.StatusCode != 200 {
		t.Fatalf("GET = %d %q", resp.StatusCode, body)
	}
	if got := e.api.last(t).header.Get("Authorization"); got != "Bearer "+tokAPI {
		t.Errorf("upstream Authorization is not the real token (%d bytes)", len(got))
	}
}

// earlyConn writes head in front of the first write (the ClientHello,
// which the client sends before it reads anything) and strips the CONNECT
// reply in front of the first read.
type earlyConn struct {
	net.Conn
	head  string
	sent  bool
	br    *bufio.Reader
	reply string
}

func (c *earlyConn) Write(b []byte) (int, error) {
	if !c.sent {
		c.sent = true
		if _, err := c.Conn.Write(append([]byte(c.head), b...)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *earlyConn) Read(b []byte) (int, error) {
	if c.br == nil {
		c.br = bufio.NewReader(c.Conn)
		for {
			line, err := c.br.ReadString('\n')
			c.reply += line
			if err != nil {
				return 0, err
			}
			if line == "\r\n" {
				break
			}
		}
	}
	return c.br.Read(b)
}

// A CONNECT inside an intercepted connection would open a tunnel from
// inside the tunnel (to anywhere): it is refused and the connection ends.
func TestNestedConnectRefused(t *testing.T) {
	e := newStdEnv(t)
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	br := bufio.NewReader(c)
	resp := rawRequest(t, c, br, "CONNECT b.example.test:443 HTTP/1.1\r\nHost: b.example.test:443\r\n\r\n")
	assertDeny(t, resp, http.StatusBadRequest, ReasonBadRequest)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("connection not closed after a nested CONNECT: %v", err)
	}
	if n := len(e.b.all()); n != 0 {
		t.Errorf("b.example.test saw %d requests", n)
	}
}

// The proxy passes a response on as it came: no Date or Content-Type that
// the upstream did not send (net/http's server would add both).
func TestResponseHeadersAsSent(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// net/http's own server would add both to the upstream's answer.
		w.Header()["Date"] = nil
		w.Header()["Content-Type"] = nil
		_, _ = io.WriteString(w, "<html>sniffable</html>")
	})
	tlsUp, plainUp := newUpstream(t, true, h), newUpstream(t, false, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":     tlsUp.addr(),
		"allowed.example.test:80":  plainUp.addr(),
		"allowed.example.test:443": tlsUp.addr(),
	})
	for _, tc := range []struct{ name, url, auth string }{
		{"mitm", "https://api.example.test/x", "Bearer " + phAPI},
		{"plain", "http://allowed.example.test/x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tc.url, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp := do(t, tp.client(), req)
			body := readBody(t, resp)
			if resp.StatusCode != 200 || body != "<html>sniffable</html>" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			for _, k := range []string{"Date", "Content-Type"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("%s: %q added by the proxy", k, v)
				}
			}
		})
	}
}

// A small response inside an intercepted connection is one TLS record:
// head and body are written together (goproxy's loop writes two), which
// halves the proxy's syscalls and the client's wake-ups for it. A chunked
// body is one record per chunk, not three.
func TestMITMResponseRecords(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			for range 3 {
				_, _ = io.WriteString(w, "data: event\n\n")
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
			return
		}
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(make([]byte, 1024))
	})
	up := newUpstream(t, true, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.addr()})

	resp, raw, br := tp.connect(t, "api.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d", resp.StatusCode)
	}
	rc := &recordCounter{r: br}
	tc := tls.Client(&readerConn{Conn: raw, r: rc}, &tls.Config{RootCAs: tp.ca, ServerName: "api.example.test", NextProtos: []string{"http/1.1"}})
	cbr := bufio.NewReader(tc)
	get := func(path string) int {
		t.Helper()
		r := rawRequest(t, tc, cbr, "GET "+path+" HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		if body := readBody(t, r); r.StatusCode != 200 {
			t.Fatalf("GET %s = %d %q", path, r.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond) // any straggling record arrives
		return rc.take()
	}
	get("/warm") // the handshake and TLS 1.3 session tickets
	if n := get("/1k"); n != 1 {
		t.Errorf("1 KiB response with Content-Length: %d TLS records, want 1", n)
	}
	// Head, three chunks, and the last chunk: at most one record each.
	if n := get("/chunked"); n > 5 {
		t.Errorf("chunked response of 3 chunks: %d TLS records, want at most 5", n)
	}
}

// recordCounter counts the TLS application-data records read through it.
type recordCounter struct {
	r    io.Reader
	mu   sync.Mutex
	hdr  []byte // partial record header
	left int    // bytes left in the current record
	n    int
}

func (c *recordCounter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := b[:n]; len(p) > 0; {
		if c.left > 0 {
			k := min(c.left, len(p))
			c.left, p = c.left-k, p[k:]
			continue
		}
		k := min(5-len(c.hdr), len(p))
		c.hdr, p = append(c.hdr, p[:k]...), p[k:]
		if len(c.hdr) == 5 {
			if c.hdr[0] == 23 {
				c.n++
			}
			c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
			c.hdr = c.hdr[:0]
		}
	}
	return n, err
}

func (c *recordCounter) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = 0
	return n
}

// readerConn reads through r.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// The head of a response of unknown length (a stream) reaches the client
// at once, before its first event; over MITM and plain HTTP.
func TestStreamHeadNotHeld(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "data: late\n\n")
	})
	tlsUp, plainUp := newUpstream(t, true, h), newUpstream(t, false, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":    tlsUp.addr(),
		"allowed.example.test:80": plainUp.addr(),
	})
	for _, tc := range []struct{ name, url, auth string }{
		{"mitm", "https://api.example.test/stream", "Bearer " + phAPI},
		{"plain", "http://allowed.example.test/stream", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tc.url, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			type result struct {
				resp *http.Response
				err  error
			}
			got := make(chan result, 1)
			go func() {
				resp, err := tp.client().Do(req)
				got <- result{resp, err}
			}()
			select {
			case r := <-got:
				if r.err != nil {
					t.Fatal(r.err)
				}
				release <- struct{}{}
				if body := readBody(t, r.resp); body != "data: late\n\n" {
					t.Errorf("body %q", body)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no response head within 3 s: the proxy holds it until the first event")
			}
		})
	}
}
