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
	if got := e.api.Last(t).Header.Get("Authorization"); got != "Bearer "+tokAPI {
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
	if n := len(e.b.Requests()); n != 0 {
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
	tp := startBothPaths(t, h)
	for _, tc := range bothPaths("/x") {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.request("GET")
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
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})

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
	tp := startBothPaths(t, h)
	for _, tc := range bothPaths("/stream") {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.request("GET")
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

// An upstream that cuts its body short cuts the client's connection too:
// goproxy ignores the copy error and net/http would end a chunked body
// cleanly, so the client would take half an answer for all of it.
func TestUpstreamCutVisible(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", "1000")
		}
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "data: part 1\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.Close()
		}
	})
	tp := startBothPaths(t, h)
	cases := append(bothPaths("/chunked"), pathCase{"mitm-sized", "https://api.example.test/sized", "Bearer " + phAPI})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.request("GET")
			resp := do(t, tp.client(), req)
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err == nil {
				t.Fatalf("body %q read to a clean end; want an error (the upstream cut it)", body)
			}
			if string(body) != "data: part 1\n\n" {
				t.Errorf("body before the cut %q", body)
			}
		})
	}
	if !eventually(t, func() bool { return strings.Count(tp.logs.String(), `"reason":"`+reasonUpstreamCut+`"`) >= 3 }) {
		t.Errorf("audit log does not record %s for the three cuts:\n%s", reasonUpstreamCut, tp.logs.String())
	}
}

// A body of known length is passed on as it arrives, not held until
// net/http's buffer fills.
func TestKnownLengthNotHeld(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "200")
		_, _ = w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = w.Write(make([]byte, 100))
	})
	up := newUpstream(t, true, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	c := tp.mitm(t, "api.example.test:443", "api.example.test")
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: api.example.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response head before the body was complete: %v", err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
		t.Fatalf("first 100 bytes not passed on before the rest: %v", err)
	}
	close(release)
	if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
		t.Fatalf("rest: %v", err)
	}
}

// Requests net/http would otherwise answer itself or refuse still go
// through the policy: "OPTIONS *" and HTTP/1.0 without Host (the CONNECT
// target is the host).
func TestInnerRequestForms(t *testing.T) {
	e := newStdEnv(t)
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	br := bufio.NewReader(c)
	resp := rawRequest(t, c, br, "OPTIONS * HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
	_ = readBody(t, resp)
	if !eventually(t, func() bool { return strings.Contains(e.tp.logs.String(), `"method":"OPTIONS"`) }) {
		t.Errorf("OPTIONS * has no audit line (answered without the policy?)")
	}

	c = e.tp.mitm(t, "api.example.test:443", "api.example.test")
	br = bufio.NewReader(c)
	resp = rawRequest(t, c, br, "GET /old HTTP/1.0\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
	if body := readBody(t, resp); resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.0 without Host = %d %q", resp.StatusCode, body)
	}
	if got := e.api.Last(t); got.Path != "/old" || got.Header.Get("Authorization") != "Bearer "+tokAPI {
		t.Errorf("upstream saw %s without the real token", got.Path)
	}
}

// Trailers are undone like headers: an upstream that reflects the
// credential into a trailer does not hand it to the sandbox.
func TestInjectedTokenNotEchoedInTrailer(t *testing.T) {
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Echo")
		_, _ = io.WriteString(w, "ok")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.test/x", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp := do(t, tp.client(), req)
	if body := readBody(t, resp); body != "ok" {
		t.Fatalf("body %q", body)
	}
	got := resp.Trailer.Get("X-Echo")
	if strings.Contains(got, tokAPI) {
		t.Fatal("the trailer carries the real token")
	}
	if got != "Bearer "+phAPI {
		t.Errorf("trailer X-Echo = %q, want the placeholder form", got)
	}
}

// A client that hangs up while the upstream thinks is audited as gone, not
// as an upstream failure; the upstream request is cancelled.
func TestClientGoneAudited(t *testing.T) {
	cancelled := make(chan struct{})
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	c := tp.mitm(t, "api.example.test:443", "api.example.test")
	if _, err := io.WriteString(c, "GET /think HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_ = c.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled when the client hung up")
	}
	if !eventually(t, func() bool { return strings.Contains(tp.logs.String(), `"reason":"`+reasonClientGone+`"`) }) {
		t.Errorf("no %s audit line:\n%s", reasonClientGone, tp.logs.String())
	}
	if strings.Contains(tp.logs.String(), ReasonUpstreamUnreachable) {
		t.Errorf("audited as %s", ReasonUpstreamUnreachable)
	}
}

// startBothPaths serves h as api.example.test over HTTPS (routed: MITM and
// injection) and as allowed.example.test over plain HTTP.
func startBothPaths(t *testing.T, h http.Handler) *testProxy {
	t.Helper()
	tlsUp, plainUp := newUpstream(t, true, h), newUpstream(t, false, h)
	return startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":    tlsUp.Addr(),
		"allowed.example.test:80": plainUp.Addr(),
	})
}

// pathCase is a request for path over one of startBothPaths's paths.
type pathCase struct{ name, url, auth string }

func bothPaths(path string) []pathCase {
	return []pathCase{
		{"mitm", "https://api.example.test" + path, "Bearer " + phAPI},
		{"plain", "http://allowed.example.test" + path, ""},
	}
}

func (c pathCase) request(method string) *http.Request {
	req, _ := http.NewRequest(method, c.url, nil)
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	return req
}
