package main

// The hardening suite (docs/SECURITY.md): no real token back into the
// sandbox by any echo, and no connection held forever. Each test runs `cork proxy`
// as a separate process in front of internal/testing/echoupstream, an API
// that echoes the injected token back in every shape it can, and checks at
// cleanup that cork's log never held the token (startHardProxy).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cork-sh/cork/internal/testing/echoupstream"
)

// scrubAuth is one way a client sends the svc placeholder, with what the
// upstream must receive. An echo must come back holding what the client
// sent (cork may pad it to the token's length: "contains", not "equals").
type scrubAuth struct {
	name, host string
	send, real string
}

var scrubAuths = []scrubAuth{
	{"bearer", "echo.test", "Bearer " + hardPH, "Bearer " + hardT},
	{"basic", "git.test", basicAuth(hardBasicUser, hardPH), basicAuth(hardBasicUser, hardT)},
}

// decodeBody returns the body as the client must see it: decoded. A
// Content-Encoding that cork left in place is an error (the body is decoded
// here anyway, so that the secret check still sees the plain text).
func decodeBody(t *testing.T, resp *http.Response, body []byte) []byte {
	t.Helper()
	enc := resp.Header.Get("Content-Encoding")
	if enc == "" {
		return body
	}
	t.Errorf("response still has Content-Encoding %q; want a decoded body", enc)
	dec, err := echoupstream.Decode(enc, body)
	if err != nil {
		t.Errorf("decode %s body: %v", enc, err)
		return body
	}
	return dec
}

func TestHardeningScrubEcho(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	c := p.client(t)

	wantJSON := func(t *testing.T, _ *http.Response, body []byte, want string) {
		t.Helper()
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("body does not parse as JSON: %v", err)
		}
		if !strings.Contains(m["auth"], want) {
			t.Errorf(`echoed "auth" = %q, want %q (the placeholder back)`, redact(m["auth"]), want)
		}
	}
	wantChunked := func(t *testing.T, _ *http.Response, body []byte, want string) {
		t.Helper()
		if !strings.HasPrefix(string(body), "auth="+want) {
			t.Errorf("chunked echo = %q, want %q", redact(string(body)), "auth="+want+"\n")
		}
	}
	endpoints := []struct {
		name, path string
		split      func(a string) int // for /chunked: where to split A
		check      func(t *testing.T, resp *http.Response, body []byte, want string)
	}{
		{name: "json", path: "/json", check: wantJSON},
		{name: "html", path: "/html", check: func(t *testing.T, _ *http.Response, body []byte, want string) {
			if !strings.Contains(string(body), html.EscapeString(want)) {
				t.Errorf("html echo lacks the placeholder credential: %q", redact(string(body)))
			}
		}},
		{name: "chunked split early", path: "/chunked", split: func(string) int { return 3 }, check: wantChunked},
		{name: "chunked split inside the token", path: "/chunked", split: func(a string) int {
			return strings.Index(a, " ") + 1 + (len(a)-strings.Index(a, " ")-1)/2
		}, check: wantChunked},
		{name: "chunked split before the last byte", path: "/chunked", split: func(a string) int { return len(a) - 1 }, check: wantChunked},
		{name: "sse", path: "/sse", check: func(t *testing.T, _ *http.Response, body []byte, want string) {
			if !strings.HasPrefix(string(body), "data: hello\n\n") || !strings.Contains(string(body), "data: "+want) {
				t.Errorf("sse = %q, want event 1 hello and the last event with the placeholder credential", redact(string(body)))
			}
		}},
		{name: "gzip", path: "/gzip", check: wantJSON},
		{name: "deflate", path: "/deflate", check: wantJSON},
		{name: "deflate raw", path: "/deflate-raw", check: wantJSON},
		{name: "brotli", path: "/br", check: wantJSON},
		{name: "zstd", path: "/zstd", check: wantJSON},
		{name: "headers", path: "/headers", check: func(*testing.T, *http.Response, []byte, string) {}},
		{name: "trailers", path: "/trailers", check: func(t *testing.T, resp *http.Response, _ []byte, want string) {
			if got := resp.Trailer.Get("X-Echo"); !strings.Contains(got, want) {
				t.Errorf("trailer X-Echo = %q, want %q", redact(got), want)
			}
		}},
	}
	for _, a := range scrubAuths {
		for _, e := range endpoints {
			t.Run(a.name+" "+e.name, func(t *testing.T) {
				target := "https://" + a.host + e.path
				if e.split != nil {
					target += fmt.Sprintf("?split=%d", e.split(a.real))
				}
				resp, body := do(t, c, newReq(t, http.MethodGet, target, nil, a.send))
				if got := u.RequestsTo(e.path); len(got) == 0 || got[len(got)-1].Header.Get("Authorization") != a.real {
					t.Fatalf("upstream did not receive the real credential on %s", e.path)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s = %d, want 200", e.path, resp.StatusCode)
				}
				body = decodeBody(t, resp, body)
				checkNoSecret(t, "response to "+e.path, responseText(resp, body), hardT)
				e.check(t, resp, body, a.send)
			})
		}
	}

	t.Run("token in a response header name", func(t *testing.T) {
		resp, body := do(t, c, newReq(t, http.MethodGet, "https://other.test/headers", nil, "Bearer "+hardPH2))
		if got := u.RequestsTo("/headers"); len(got) == 0 || got[len(got)-1].Header.Get("Authorization") != "Bearer "+hardT2 {
			t.Fatalf("other.test did not receive its real token")
		}
		checkNoSecret(t, "response of other.test/headers", responseText(resp, body), hardT2)
	})

	t.Run("unknown encoding refused", func(t *testing.T) {
		resp, body := do(t, c, newReq(t, http.MethodGet, "https://echo.test/unknown-encoding", nil, "Bearer "+hardPH))
		denyReason(t, "GET /unknown-encoding", resp, http.StatusBadGateway, "unscrubbable")
		checkNoSecret(t, "response to /unknown-encoding", responseText(resp, body), hardT)
	})
}

