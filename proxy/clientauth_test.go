package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cork-sh/cork/resolve"
)

// With Config.ClientAuth, only clients holding the session credential may
// use the proxy: CONNECT and plain HTTP without it get 407, and the
// credential never reaches an upstream or a log.
func TestClientAuth(t *testing.T) {
	const sessionAuth = "cork:session-pass-4b1d"
	var mu sync.Mutex
	var seen []http.Header
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	plain := newUpstream(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "plain") }))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":    up.Addr(),
		"allowed.example.test:80": plain.Addr(),
	}, func(c *Config) { c.ClientAuth = resolve.NewSecret(sessionAuth) })

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(sessionAuth))
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"none", "", http.StatusProxyAuthRequired},
		{"wrong", "Basic " + base64.StdEncoding.EncodeToString([]byte("cork:guess")), http.StatusProxyAuthRequired},
		{"right", basic, http.StatusOK},
		{"right, lower-case scheme", "basic " + strings.TrimPrefix(basic, "Basic "), http.StatusOK},
	} {
		t.Run("CONNECT "+tc.name, func(t *testing.T) {
			resp, c, _ := tp.connectWith(t, "api.example.test:443", tc.header)
			c.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("CONNECT with %s credential = %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusProxyAuthRequired {
				if resp.Header.Get("Proxy-Authenticate") == "" || resp.Header.Get(HeaderDenyReason) != ReasonProxyAuth {
					t.Errorf("407 headers = %v, want Proxy-Authenticate and %s: %s", resp.Header, HeaderDenyReason, ReasonProxyAuth)
				}
			}
		})
	}

	t.Run("plain HTTP without the credential", func(t *testing.T) {
		u, _ := url.Parse(tp.srv.URL)
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
		resp, err := c.Get("http://allowed.example.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusProxyAuthRequired {
			t.Errorf("GET without credential = %d, want 407", resp.StatusCode)
		}
	})

	t.Run("a client with the proxy URL's credentials works end to end", func(t *testing.T) {
		u, _ := url.Parse(tp.srv.URL)
		u.User = url.UserPassword("cork", "session-pass-4b1d")
		tr := tp.client().Transport.(*http.Transport)
		tr.Proxy = http.ProxyURL(u)
		c := &http.Client{Transport: tr}
		req, _ := http.NewRequest(http.MethodGet, "https://api.example.test/v1", nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("MITM with credentials = %d %q, want 200 ok", resp.StatusCode, body)
		}
		resp, err = c.Get("http://allowed.example.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("plain HTTP with credentials = %d, want 200", resp.StatusCode)
		}
	})

	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the upstream saw no request")
	}
	for _, h := range seen {
		if h.Get("Proxy-Authorization") != "" {
			t.Errorf("upstream received Proxy-Authorization")
		}
		if h.Get("Authorization") != "Bearer "+tokAPI {
			t.Errorf("upstream Authorization = %q, want the real token", h.Get("Authorization"))
		}
	}
	if logs := tp.logs.String(); strings.Contains(logs, "session-pass-4b1d") || !strings.Contains(logs, ReasonProxyAuth) {
		t.Errorf("logs: want the 407 reason and no session credential:\n%s", logs)
	}
}

// TRACE to a routed host would echo the injected token back into the
// sandbox: refused (security review).
func TestTraceRefusedOnRoutes(t *testing.T) {
	var hits int32
	var mu sync.Mutex
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		_, _ = io.WriteString(w, "auth="+r.Header.Get("Authorization"))
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	for _, method := range []string{"TRACE", "TRACK", "trace"} {
		req, _ := http.NewRequest(method, "https://api.example.test/", nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		resp, err := tp.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s to a routed host = %d %q, want 400 without the token", method, resp.StatusCode, body)
		}
		if strings.Contains(string(body), tokAPI) {
			t.Errorf("%s echoed the real token to the client", method)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if hits > 0 {
		t.Errorf("upstream saw %d TRACE-like requests, want none", hits)
	}
}

// An upstream that reflects request headers in its response headers does
// not hand the injected token to the sandbox: the client sees its
// placeholder again (security review).
func TestInjectedTokenNotEchoed(t *testing.T) {
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
		w.Header().Set("X-Debug", "saw "+r.Header.Get("Authorization")+" on "+r.URL.Path)
		_, _ = io.WriteString(w, "ok")
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443": up.Addr(),
		"gh.example.test:443":  up.Addr(),
	})
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct{ name, url, sent string }{
		{"bearer", "https://api.example.test/x", "Bearer " + phAPI},
		{"basic", "https://gh.example.test/x", basic("x-access-token", phGH)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			req.Header.Set("Authorization", tc.sent)
			resp, err := tp.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for k, v := range resp.Header {
				joined := strings.Join(v, ",")
				if strings.Contains(joined, tokAPI) || strings.Contains(joined, tokGH) || strings.Contains(joined, base64.StdEncoding.EncodeToString([]byte("x-access-token:"+tokGH))) {
					t.Errorf("response header %s carries the real token: %q", k, joined)
				}
			}
			if got := resp.Header.Get("X-Echo-Authorization"); got != tc.sent {
				t.Errorf("echoed Authorization = %q, want the placeholder form %q", got, tc.sent)
			}
		})
	}
}

