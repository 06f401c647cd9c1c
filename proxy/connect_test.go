package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/internal/testing/upstreamtest"
)

func TestConnectDenied(t *testing.T) {
	e := newStdEnv(t)
	for _, tc := range []struct {
		name, target, reason string
		status               int
	}{
		{"unlisted host", "evil.test:443", ReasonNotAllowed, 403},
		{"unlisted port", "api.example.test:8443", ReasonNotAllowed, 403},
		{"allowed host other port", "allowed.example.test:22", ReasonNotAllowed, 403},
		{"IP literal", "127.0.0.1:443", ReasonNotAllowed, 403},
		{"IPv6 literal", "[::1]:443", ReasonNotAllowed, 403},
		{"host-wide block", "blocked.example.test:443", ReasonBlocked, 403},
		{"no port", "api.example.test", ReasonBadRequest, 400},
		{"bad host", "exa_mple..test:443", ReasonBadRequest, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _ := e.tp.connect(t, tc.target)
			body := assertDeny(t, resp, tc.status, tc.reason)
			if tc.reason == ReasonNotAllowed && !strings.Contains(body, "add it to allow: or routes:") {
				t.Errorf("body %q does not say how to allow it", body)
			}
			if tc.reason == ReasonBlocked && !strings.Contains(body, "no exfiltration to the paste site") {
				t.Errorf("body %q does not carry the block reason", body)
			}
		})
	}
	if got := e.api.Requests(); len(got) != 0 {
		t.Errorf("upstream saw %d requests, want 0", len(got))
	}
	logs := e.tp.logs.String()
	if !strings.Contains(logs, `"decision":"deny"`) || !strings.Contains(logs, `"reason":"not_allowed"`) ||
		!strings.Contains(logs, `"decision":"block"`) {
		t.Errorf("audit log lacks deny/block lines:\n%s", logs)
	}
}

// docs/DESIGN.md, trap 4: CONNECT A, then an inner request for B.
func TestHostConfusionInsideMITM(t *testing.T) {
	e := newStdEnv(t)
	for _, tc := range []struct{ name, raw string }{
		{"Host header", "GET / HTTP/1.1\r\nHost: b.example.test\r\nAuthorization: Bearer " + phAPI + "\r\n\r\n"},
		{"absolute URL", "GET https://b.example.test/ HTTP/1.1\r\nHost: b.example.test\r\nAuthorization: Bearer " + phAPI + "\r\n\r\n"},
		{"absolute URL, Host A", "GET https://b.example.test/ HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer " + phAPI + "\r\n\r\n"},
		{"other port", "GET / HTTP/1.1\r\nHost: api.example.test:8443\r\nAuthorization: Bearer " + phAPI + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc2 := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			resp := rawRequest(t, tc2, bufio.NewReader(tc2), tc.raw)
			assertDeny(t, resp, 403, ReasonHostMismatch)
		})
	}
	if n := len(e.b.Requests()); n != 0 {
		t.Errorf("host B saw %d requests, want 0", n)
	}
	if n := len(e.api.Requests()); n != 0 {
		t.Errorf("host A saw %d requests, want 0", n)
	}
	// RFC 9112 §3.2.2: an absolute-form target overrides Host, so this one
	// goes to A, as A, and never to B.
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	resp := rawRequest(t, c, bufio.NewReader(c), "GET https://api.example.test/ HTTP/1.1\r\nHost: b.example.test\r\n\r\n")
	_ = readBody(t, resp)
	if got := e.api.Last(t).Host; got != "api.example.test" {
		t.Errorf("upstream A saw Host %q, want api.example.test", got)
	}
	if n := len(e.b.Requests()); n != 0 {
		t.Errorf("host B saw %d requests, want 0", n)
	}
}