// wsDial opens a WebSocket through the proxy with the placeholder in the
// handshake.
func (p *hardProxy) wsDial(t *testing.T, ctx context.Context, target, auth string, mode websocket.CompressionMode) *websocket.Conn {
	t.Helper()
	hc := p.client(t)
	hc.Timeout = 0 // the context bounds the dial
	c, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{
		HTTPClient:      hc,
		HTTPHeader:      http.Header{"Authorization": {auth}},
		CompressionMode: mode,
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket dial %s through cork: %v (status %d)", target, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func TestHardeningScrubWebSocket(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	for _, tt := range []struct {
		name string
		mode websocket.CompressionMode
	}{
		{"uncompressed", websocket.CompressionDisabled},
		{"permessage-deflate context takeover", websocket.CompressionContextTakeover},
		{"permessage-deflate no context takeover", websocket.CompressionNoContextTakeover},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := "Bearer " + hardPH
			c := p.wsDial(t, ctx, "wss://echo.test/ws", a, tt.mode)
			for _, m := range []struct {
				what string
				typ  websocket.MessageType
				want string
			}{
				{"text message", websocket.MessageText, "auth: " + a},
				{"binary message", websocket.MessageBinary, a},
				{"fragmented message", websocket.MessageText, "frag: " + a},
			} {
				typ, data, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read %s: %v", m.what, err)
				}
				checkNoSecret(t, m.what, string(data), hardT)
				if typ != m.typ || !strings.Contains(string(data), m.want) {
					t.Errorf("%s = %v %q, want %v %q", m.what, typ, redact(string(data)), m.typ, m.want)
				}
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("echo me")); err != nil {
				t.Fatal(err)
			}
			if _, data, err := c.Read(ctx); err != nil || string(data) != "echo me" {
				t.Errorf("echo = %q, %v; want %q", redact(string(data)), err, "echo me")
			}
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
}

func TestHardeningSSEFirstEventNotDelayed(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newReq(t, http.MethodGet, "https://echo.test/sse-first", nil, "Bearer "+hardPH).WithContext(ctx)
	start := time.Now()
	resp, err := p.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, len("data: hello\n\n"))
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "data: hello\n\n" {
		t.Fatalf("first event = %q, %v", got, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("first event arrived after %v, want within 1s (the upstream sends it at once)", d)
	}
}

func TestHardeningUnscrubbablePass(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	policy := strings.Replace(hardeningPolicy, "allow:\n", "  - host: pass.test\n    slot: svc\n    unscrubbable: pass\nallow:\n", 1)
	p := startHardProxy(t, u, policy)
	c := p.client(t)

	resp, body := do(t, c, newReq(t, http.MethodGet, "https://pass.test/unknown-encoding", nil, "Bearer "+hardPH))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != echoupstream.UnknownEncoding || string(body) != "auth=Bearer "+hardT+"\n" {
		t.Errorf("pass.test/unknown-encoding = %d, Content-Encoding %q, body of %d bytes; want 200 and the body untouched",
			resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body))
	}
	resp, _ = do(t, c, newReq(t, http.MethodGet, "https://echo.test/unknown-encoding", nil, "Bearer "+hardPH))
	denyReason(t, "echo.test/unknown-encoding next to a pass route", resp, http.StatusBadGateway, "unscrubbable")
}