// With Config.ClientAuth and TrustUnixSockets, a client of NewServer's
// server on a Unix socket needs no credential (the socket file's
// permissions are the boundary), while the same proxy on TCP still
// answers 407 without it and 200 with it. An abstract socket, which has
// no file, is treated as TCP; and without TrustUnixSockets a socket's
// clients need the credential too.
func TestClientAuthUnixSocket(t *testing.T) {
	const sessionAuth = "cork:session-pass-4b1d"
	up := newUpstream(t, true, nil)
	plain := newUpstream(t, false, nil)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":    up.Addr(),
		"allowed.example.test:80": plain.Addr(),
	}, func(c *Config) { c.ClientAuth, c.TrustUnixSockets = resolve.NewSecret(sessionAuth), true })
	strict := startProxy(t, testPolicy, testTokens(), map[string]string{
		"allowed.example.test:80": plain.Addr(),
	}, func(c *Config) { c.ClientAuth = resolve.NewSecret(sessionAuth) })

	serve := func(p *Proxy, network, addr string) string {
		t.Helper()
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
		srv := p.NewServer()
		go srv.Serve(p.LimitListener(ln))
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	// client uses the proxy at network, addr, with auth in its URL (if
	// not empty), trusting the session CA.
	client := func(network, addr, auth string) *http.Client {
		u := &url.URL{Scheme: "http", Host: "proxy.invalid"}
		if auth != "" {
			user, pass, _ := strings.Cut(auth, ":")
			u.User = url.UserPassword(user, pass)
		}
		return &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyURL(u),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: tp.ca},
			DisableKeepAlives: true,
		}}
	}
	get := func(t *testing.T, c *http.Client, target string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		if strings.HasPrefix(target, "https://api.") {
			req.Header.Set("Authorization", "Bearer "+phAPI)
		}
		resp, err := c.Do(req)
		if err != nil {
			if strings.Contains(err.Error(), "Proxy Authentication Required") {
				return http.StatusProxyAuthRequired, "" // CONNECT refused
			}
			t.Fatalf("GET %s: %v", target, err)
		}
		return resp.StatusCode, readBody(t, resp)
	}
	sock := serve(tp.Proxy, "unix", filepath.Join(t.TempDir(), "proxy.sock"))
	tcp := serve(tp.Proxy, "tcp", "127.0.0.1:0")
	for _, tc := range []struct {
		name, network, addr, auth string
		want                      int
	}{
		{"unix socket, no credential", "unix", sock, "", http.StatusOK},
		{"unix socket, the credential", "unix", sock, sessionAuth, http.StatusOK},
		{"tcp, no credential", "tcp", tcp, "", http.StatusProxyAuthRequired},
		{"tcp, a wrong credential", "tcp", tcp, "cork:guess-guess-guess-guess", http.StatusProxyAuthRequired},
		{"tcp, the credential", "tcp", tcp, sessionAuth, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(tc.network, tc.addr, tc.auth)
			for _, target := range []string{"https://api.example.test/v1", "http://allowed.example.test/"} {
				if code, _ := get(t, c, target); code != tc.want {
					t.Errorf("GET %s = %d, want %d", target, code, tc.want)
				}
			}
		})
	}
	if runtime.GOOS == "linux" {
		t.Run("abstract unix socket, no credential", func(t *testing.T) {
			abstract := serve(tp.Proxy, "unix", "@cork-test-"+strconv.Itoa(os.Getpid())+"-"+t.Name())
			if code, _ := get(t, client("unix", abstract, ""), "http://allowed.example.test/"); code != http.StatusProxyAuthRequired {
				t.Errorf("GET through an abstract socket without credential = %d, want 407", code)
			}
		})
	}
	t.Run("unix socket without TrustUnixSockets", func(t *testing.T) {
		strictSock := serve(strict.Proxy, "unix", filepath.Join(t.TempDir(), "strict.sock"))
		for _, tc := range []struct {
			name, auth string
			want       int
		}{
			{"no credential", "", http.StatusProxyAuthRequired},
			{"the credential", sessionAuth, http.StatusOK},
		} {
			if code, _ := get(t, client("unix", strictSock, tc.auth), "http://allowed.example.test/"); code != tc.want {
				t.Errorf("GET with %s = %d, want %d", tc.name, code, tc.want)
			}
		}
	})
	for _, r := range up.Requests() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+tokAPI {
			t.Errorf("upstream Authorization = %q, want the real token", got)
		}
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Error("upstream received Proxy-Authorization")
		}
	}
	if n := len(up.Requests()); n != 3 {
		t.Errorf("the upstream saw %d requests, want 3 (two on the socket, one on TCP with the credential)", n)
	}
}
