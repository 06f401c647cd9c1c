package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/localca"
	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/internal/testing/upstreamtest"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// Test credentials. The real tokens must never show up anywhere but at the
// upstream that their slot is bound to.
const (
	phAPI    = "PH-api-000000000000000000"
	phGH     = "PH-gh-0000000000000000000"
	phOther  = "PH-other-0000000000000000"
	tokAPI   = "REAL-api-token-s3cr3t-7f1c"
	tokGH    = "REAL-gh-token-s3cr3t-a92d"
	tokOther = "REAL-other-token-s3cr3t-55e"
)

// testPolicy is the policy most tests use. Hosts live under .test and are
// mapped to loopback listeners with Config.Resolve; nothing is resolved.
const testPolicy = `
slots:
  api:   { placeholder: "` + phAPI + `" }
  gh:    { placeholder: "` + phGH + `" }
  other: { placeholder: "` + phOther + `" }
routes:
  - host: api.example.test
    slot: api
  - host: gh.example.test
    slot: gh
    scheme: basic
    basic_user: x-access-token
  - host: tok.example.test
    slot: gh
    scheme: token
  - host: raw.example.test
    slot: api
    header: X-Api-Key
    scheme: raw
  - host: add.example.test
    slot: api
    add_if_missing: true
  - host: other.example.test
    slot: other
  - host: insecure.example.test
    slot: api
    insecure_http: true
allow:
  - allowed.example.test
  - b.example.test
  - "down.example.test:443"
block:
  - host: blocked.example.test
    reason: "no exfiltration to the paste site"
  - host: api.example.test
    path: /oauth/token
    reason: "token refresh happens on the host"
`

func testTokens() resolve.Tokens {
	return resolve.Tokens{
		"api":   resolve.NewSecret(tokAPI),
		"gh":    resolve.NewSecret(tokGH),
		"other": resolve.NewSecret(tokOther),
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = testenv.Buffer

// upstreamHosts are the names every fake upstream's certificate covers.
var upstreamHosts = []string{"*.example.test", "example.test", "127.0.0.1", "::1"}

// upstreamCA signs every fake upstream's certificate; the proxy trusts it.
var upstreamCA = sync.OnceValue(func() *localca.CA {
	ca, err := localca.New("cork test upstream CA")
	if err != nil {
		panic(err)
	}
	return ca
})

// newUpstream starts a recording fake origin; tls selects HTTPS with a
// certificate from upstreamCA.
func newUpstream(t testing.TB, useTLS bool, h http.Handler) *upstreamtest.Server {
	t.Helper()
	return upstreamtest.New(t, upstreamtest.Config{Handler: h, Plain: !useTLS, CA: upstreamCA(), Hosts: upstreamHosts})
}

// newH2Upstream starts a recording fake HTTPS origin that speaks HTTP/2.
func newH2Upstream(t testing.TB, h http.Handler) *upstreamtest.Server {
	t.Helper()
	return upstreamtest.New(t, upstreamtest.Config{Handler: h, HTTP2: true, CA: upstreamCA(), Hosts: upstreamHosts})
}

// testProxy is a Proxy served by an httptest.Server, with its logs.
type testProxy struct {
	*Proxy
	srv  *httptest.Server
	logs *syncBuffer
	ca   *x509.CertPool // the session CA, as the sandbox trusts it
}

// startProxy builds a proxy over policy (YAML) with tokens, loopback
// allowed, the fake upstreams trusted, and resolve overrides. mods edit
// the Config before New.
func startProxy(t testing.TB, src string, tokens resolve.Tokens, resolveMap map[string]string, mods ...func(*Config)) *testProxy {
	t.Helper()
	pol, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatalf("policy.Parse: %v", err)
	}
	logs := &syncBuffer{}
	lg := zerolog.New(logs).Level(zerolog.DebugLevel)
	cfg := Config{
		Policy:          pol,
		Tokens:          tokens,
		Logger:          &lg,
		UpstreamRootCAs: upstreamCA().Pool(),
		AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Resolve:         resolveMap,
	}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		_ = p.Close()
		srv.Close()
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CACertPEM()) {
		t.Fatal("CACertPEM: no certificate")
	}
	return &testProxy{Proxy: p, srv: srv, logs: logs, ca: pool}
}