func TestHardeningScrubMetricsAndAudit(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	resp, body := do(t, p.client(t), newReq(t, http.MethodGet, "https://echo.test/json", nil, "Bearer "+hardPH))
	if !strings.Contains(string(body), hardPH) {
		t.Fatalf("echo = %d %q, want the placeholder back", resp.StatusCode, redact(string(body)))
	}
	hits, page, found := p.scrapeMetric(t, "cork_scrub_hits_total")
	if !found || hits <= 0 {
		t.Errorf("cork_scrub_hits_total = %v (found %v), want > 0 after an echo", hits, found)
	}
	checkNoSecret(t, "/metrics", page, hardT)
	line := p.auditLine(t, "echo.test", "/json", 5*time.Second, nil)
	if n := num(line, "scrubbed"); n <= 0 {
		t.Errorf(`audit line of the echo has "scrubbed" = %v, want > 0`, line["scrubbed"])
	}
}

// doublePercent %-encodes every byte of s, then the "%" signs again.
func doublePercent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%25%02X", s[i])
	}
	return b.String()
}

func TestHardeningTripwire(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	c := p.client(t)
	const mib = 1 << 20

	cases := []struct {
		name  string
		build func(t *testing.T, target, ph string) *http.Request
	}{
		{"header name", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodGet, target, nil, "")
			r.Header["X-"+ph] = []string{"1"}
			return r
		}},
		{"upper case in a value", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodGet, target, nil, "")
			r.Header.Set("X-Note", "id="+strings.ToUpper(ph))
			return r
		}},
		{"base64 in a value", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodGet, target, nil, "")
			r.Header.Set("X-Note", base64.StdEncoding.EncodeToString([]byte(ph)))
			return r
		}},
		{"split over two values", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodGet, target, nil, "")
			r.Header["X-Split"] = []string{ph[:len(ph)/2], ph[len(ph)/2:]}
			return r
		}},
		{"underscore as plus", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodGet, target, nil, "")
			r.Header.Set("X-Note", strings.ReplaceAll(ph, "_", "+"))
			return r
		}},
		{"double percent-encoded query", func(t *testing.T, target, ph string) *http.Request {
			return newReq(t, http.MethodGet, target+"?q="+doublePercent(ph), nil, "")
		}},
		{"post body", func(t *testing.T, target, ph string) *http.Request {
			return newReq(t, http.MethodPost, target, strings.NewReader(`{"key":"`+ph+`"}`), "")
		}},
		{"chunked post body", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodPost, target, io.NopCloser(strings.NewReader(`{"key":"`+ph+`"}`)), "")
			r.ContentLength = -1
			return r
		}},
		{"1 MiB chunked body ending in it", func(t *testing.T, target, ph string) *http.Request {
			b := append(bytes.Repeat([]byte("a"), mib-len(ph)), ph...)
			r := newReq(t, http.MethodPost, target, io.NopCloser(bytes.NewReader(b)), "")
			r.ContentLength = -1
			return r
		}},
		{"1 MiB body ending in it", func(t *testing.T, target, ph string) *http.Request {
			b := append(bytes.Repeat([]byte("a"), mib-len(ph)), ph...)
			return newReq(t, http.MethodPost, target, bytes.NewReader(b), "")
		}},
		{"request trailer", func(t *testing.T, target, ph string) *http.Request {
			r := newReq(t, http.MethodPost, target, io.NopCloser(strings.NewReader("body")), "")
			r.ContentLength = -1
			r.Trailer = http.Header{"X-Trail": {ph}}
			return r
		}},
	}
	for _, target := range []struct{ name, base, ph string }{
		{"other slot to echo.test", "https://echo.test", hardPH2},
		{"svc slot to plain.test over http", "http://plain.test", hardPH},
	} {
		for i, tc := range cases {
			t.Run(target.name+" "+tc.name, func(t *testing.T) {
				path := fmt.Sprintf("/trip/%d", i)
				resp, err := c.Do(tc.build(t, target.base+path, target.ph))
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				resp.Body.Close()
				denyReason(t, tc.name, resp, http.StatusForbidden, "placeholder_leak")
				settle()
				// A body cork can read whole before sending (a known length
				// up to 64 KiB) never reaches the upstream; a streamed one may
				// start to, but is cut before the placeholder.
				for _, r := range requestsRead(u, path) {
					streamed := r.BodyErr != "" && !bytes.Contains(r.Body, []byte(target.ph)) && !strings.Contains(fmt.Sprint(r.Trailer), target.ph)
					if !streamed || tc.name == "post body" {
						t.Errorf("the upstream received the request: body %d bytes (read error %q), placeholder in body %v, in trailer %v",
							r.BodyLen, r.BodyErr, bytes.Contains(r.Body, []byte(target.ph)), strings.Contains(fmt.Sprint(r.Trailer), target.ph))
					}
				}
			})
		}
	}
}