// Upper-case host, trailing dot and default port meet the same policy.
func TestConnectHostNormalisation(t *testing.T) {
	e := newStdEnv(t)
	for _, target := range []string{"API.EXAMPLE.TEST:443", "api.example.test.:443", "Api.Example.Test.:443"} {
		t.Run(target, func(t *testing.T) {
			c := e.tp.mitm(t, target, "api.example.test")
			resp := rawRequest(t, c, bufio.NewReader(c), "GET /v1 HTTP/1.1\r\nHost: "+strings.TrimSuffix(strings.Split(target, ":")[0], ".")+"\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
			if body := readBody(t, resp); resp.StatusCode != 200 {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			if got := e.api.Last(t).Header.Get("Authorization"); got != "Bearer "+tokAPI {
				t.Errorf("upstream Authorization wrong (len %d)", len(got))
			}
		})
	}
	// A denied host stays denied in any spelling.
	for _, target := range []string{"EVIL.TEST:443", "evil.test.:443", "BLOCKED.example.test.:443"} {
		resp, _, _ := e.tp.connect(t, target)
		_ = readBody(t, resp)
		if resp.StatusCode != 403 {
			t.Errorf("CONNECT %s = %d, want 403", target, resp.StatusCode)
		}
	}
}

// IPv6 targets: a route on ::1 with AllowPrivate ::1/128.
func TestIPv6Target(t *testing.T) {
	rec := &upstreamtest.Recorder{}
	up := newUpstream(t, true, rec)
	_, port, _ := strings.Cut(up.Addr(), ":")
	if strings.HasPrefix(up.Addr(), "[") {
		testenv.Missing(t, "an IPv4 loopback for the upstream (it listens on %s)", up.Addr())
	}
	policy := `
slots: { v6: { placeholder: "PH-v6-00000000000" } }
routes:
  - { host: "[::1]:8443", slot: v6 }
allow: [ "[::1]:9443" ]
`
	toks := testTokens()
	toks["v6"] = toks["api"]
	tp := startProxy(t, policy, toks, map[string]string{
		"[::1]:8443": "127.0.0.1:" + port,
		"[::1]:9443": "127.0.0.1:" + port,
	})
	for _, target := range []string{"[::1]:8443", "[0:0::1]:8443"} {
		c := tp.mitm(t, target, "::1")
		resp := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: [::1]:8443\r\nAuthorization: Bearer PH-v6-00000000000\r\n\r\n")
		if body := readBody(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d body %q", target, resp.StatusCode, body)
		}
		if got := rec.Last(t).Header.Get("Authorization"); got != "Bearer "+tokAPI {
			t.Errorf("%s: token not injected", target)
		}
	}
	resp, _, _ := tp.connect(t, "[::1]:9443")
	if resp.StatusCode != 200 {
		t.Errorf("CONNECT [::1]:9443 = %d, want 200", resp.StatusCode)
	}
	resp, _, _ = tp.connect(t, "[::1]:443")
	assertDeny(t, resp, 403, ReasonNotAllowed)
}

// The leaf chains to the session CA; the client trusts only that CA.
func TestLeafChainsToSessionCA(t *testing.T) {
	e := newStdEnv(t)
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	cs := c.ConnectionState()
	if len(cs.VerifiedChains) == 0 {
		t.Fatal("no verified chain")
	}
	chain := cs.VerifiedChains[0]
	root := chain[len(chain)-1]
	if !root.Equal(e.tp.Proxy.ca.Certificate()) {
		t.Errorf("chain root %q is not the session CA", root.Subject)
	}
	leaf := cs.PeerCertificates[0]
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("leaf key %T, want ECDSA", leaf.PublicKey)
	}
	if err := leaf.VerifyHostname("api.example.test"); err != nil {
		t.Errorf("leaf: %v", err)
	}
	if cs.NegotiatedProtocol == "h2" {
		t.Errorf("client side negotiated h2; want HTTP/1.1 only")
	}
	// And an http.Client through the proxy verifies with only the CA.
	resp, err := e.tp.client().Get("https://api.example.test/x")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	_ = readBody(t, resp)
	pool := x509.NewCertPool()
	pool.AddCert(e.tp.Proxy.ca.Certificate())
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "api.example.test"}); err != nil {
		t.Errorf("leaf does not verify against the session CA: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestPathBlockInsideMITM(t *testing.T) {
	e := newStdEnv(t)
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	br := bufio.NewReader(c)
	for _, p := range []string{"/oauth/token", "/oauth/token/", "/oauth//token", "/oauth/%74oken", "/x/../oauth/token"} {
		resp := rawRequest(t, c, br, "POST "+p+" HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 0\r\n\r\n")
		body := assertDeny(t, resp, 403, ReasonBlocked)
		if !strings.Contains(body, "token refresh happens on the host") {
			t.Errorf("%s: body %q lacks the reason", p, body)
		}
	}
	resp := rawRequest(t, c, br, "GET /oauth/tokens HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
	if _ = readBody(t, resp); resp.StatusCode != 200 {
		t.Errorf("/oauth/tokens = %d, want 200", resp.StatusCode)
	}
}