// client is an HTTP client that uses the proxy and trusts only its CA.
func (tp *testProxy) client() *http.Client {
	u, _ := url.Parse(tp.srv.URL)
	return &http.Client{
		Transport: &http.Transport{
			Proxy:              http.ProxyURL(u),
			TLSClientConfig:    &tls.Config{RootCAs: tp.ca},
			DisableCompression: true,
			ForceAttemptHTTP2:  false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// tunnelClient is an HTTP client for blind tunnels: it trusts the
// upstream's own root, as a sandbox trusts the system roots.
func (tp *testProxy) tunnelClient() *http.Client {
	u, _ := url.Parse(tp.srv.URL)
	return &http.Client{Transport: &http.Transport{
		Proxy:              http.ProxyURL(u),
		TLSClientConfig:    &tls.Config{RootCAs: upstreamCA().Pool()},
		DisableCompression: true,
	}}
}

func (tp *testProxy) addr() string { return tp.srv.Listener.Addr().String() }

// connect sends a raw CONNECT and returns the response and the connection.
func (tp *testProxy) connect(t *testing.T, target string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	return tp.connectWith(t, target, "")
}

// connectWith is connect with a Proxy-Authorization header (if not empty).
func (tp *testProxy) connectWith(t *testing.T, target, proxyAuth string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	extra := ""
	if proxyAuth != "" {
		extra = "Proxy-Authorization: " + proxyAuth + "\r\n"
	}
	c, err := net.DialTimeout("tcp", tp.addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + extra + "\r\n")); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: read response: %v", target, err)
	}
	_ = c.SetDeadline(time.Time{})
	return resp, c, br
}

// mitm CONNECTs to target and completes TLS with the proxy, verifying the
// leaf for serverName against the session CA only.
func (tp *testProxy) mitm(t *testing.T, target, serverName string) *tls.Conn {
	t.Helper()
	resp, c, br := tp.connect(t, target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s = %d (%s), want 200", target, resp.StatusCode, resp.Header.Get(HeaderDenyReason))
	}
	if br.Buffered() > 0 {
		t.Fatalf("CONNECT %s: %d unexpected bytes after the response", target, br.Buffered())
	}
	tc := tls.Client(c, &tls.Config{RootCAs: tp.ca, ServerName: serverName, NextProtos: []string{"http/1.1"}})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through CONNECT %s: %v", target, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

// rawRequest writes raw request bytes on c and reads one response.
func rawRequest(t *testing.T, c net.Conn, br *bufio.Reader, raw string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

// readBody reads and closes a body.
func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	_ = resp.Body.Close()
	return b.String()
}

// assertNoSecrets fails if any real token appears in s.
func assertNoSecrets(t *testing.T, where, s string) {
	t.Helper()
	for _, tok := range []string{tokAPI, tokGH, tokOther} {
		if strings.Contains(s, tok) {
			t.Errorf("%s contains a real token value", where)
		}
	}
}

// denyReason asserts a cork denial: status, reason header and a one-line body.
func assertDeny(t *testing.T, resp *http.Response, status int, reason string) string {
	t.Helper()
	body := readBody(t, resp)
	if resp.StatusCode != status || resp.Header.Get(HeaderDenyReason) != reason {
		t.Errorf("got %d %s=%q (body %q), want %d %q", resp.StatusCode, HeaderDenyReason,
			resp.Header.Get(HeaderDenyReason), body, status, reason)
	}
	if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") || !strings.HasPrefix(body, "cork: ") {
		t.Errorf("body %q: want one line starting with \"cork: \"", body)
	}
	assertNoSecrets(t, "deny body", body)
	return body
}

// stdEnv is the common setup: TLS upstreams for the routed and allowed
// hosts, all mapped with Resolve.
type stdEnv struct {
	tp       *testProxy
	api      *upstreamtest.Recorder // api.example.test and the other routed hosts
	b        *upstreamtest.Recorder // b.example.test (allowed, unbound)
	apiSrv   *upstreamtest.Server
	bSrv     *upstreamtest.Server
	plainSrv *upstreamtest.Server // plain HTTP for allowed.example.test:80 and insecure.example.test:80
}

func newStdEnv(t *testing.T, mods ...func(*Config)) *stdEnv {
	t.Helper()
	e := &stdEnv{api: &upstreamtest.Recorder{}, b: &upstreamtest.Recorder{}}
	e.apiSrv = newUpstream(t, true, e.api)
	e.bSrv = newUpstream(t, true, e.b)
	e.plainSrv = newUpstream(t, false, e.b)
	res := map[string]string{
		"b.example.test:443":       e.bSrv.Addr(),
		"allowed.example.test:443": e.bSrv.Addr(),
		"allowed.example.test:80":  e.plainSrv.Addr(),
		"insecure.example.test:80": e.plainSrv.Addr(),
		"api.example.test:80":      e.plainSrv.Addr(),
		"other.example.test:80":    e.plainSrv.Addr(),
		"b.example.test:80":        e.plainSrv.Addr(),
		"down.example.test:443":    "127.0.0.1:1", // nothing listens
	}
	for _, h := range []string{"api", "gh", "tok", "raw", "add", "other"} {
		res[h+".example.test:443"] = e.apiSrv.Addr()
	}
	e.tp = startProxy(t, testPolicy, testTokens(), res, mods...)
	return e
}

// eventually polls cond for up to 5 s: audit lines and metrics are written
// when the proxy closes a response body, just after the client has it.
func eventually(t *testing.T, cond func() bool) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// serveOnce listens on loopback and hands its first connection to serve,
// closing it after; it returns the listener's address (a raw TCP upstream).
func serveOnce(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return ln.Addr().String()
}