func TestHardeningTripwireWebSocket(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := p.wsDial(t, ctx, "wss://echo.test/ws", "Bearer "+hardPH, websocket.CompressionDisabled)
	for range 3 { // the upstream's own three messages
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("harmless")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "harmless" {
		t.Fatalf("echo = %q, %v; want the harmless message back", data, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"key":"`+hardPH2+`"}`)); err != nil {
		t.Fatal(err)
	}
	_, data, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation {
		t.Errorf("after a message holding another slot's placeholder: read = %q, %v (close status %d); want close 1008", data, err, got)
	}
	settle()
	for _, m := range u.Messages() {
		if bytes.Contains(m.Data, []byte(hardPH2)) {
			t.Errorf("the upstream received the message holding the placeholder")
		}
	}
}

func wsHandshake(r *http.Request) {
	key := make([]byte, 16)
	rand.Read(key)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
}

func TestHardeningUpgradeH2CRefused(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	req := newReq(t, http.MethodGet, "https://echo.test/h2c-probe", nil, "Bearer "+hardPH)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
	resp, err := p.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	denyReason(t, "Upgrade: h2c", resp, http.StatusForbidden, "upgrade_refused")
	settle()
	if got := u.RequestsTo("/h2c-probe"); len(got) > 0 {
		t.Errorf("the upstream received the h2c upgrade request")
	}
}

// reasonBadUpgradeAnswer is the deny reason docs/SECURITY.md gives a
// 101 that does not complete the client's WebSocket handshake.
const reasonBadUpgradeAnswer = "upstream_bad_upgrade"

func TestHardeningUpgradeAnswerRefused(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	for _, path := range []string{"/upgrade-h2c", "/ws-bad-accept"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req := newReq(t, http.MethodGet, "https://echo.test"+path, nil, "Bearer "+hardPH).WithContext(ctx)
			wsHandshake(req)
			resp, err := p.client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // a 101 body is the connection: do not wait on it
			denyReason(t, "WebSocket handshake answered by "+path, resp, http.StatusBadGateway, reasonBadUpgradeAnswer)
		})
	}
}

func TestHardeningUpgradeBytesAfter101(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	tc := p.intercept(t, "echo.test")
	br := bufio.NewReader(tc)
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(tc, "GET /ws-raw HTTP/1.1\r\nHost: echo.test\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", hardPH, key)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket handshake through cork: %v, %v; want 101", resp, err)
	}
	smuggled := "GET /login/oauth/access_token HTTP/1.1\r\nHost: echo.test\r\n\r\n"
	if _, err := io.WriteString(tc, smuggled); err != nil {
		t.Fatalf("write after 101: %v", err)
	}
	tc.SetDeadline(time.Time{})
	waitClosed(t, &bufConn{Conn: tc, r: br}, 5*time.Second)
	settle()
	if bytes.Contains(u.RawUpgraded(), []byte("GET /login")) {
		t.Errorf("the upstream received the plain HTTP request sent after the 101")
	}
	if got := u.RequestsTo("/login/oauth/access_token"); len(got) > 0 {
		t.Errorf("the upstream served the request sent after the 101")
	}
}

// bufConn reads through r (which may hold bytes read past a response head).
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func TestHardeningPathBlockSpellings(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	for _, tt := range []struct {
		path    string
		blocked bool
	}{
		{"/login/oauth/access_token", true},
		{"/Login/OAuth/access_token", true},
		{"/login/oauth/access_token;x=1", true},
		{"/login/oauth/access_token.json", true},
		{"/login/oauth/access_token%20", true},
		{"/login/oauth%252Faccess_token", true},
		{"/login/./oauth/../oauth/access_token", true},
		{"/login/oauth/access_tokens", false},
	} {
		t.Run(tt.path, func(t *testing.T) {
			before := len(u.Requests())
			tc := p.intercept(t, "echo.test")
			resp, _ := rawRoundTrip(t, tc, bufio.NewReader(tc),
				"GET "+tt.path+" HTTP/1.1\r\nHost: echo.test\r\nAuthorization: Bearer "+hardPH+"\r\n\r\n")
			if tt.blocked {
				settle()
			}
			reached := len(u.Requests()) - before
			if tt.blocked {
				denyReason(t, "GET "+tt.path, resp, http.StatusForbidden, "blocked")
				if reached > 0 {
					t.Errorf("GET %s reached the upstream", tt.path)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || reached != 1 {
				t.Errorf("GET %s = %d, reached the upstream %d times; want 200 and once", tt.path, resp.StatusCode, reached)
			}
		})
	}
}

func TestHardeningClientIdleTimeout(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy, "CORK_CLIENT_IDLE_TIMEOUT=1s")
	t.Run("plain http keep-alive", func(t *testing.T) {
		t.Parallel()
		c := p.dialProxy(t)
		br := bufio.NewReader(c)
		resp, _ := rawRoundTrip(t, c, br, "GET http://plain.test/idle HTTP/1.1\r\nHost: plain.test\r\n\r\n")
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("plain GET = %d (close %v), want 200 keep-alive", resp.StatusCode, resp.Close)
		}
		waitClosed(t, &bufConn{Conn: c, r: br}, 3*time.Second)
	})
	t.Run("intercepted", func(t *testing.T) {
		t.Parallel()
		tc := p.intercept(t, "echo.test")
		br := bufio.NewReader(tc)
		resp, _ := rawRoundTrip(t, tc, br, "GET /idle HTTP/1.1\r\nHost: echo.test\r\nAuthorization: Bearer "+hardPH+"\r\n\r\n")
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("intercepted GET = %d (close %v), want 200 keep-alive", resp.StatusCode, resp.Close)
		}
		waitClosed(t, &bufConn{Conn: tc, r: br}, 3*time.Second)
	})
}

// trickle writes s one byte every 300 ms until it is all written, a write
// fails or the test ends.
func trickle(t *testing.T, c net.Conn, s string) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for i := 0; i < len(s); i++ {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				return
			}
			select {
			case <-time.After(300 * time.Millisecond):
			case <-done:
				return
			}
		}
	}()
}

func TestHardeningReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy, "CORK_READ_HEADER_TIMEOUT=1s")
	pad := "\r\nX-Pad: " + strings.Repeat("p", 40) + "\r\n\r\n"
	t.Run("intercepted", func(t *testing.T) {
		t.Parallel()
		tc := p.intercept(t, "echo.test")
		trickle(t, tc, "GET /trickle HTTP/1.1\r\nHost: echo.test"+pad)
		waitClosed(t, tc, 3*time.Second)
		settle()
		if len(u.RequestsTo("/trickle")) > 0 {
			t.Errorf("the trickled request reached the upstream")
		}
	})
	t.Run("outer listener", func(t *testing.T) {
		t.Parallel()
		c := p.dialProxy(t)
		trickle(t, c, "GET http://plain.test/trickle HTTP/1.1\r\nHost: plain.test"+pad)
		waitClosed(t, c, 3*time.Second)
	})
}

func TestHardeningMaxConnsPerClient(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy, "CORK_MAX_CONNS_PER_CLIENT=4")
	const get = "GET http://plain.test/conn HTTP/1.1\r\nHost: plain.test\r\n\r\n"
	open := make([]net.Conn, 4)
	for i := range open {
		open[i] = p.dialProxy(t)
		if resp, _ := rawRoundTrip(t, open[i], bufio.NewReader(open[i]), get); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: GET = %d, want 200", i+1, resp.StatusCode)
		}
	}

	fifth := p.dialProxy(t)
	br := bufio.NewReader(fifth)
	// cork may answer at once or after reading a request: wait briefly
	// before sending one, so that its 503 is not lost to a reset.
	fifth.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := br.Peek(1); err != nil {
		io.WriteString(fifth, get)
	}
	fifth.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("5th connection: %v; want HTTP/1.1 503 too_many_connections", err)
	}
	resp.Body.Close()
	denyReason(t, "5th connection", resp, http.StatusServiceUnavailable, "too_many_connections")

	open[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c := p.dialProxy(t)
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, get)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("after closing one of 4 connections a new one still fails: %v %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHardeningResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy, "CORK_RESPONSE_HEADER_TIMEOUT=1s")
	resp, _ := do(t, p.client(t), newReq(t, http.MethodGet, "https://echo.test/slow-head?d=3s", nil, "Bearer "+hardPH))
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("GET /slow-head?d=3s with a 1s response header timeout = %d, want 504", resp.StatusCode)
	}
}

func TestHardeningMaxResponseHeaderBytes(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	c := p.client(t)
	for _, tt := range []struct {
		n    int
		want int
	}{
		{64 << 10, http.StatusOK},
		{2 << 20, http.StatusBadGateway},
	} {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			resp, _ := do(t, c, newReq(t, http.MethodGet, fmt.Sprintf("https://echo.test/big-head?n=%d", tt.n), nil, "Bearer "+hardPH))
			if resp.StatusCode != tt.want {
				t.Errorf("GET /big-head?n=%d = %d, want %d", tt.n, resp.StatusCode, tt.want)
			}
		})
	}
}

func TestHardeningHalfCloseTunnel(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	c := p.connect(t, "plain.test:443")
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got 1000 bytes" {
		t.Fatalf("after CloseWrite the tunnel answered %q, %v; want %q", got, err, "got 1000 bytes")
	}
	c.Close()
	p.auditLine(t, "plain.test", "", 5*time.Second, func(m map[string]any) bool {
		return m["decision"] == "tunnel" && num(m, "status") == 200 && num(m, "bytes_up") >= 1000 && num(m, "bytes_down") > 0
	})
}

func TestHardeningCanonicalHost(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	tc := p.intercept(t, "echo.test")
	resp, _ := rawRoundTrip(t, tc, bufio.NewReader(tc), "GET /canon HTTP/1.1\r\nHost: ECHO.TEST.\r\nAuthorization: Bearer "+hardPH+"\r\n\r\n")
	got := u.RequestsTo("/canon")
	if resp.StatusCode != http.StatusOK || len(got) != 1 {
		t.Fatalf("GET with Host ECHO.TEST. = %d, reached the upstream %d times; want 200 once", resp.StatusCode, len(got))
	}
	if got[0].Host != "echo.test" {
		t.Errorf("the upstream got Host %q, want %q", got[0].Host, "echo.test")
	}
}

func TestHardeningHTTP2UpstreamTrailers(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	resp, body := do(t, p.client(t), newReq(t, http.MethodGet, "https://h2.test/trailers", nil, "Bearer "+hardPH))
	got := u.RequestsTo("/trailers")
	if len(got) != 1 || got[0].Proto != "HTTP/2.0" {
		t.Fatalf("the upstream got %d requests (%v), want one over HTTP/2", len(got), got)
	}
	if !strings.Contains(resp.Trailer.Get("X-Echo"), "Bearer "+hardPH) {
		t.Errorf("trailer X-Echo = %q, want %q", redact(resp.Trailer.Get("X-Echo")), "Bearer "+hardPH)
	}
	checkNoSecret(t, "h2.test/trailers", responseText(resp, body), hardT)
}

func TestHardeningMetricsProcessCollectors(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	for _, name := range []string{"go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
		if v, _, found := p.scrapeMetric(t, name); !found || v <= 0 {
			t.Errorf("/metrics %s = %v (found %v), want > 0", name, v, found)
		}
	}
}

func TestHardeningAuditClientGone(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	resp, err := p.client(t).Do(newReq(t, http.MethodGet, "https://echo.test/down?n=100000000", nil, "Bearer "+hardPH))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatalf("read the first MiB: %v", err)
	}
	resp.Body.Close() // hangs up mid-body
	p.auditLine(t, "echo.test", "/down", 10*time.Second, func(m map[string]any) bool { return m["reason"] == "client_gone" })
}

func TestHardeningAuditShutdown(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	p := startHardProxy(t, u, hardeningPolicy)
	resp, err := p.client(t).Do(newReq(t, http.MethodGet, "https://echo.test/sse-first?hold=60s", nil, "Bearer "+hardPH))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, len("data: hello\n\n"))); err != nil {
		t.Fatalf("first event: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.stopped:
	case <-time.After(DefaultShutdownTimeout + 10*time.Second):
		t.Fatalf("cork proxy still running %v after SIGTERM", DefaultShutdownTimeout+10*time.Second)
	}
	p.auditLine(t, "echo.test", "/sse-first", time.Second, func(m map[string]any) bool { return m["reason"] == "shutdown" })
}
