package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/echoupstream"
)

// Fixtures of the hardening suite (docs/SECURITY.md). The real tokens differ from
// their placeholders in length and alphabet; hardT has the characters that
// URL and base64 encodings treat specially.
const (
	hardPH = "corkph_0123456789abcdef0123"
	hardT  = "realtok_ZYXWV98765zyxwv_43210abcd/+="
	// hardPH2/hardT2 belong to slot "other" (other.test). hardT2 is a
	// valid header name token, so /headers also echoes it in a NAME.
	hardPH2 = "corkph2_fedcba9876543210fedc"
	hardT2  = "realtok2_QwErTy0123456789_abcdef"

	hardBasicUser = "x-access-token"
)

const hardeningPolicy = `slots:
  svc: { placeholder: "` + hardPH + `" }
  other: { placeholder: "` + hardPH2 + `" }
routes:
  - host: echo.test
    slot: svc
  - host: git.test
    slot: svc
    scheme: basic
    basic_user: ` + hardBasicUser + `
  - host: other.test
    slot: other
  - host: h2.test
    slot: svc
allow:
  - plain.test
block:
  - host: echo.test
    path: /login/oauth/access_token
    reason: "the token exchange happens on the host"
`

// hardUpstream is an echo upstream and a TCP counter, named by the hosts
// of hardeningPolicy.
type hardUpstream struct {
	*echoupstream.Server
	tcp    *echoupstream.TCPCounter
	caFile string
}

