package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawErrorFragments are bits of Go error text that must never reach a client.
var rawErrorFragments = []string{"dial tcp", "connection refused", "127.0.0.1:1", "x509", "tls:", "EOF", "timeout awaiting", "context deadline", "net/http"}

func assertNoRawError(t *testing.T, body string) {
	t.Helper()
	for _, f := range rawErrorFragments {
		if strings.Contains(body, f) {
			t.Errorf("body %q carries raw error text %q", body, f)
		}
	}
}

// docs/DESIGN.md, trap 5: upstream failures are 502/504 with a short message,
// on every path; never a closed connection or Go error text.
func TestUpstreamDown(t *testing.T) {
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":     "127.0.0.1:1",
		"down.example.test:443":    "127.0.0.1:1",
		"allowed.example.test:80":  "127.0.0.1:1",
		"allowed.example.test:443": "127.0.0.1:1",
	})
	t.Run("MITM", func(t *testing.T) {
		c := tp.mitm(t, "api.example.test:443", "api.example.test")
		br := bufio.NewReader(c)
		for i := range 2 { // the connection stays usable
			resp := rawRequest(t, c, br, "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
			body := assertDeny(t, resp, http.StatusBadGateway, ReasonUpstreamUnreachable)
			assertNoRawError(t, body)
			_ = i
		}
	})
	t.Run("tunnel", func(t *testing.T) {
		resp, _, _ := tp.connect(t, "down.example.test:443")
		assertNoRawError(t, assertDeny(t, resp, http.StatusBadGateway, ReasonUpstreamUnreachable))
	})
	t.Run("plain", func(t *testing.T) {
		resp, err := tp.client().Get("http://allowed.example.test/x")
		if err != nil {
			t.Fatal(err)
		}
		assertNoRawError(t, assertDeny(t, resp, http.StatusBadGateway, ReasonUpstreamUnreachable))
	})
	t.Run("client through MITM", func(t *testing.T) {
		resp, err := tp.client().Get("https://api.example.test/x")
		if err != nil {
			t.Fatalf("client got %v, want a 502 response", err)
		}
		assertDeny(t, resp, http.StatusBadGateway, ReasonUpstreamUnreachable)
	})
	logs := tp.logs.String()
	if !strings.Contains(logs, `"reason":"upstream_unreachable"`) {
		t.Errorf("no audit line for the failure")
	}
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	up := newUpstream(t, true, slow)
	plain := newUpstream(t, false, slow)
	defer close(release)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":    up.Addr(),
		"allowed.example.test:80": plain.Addr(),
	}, func(c *Config) { c.ResponseHeaderTimeout = 150 * time.Millisecond })

	c := tp.mitm(t, "api.example.test:443", "api.example.test")
	resp := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
	assertNoRawError(t, assertDeny(t, resp, http.StatusGatewayTimeout, ReasonUpstreamTimeout))

	resp, err := tp.client().Get("http://allowed.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	assertNoRawError(t, assertDeny(t, resp, http.StatusGatewayTimeout, ReasonUpstreamTimeout))
}

// An upstream whose certificate does not verify: 502 upstream_tls.
func TestUpstreamBadCertificate(t *testing.T) {
	bad := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("request reached an unverified upstream")
	}))
	defer bad.Close()
	bad.Config.ErrorLog = nil
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": bad.Listener.Addr().String()})
	c := tp.mitm(t, "api.example.test:443", "api.example.test")
	resp := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
	assertNoRawError(t, assertDeny(t, resp, http.StatusBadGateway, ReasonUpstreamTLS))
}
