package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
)

const ssrfPolicy = `
slots: { api: { placeholder: "` + phAPI + `" } }
routes:
  - { host: routed-meta.example.test, slot: api }
allow:
  - loop.example.test
  - meta.example.test
  - ten.example.test
  - home.example.test
  - cgnat.example.test
  - mapped.example.test
  - ula.example.test
  - rebind.example.test
  - mixed.example.test
  - 127.0.0.1
  - 169.254.169.254
  - 10.0.0.1
  - 192.168.1.1
  - "::1"
  - "0.0.0.0"
`

// dialSpy replaces the socket dial: it records every address and refuses
// anything but loopback, so a broken guard can never reach the network.
type dialSpy struct {
	mu    sync.Mutex
	addrs []string
	t     *testing.T
}

func (s *dialSpy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	s.addrs = append(s.addrs, addr)
	s.mu.Unlock()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, errors.New("test: non-loopback dial refused by the spy")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (s *dialSpy) dialed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// TestSSRF: private, loopback, metadata and mapped addresses are refused
// before any connection, on CONNECT, inside MITM and on plain HTTP, with
// the environment's proxy variables set (docs/DESIGN.md, trap 6).
func TestSSRF(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9") // would bypass the guard if honoured
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:9")
	t.Setenv("https_proxy", "http://127.0.0.1:9")
	t.Setenv("http_proxy", "http://127.0.0.1:9")
	t.Setenv("NO_PROXY", "")
	tp := startProxy(t, ssrfPolicy, testTokens(), map[string]string{
		"loop.example.test:443":        "127.0.0.1:443",
		"meta.example.test:443":        "169.254.169.254:443",
		"meta.example.test:80":         "169.254.169.254:80",
		"routed-meta.example.test:443": "169.254.169.254:443",
		"ten.example.test:443":         "10.0.0.1:443",
		"ten.example.test:80":          "10.0.0.1:80",
		"home.example.test:443":        "192.168.1.1:443",
		"cgnat.example.test:443":       "100.64.0.1:443",
		"mapped.example.test:443":      "[::ffff:127.0.0.1]:443",
		"mapped.example.test:80":       "[::ffff:169.254.169.254]:80",
		"ula.example.test:443":         "[fd00::1]:443",
	}, func(c *Config) { c.AllowPrivate = nil })
	spy := &dialSpy{t: t}
	tp.dialer.dial = spy.dial
	tp.dialer.lookup = func(context.Context, string) ([]netip.Addr, error) {
		t.Error("unexpected DNS lookup")
		return nil, errors.New("no DNS in tests")
	}
	if tp.gp.ConnectDial != nil || tp.gp.ConnectDialWithReq != nil || tp.tr.Proxy != nil {
		t.Fatal("environment proxy leaked into goproxy's dialer or transport")
	}

	for _, target := range []string{
		"loop.example.test:443", "meta.example.test:443", "ten.example.test:443", "home.example.test:443",
		"cgnat.example.test:443", "mapped.example.test:443", "ula.example.test:443",
		"127.0.0.1:443", "169.254.169.254:443", "10.0.0.1:443", "192.168.1.1:443",
		"[::ffff:127.0.0.1]:443", "[::ffff:a9fe:a9fe]:443", "[::1]:443", "0.0.0.0:443",
	} {
		t.Run("CONNECT "+target, func(t *testing.T) {
			resp, _, _ := tp.connect(t, target)
			assertDeny(t, resp, 403, ReasonPrivateAddress)
		})
	}
	t.Run("inside MITM", func(t *testing.T) {
		c := tp.mitm(t, "routed-meta.example.test:443", "routed-meta.example.test")
		resp := rawRequest(t, c, bufio.NewReader(c), "GET /latest/meta-data/ HTTP/1.1\r\nHost: routed-meta.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
		assertDeny(t, resp, 403, ReasonPrivateAddress)
	})
	for _, u := range []string{"http://meta.example.test/latest/meta-data/", "http://ten.example.test/", "http://169.254.169.254/", "http://[::ffff:a9fe:a9fe]/", "http://mapped.example.test/"} {
		t.Run("plain "+u, func(t *testing.T) {
			resp, err := tp.client().Get(u)
			if err != nil {
				t.Fatal(err)
			}
			assertDeny(t, resp, 403, ReasonPrivateAddress)
		})
	}
	if d := spy.dialed(); len(d) != 0 {
		t.Errorf("guard let dials through: %q", d)
	}
	if logs := tp.logs.String(); !strings.Contains(logs, `"reason":"private_address"`) {
		t.Errorf("no private_address audit line")
	}
}

// A resolver whose answer changes between check and dial cannot move the
// dial: the checked address is the one dialed, and DNS is asked once.
func TestSSRFRebinding(t *testing.T) {
	tp := startProxy(t, ssrfPolicy, testTokens(), nil, func(c *Config) { c.AllowPrivate = nil })
	spy := &dialSpy{t: t}
	tp.dialer.dial = spy.dial
	var mu sync.Mutex
	lookups := 0
	answers := [][]netip.Addr{
		{netip.MustParseAddr("8.8.8.8")}, // public-looking: passes the check
		{netip.MustParseAddr("127.0.0.1")},
	}
	tp.dialer.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		if host == "mixed.example.test" {
			return []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("127.0.0.1")}, nil
		}
		a := answers[min(lookups, len(answers)-1)]
		lookups++
		return a, nil
	}
	resp, _, _ := tp.connect(t, "rebind.example.test:443")
	// The spy refuses the public address, so the tunnel fails with 502 —
	// what matters is where it tried to go.
	assertDeny(t, resp, 502, ReasonUpstreamUnreachable)
	if d := spy.dialed(); len(d) != 1 || d[0] != "8.8.8.8:443" {
		t.Errorf("dialed %q, want exactly the checked 8.8.8.8:443", d)
	}
	if lookups != 1 {
		t.Errorf("%d lookups, want 1", lookups)
	}
	// Any guarded address in the answer refuses the whole answer.
	resp, _, _ = tp.connect(t, "mixed.example.test:443")
	assertDeny(t, resp, 403, ReasonPrivateAddress)
	if d := spy.dialed(); len(d) != 1 {
		t.Errorf("mixed answer dialed: %q", d)
	}
}