func startHardUpstream(t *testing.T) *hardUpstream {
	t.Helper()
	s, err := echoupstream.New(echoupstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tcp, err := echoupstream.NewTCPCounter()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	u := &hardUpstream{Server: s, tcp: tcp, caFile: filepath.Join(t.TempDir(), "echo-ca.pem")}
	if err := os.WriteFile(u.caFile, s.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// resolve is CORK_RESOLVE for the upstream: HTTPS hosts to the HTTP/1.1
// listener (h2.test to the HTTP/2 one), plain.test:80 to the plain-HTTP
// listener and plain.test:443 (a blind tunnel) to the TCP counter.
func (u *hardUpstream) resolve() string {
	var e []string
	for _, h := range []string{"echo.test", "git.test", "other.test", "pass.test"} {
		e = append(e, h+":443="+u.Addr())
	}
	return strings.Join(append(e,
		"h2.test:443="+u.H2Addr(),
		"plain.test:80="+u.PlainAddr(),
		"plain.test:443="+u.tcp.Addr(),
	), ",")
}

// hardProxy is a `cork proxy` process for the hardening suite. It reuses
// corkProxy (clients_test.go) for its log and token stream.
type hardProxy struct {
	*corkProxy
	admin string
	ca    *x509.CertPool
}

// startHardProxy starts `cork proxy` on policy with the admin listener on
// and extra environment entries ("K=V"), feeds it the tokens, and checks
// at cleanup that its log never held a real token.
func startHardProxy(t *testing.T, u *hardUpstream, policy string, extraEnv ...string) *hardProxy {
	t.Helper()
	p := launchCorkProxy(t, policy, false, append([]string{ // no lines: waitLine reads the log
		"CORK_ADMIN_LISTEN=" + freeAddr(t), // ":0" twice is refused as the same address
		"CORK_UPSTREAM_CA_FILE=" + u.caFile,
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"CORK_RESOLVE=" + u.resolve(),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9",
	}, extraEnv...)...)
	hp := &hardProxy{corkProxy: p}
	t.Cleanup(func() {
		p.kill() // the whole log first
		checkLogClean(t, p.logText())
	})
	hp.addr = hp.waitLine(t, "proxy listening", 20*time.Second, nil)["addr"].(string)
	hp.admin = hp.waitLine(t, "admin listening", time.Second, nil)["addr"].(string)
	p.sendTokens(t, map[string]string{"svc": hardT, "other": hardT2})
	hp.waitLine(t, "tokens updated", 10*time.Second, nil)
	pem, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	hp.ca = x509.NewCertPool()
	hp.ca.AppendCertsFromPEM(pem)
	return hp
}

// settle gives a request or message that cork may have passed on the time
// to reach the upstream's handler, before a test asserts that none did.
func settle() { time.Sleep(100 * time.Millisecond) }

// requestsRead returns what the upstream received at path once it has
// finished reading each body (or failed to), waiting up to 5 s.
func requestsRead(u *hardUpstream, path string) []echoupstream.Request {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rs := u.RequestsTo(path)
		done := true
		for _, r := range rs {
			done = done && (r.Body != nil || r.BodyErr != "")
		}
		if done || time.Now().After(deadline) {
			return rs
		}
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkLogClean fails t if log holds any form of a real token.
func checkLogClean(t *testing.T, log string) {
	t.Helper()
	// Every line is cork's own JSON: goproxy, whose logger is routed
	// into cork's, writes nothing of its own to stderr (docs/DESIGN.md,
	// trap 11), whatever error the suite provoked.
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if l != "" && json.Unmarshal([]byte(l), &m) != nil {
			t.Errorf("cork's stderr holds a line that is not its JSON log: %q", l)
		}
	}
	for _, tok := range []string{hardT, hardT2} {
		for _, f := range secretForms(tok) {
			if strings.Contains(strings.ToLower(log), strings.ToLower(f.form)) {
				t.Errorf("cork's log contains the real token as %s", f.name)
			}
		}
	}
}

// logLines returns every JSON line of the log so far.
func (p *hardProxy) logLines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(p.logText(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitLine waits for a log line with msg for which match (if not nil)
// holds, without consuming anything.
func (p *hardProxy) waitLine(t *testing.T, msg string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range p.logLines() {
			if msgOf(m) == msg && (match == nil || match(m)) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching %q log line from cork proxy within %v; log:\n%s", msg, timeout, redact(p.logText()))
		}
		select {
		case <-p.stopped:
			// One last look: the line may have come with the exit.
			for _, m := range p.logLines() {
				if msgOf(m) == msg && (match == nil || match(m)) {
					return m
				}
			}
			t.Fatalf("cork proxy exited without a matching %q log line; log:\n%s", msg, redact(p.logText()))
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditLine waits for an "egress" line for path (and host) matching match.
func (p *hardProxy) auditLine(t *testing.T, host, path string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	return p.waitLine(t, "egress", timeout, func(m map[string]any) bool {
		return m["host"] == host && (path == "" || m["path"] == path) && (match == nil || match(m))
	})
}

// num reads a JSON number field.
func num(m map[string]any, k string) float64 {
	f, _ := m[k].(float64)
	return f
}

// client returns an HTTP client that goes through the proxy and trusts
// its CA. It neither asks for nor decodes compression.
func (p *hardProxy) client(t *testing.T) *http.Client {
	t.Helper()
	proxyURL, _ := url.Parse(p.url())
	tr := &http.Transport{
		Proxy:              http.ProxyURL(proxyURL),
		TLSClientConfig:    &tls.Config{RootCAs: p.ca},
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// do sends req and returns the response with its body read (trailers are
// then known).
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp, body
}

func newReq(t *testing.T, method, u string, body io.Reader, auth string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// dialProxy opens a TCP connection to the proxy.
func (p *hardProxy) dialProxy(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connect opens a CONNECT tunnel to authority and returns the connection
// after the proxy's 200.
func (p *hardProxy) connect(t *testing.T, authority string) net.Conn {
	t.Helper()
	c := p.dialProxy(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	// Read the head byte by byte: nothing after it may be buffered away.
	var head strings.Builder
	b := make([]byte, 1)
	for !strings.HasSuffix(head.String(), "\r\n\r\n") {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("CONNECT %s: %v after %q", authority, err, head.String())
		}
		head.WriteByte(b[0])
	}
	if !strings.HasPrefix(head.String(), "HTTP/1.1 200") && !strings.HasPrefix(head.String(), "HTTP/1.0 200") {
		t.Fatalf("CONNECT %s = %q, want 200", authority, head.String())
	}
	c.SetDeadline(time.Time{})
	return c
}

// intercept opens an intercepted connection to host:443: a CONNECT, then
// TLS with the proxy's leaf for host.
func (p *hardProxy) intercept(t *testing.T, host string) *tls.Conn {
	t.Helper()
	raw := p.connect(t, host+":443")
	tc := tls.Client(raw, &tls.Config{ServerName: host, RootCAs: p.ca, NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS to %s through the proxy: %v", host, err)
	}
	tc.SetDeadline(time.Time{})
	return tc
}

// rawRoundTrip writes request bytes on c and reads one response from br.
func rawRoundTrip(t *testing.T, c net.Conn, br *bufio.Reader, request string) (*http.Response, []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", strings.SplitN(request, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// waitClosed reads c until the peer closes it and returns how long that
// took; it fails t if c is still open after limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

// secretForm is one way a response could carry a real token.
type secretForm struct{ name, form string }

// secretForms lists the forms of token t that must never reach the
// sandbox (docs/SECURITY.md): compared case-insensitively.
func secretForms(t string) []secretForm {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return []secretForm{
		{"the token", t},
		{"the token upper-cased", strings.ToUpper(t)},
		{"the token lower-cased", strings.ToLower(t)},
		{"base64 std of the token", b64(t)},
		{"base64 raw of the token", base64.RawStdEncoding.EncodeToString([]byte(t))},
		{"base64 url of the token", base64.URLEncoding.EncodeToString([]byte(t))},
		{"hex of the token", hex.EncodeToString([]byte(t))},
		{"base64 of x-access-token:token", b64(hardBasicUser + ":" + t)},
		{"URL-encoded base64 of x-access-token:token", url.QueryEscape(b64(hardBasicUser + ":" + t))},
		{"base64 of user:token", b64(echoupstream.BasicEchoUser + ":" + t)},
		{"URL-encoded base64 of user:token", url.QueryEscape(b64(echoupstream.BasicEchoUser + ":" + t))},
	}
}

// partialForm is part of token t: an oracle for the rest. cork redacts it in
// response headers; bodies are matched on whole encodings only
// (docs/SECURITY.md).
func partialForm(t string) secretForm { return secretForm{"the token's first 16 bytes", t[:16]} }

// redact replaces every form of the real tokens in s by its name, so that
// failure messages show where a token was without printing it.
func redact(s string) string {
	for _, tok := range []string{hardT, hardT2} {
		for _, f := range secretForms(tok) {
			s = regexp.MustCompile("(?i)"+regexp.QuoteMeta(f.form)).ReplaceAllLiteralString(s, "<"+f.name+">")
		}
	}
	return s
}

// responseText is everything a client sees of resp: status line, header
// lines (names and values), body and trailers.
func responseText(resp *http.Response, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", resp.Proto, resp.Status)
	writeHeader := func(h http.Header) {
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range h[k] {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
	}
	writeHeader(resp.Header)
	b.WriteString("\n")
	b.Write(body)
	b.WriteString("\n")
	writeHeader(resp.Trailer)
	return b.String()
}

// checkNoSecret fails t for every form of token in text; it names the form,
// never prints it.
func checkNoSecret(t *testing.T, where, text, token string) {
	t.Helper()
	low := strings.ToLower(text)
	for _, f := range secretForms(token) {
		if strings.Contains(low, strings.ToLower(f.form)) {
			t.Errorf("%s contains %s", where, f.name)
		}
	}
	head, _, _ := strings.Cut(low, "\n\n") // the status line and headers
	if f := partialForm(token); strings.Contains(head, strings.ToLower(f.form)) {
		t.Errorf("%s headers contain %s", where, f.name)
	}
}

// denyReason checks a cork denial: status and X-Cork-Deny-Reason.
func denyReason(t *testing.T, what string, resp *http.Response, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status || resp.Header.Get("X-Cork-Deny-Reason") != reason {
		t.Errorf("%s = %d with X-Cork-Deny-Reason %q, want %d %s", what, resp.StatusCode, resp.Header.Get("X-Cork-Deny-Reason"), status, reason)
	}
}

// basicAuth is a Basic Authorization value.
func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// scrapeMetric sums the samples of metric on the admin /metrics page and
// returns the page.
func (p *hardProxy) scrapeMetric(t *testing.T, metric string) (float64, string, bool) {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	var sum float64
	found := false
	for _, l := range strings.Split(string(page), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		name, rest, ok := strings.Cut(l, " ")
		if i := strings.LastIndex(l, "}"); i >= 0 {
			name, rest, ok = l[:i+1], l[i+1:], true
		}
		if n, _, _ := strings.Cut(name, "{"); !ok || n != metric {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(strings.TrimSpace(rest), &v); err == nil {
			sum += v
			found = true
		}
	}
	return sum, string(page), found
}