// The socket-level check (net.Dialer.Control) refuses on its own, before
// connect(2): the listener never sees a connection.
func TestDialControl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	pol, _ := policy.Parse([]byte(ssrfPolicy))
	d, err := newDialer(Config{Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.dial(context.Background(), "tcp", ln.Addr().String()); !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("raw dial to loopback: %v, want ErrPrivateAddress", err)
	}
	select {
	case <-accepted:
		t.Error("listener accepted a connection the guard refused")
	case <-time.After(50 * time.Millisecond):
	}
	for _, tc := range []struct {
		network, addr string
		ok            bool
	}{
		{"tcp4", "127.0.0.1:443", false},
		{"tcp4", "169.254.169.254:80", false},
		{"tcp4", "10.0.0.1:443", false},
		{"tcp4", "172.16.0.1:443", false},
		{"tcp4", "192.168.1.1:443", false},
		{"tcp4", "100.64.0.1:443", false},
		{"tcp4", "224.0.0.1:443", false},
		{"tcp4", "0.0.0.0:443", false},
		{"tcp6", "[::1]:443", false},
		{"tcp6", "[::ffff:127.0.0.1]:443", false},
		{"tcp6", "[fd00::1]:443", false},
		{"tcp6", "[fe80::1]:443", false},
		{"tcp4", "8.8.8.8:443", true},
		{"tcp6", "[2606:4700::1111]:443", true},
	} {
		err := d.control(tc.network, tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("control(%s, %s) = %v, want ok=%v", tc.network, tc.addr, err, tc.ok)
		}
	}
	// AllowPrivate exempts exactly its prefixes.
	d2, _ := newDialer(Config{Policy: pol, AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err := d2.control("tcp4", "127.0.0.1:443", nil); err != nil {
		t.Errorf("AllowPrivate 127.0.0.0/8: control(127.0.0.1) = %v", err)
	}
	if err := d2.control("tcp4", "10.0.0.1:443", nil); err == nil {
		t.Errorf("AllowPrivate 127.0.0.0/8 allowed 10.0.0.1")
	}
}

func TestErrPrivateAddressThroughTransport(t *testing.T) {
	pol, _ := policy.Parse([]byte(ssrfPolicy))
	d, _ := newDialer(Config{Policy: pol})
	tr := &http.Transport{DialContext: d.DialContext}
	_, err := tr.RoundTrip(mustRequest(t, "GET", "http://127.0.0.1:9/"))
	if !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("RoundTrip error %v does not wrap ErrPrivateAddress", err)
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
