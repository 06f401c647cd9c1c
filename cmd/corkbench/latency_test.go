package main

import (
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
)

// latencyEnv starts the upstream and an in-process cork proxy wired like
// `cork proxy`, and returns the direct and cork variants.
func latencyEnv(t *testing.T) (*upstream, variant, variant) {
	t.Helper()
	up, err := startUpstream(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.close)
	pol, err := policy.Parse([]byte(corkPolicy))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{
		Policy:          pol,
		Tokens:          resolve.Tokens{slotName: resolve.NewSecret(realToken)},
		UpstreamRootCAs: up.pool(),
		AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolve:         up.resolveMap(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	u, _ := url.Parse(srv.URL)
	direct := variant{name: "direct", roots: up.pool(), resolve: up.resolveMap(), up: up}
	cork := variant{name: "cork", proxy: u, roots: poolWith(up.pool(), p.CACertPEM()), up: up}
	return up, direct, cork
}

// TestFirstByte opens an SSE stream and a WebSocket on a new connection,
// directly and through cork, on the intercepted path and in a tunnel; the
// intercepted upgrade must reach the upstream with the real token.
func TestFirstByte(t *testing.T) {
	up, direct, cork := latencyEnv(t)
	for _, row := range streamRows {
		for _, v := range []variant{direct, cork} {
			inj, ph := up.injected.Load(), up.placeholders.Load()
			d, err := firstByte(v, row.path, row.ws)
			if err != nil {
				t.Errorf("firstByte(%s, %s) error: %v", v.name, row.key, err)
				continue
			}
			if d <= 0 {
				t.Errorf("firstByte(%s, %s) = %v, want > 0", v.name, row.key, d)
			}
			if v.proxy != nil && row.path.auth && (up.injected.Load() == inj || up.placeholders.Load() != ph) {
				t.Errorf("firstByte(%s, %s): the upstream did not get the real token in place of the placeholder", v.name, row.key)
			}
		}
	}
}

// TestRunLatency times a few requests of every intercepted row and checks
// that they are counted, error-free, and that the resumed row resumes.
func TestRunLatency(t *testing.T) {
	_, direct, cork := latencyEnv(t)
	for _, row := range latRows {
		if !row.path.auth {
			continue
		}
		for _, v := range []variant{direct, cork} {
			lr := runLatency(v, row, 2, 20)
			if lr.n != 20 || lr.errs != 0 {
				t.Errorf("runLatency(%s, %s) = %d timed, %d errors (%v), want 20, 0", v.name, row.key, lr.n, lr.errs, lr.firstErr)
			}
			if lr.p50 <= 0 || lr.p50 > lr.p90 || lr.p90 > lr.p99 {
				t.Errorf("runLatency(%s, %s) percentiles %v / %v / %v, want 0 < p50 ≤ p90 ≤ p99", v.name, row.key, lr.p50, lr.p90, lr.p99)
			}
			switch row.kind {
			case latResumed:
				if lr.hands != 20 || lr.resumed != 20 {
					t.Errorf("runLatency(%s, %s) resumed %d of %d handshakes, want 20 of 20", v.name, row.key, lr.resumed, lr.hands)
				}
			case latNew:
				if lr.hands != 20 || lr.resumed != 0 {
					t.Errorf("runLatency(%s, %s) resumed %d of %d handshakes, want 0 of 20", v.name, row.key, lr.resumed, lr.hands)
				}
			}
		}
	}
}

func TestRoute(t *testing.T) {
	up, err := startUpstream(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.close)
	peer := variant{name: "squid", peer: true, up: up}
	for _, tc := range []struct {
		name      string
		v         variant
		in        path
		url, host string
	}{
		{"peer tunnel", peer, pathTunnel, "https://" + up.httpsAddr(), hostTunnel},
		{"peer plain", peer, pathPlain, "http://" + up.httpAddr(), ""},
		{"not a peer", variant{name: "cork", up: up}, pathTunnel, pathTunnel.url, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.v.route(tc.in)
			if got.url != tc.url || got.host != tc.host {
				t.Errorf("route(%q) = %q host %q, want %q host %q", tc.in.url, got.url, got.host, tc.url, tc.host)
			}
		})
	}
}

func TestParseConc(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"1,8", []int{1, 8}, true},
		{" 4 ", []int{4}, true},
		{"0", nil, false},
		{"1,x", nil, false},
		{"", nil, false},
	} {
		got, err := parseConc(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseConc(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestLatencyAdded checks that added latency pairs rounds: the median of
// per-round differences, not the difference of medians.
func TestLatencyAdded(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	l := &latencyResult{runs: map[latKey][]latRun{
		{"r", 1, "direct"}: {{p50: ms(1), n: 1}, {p50: ms(10), n: 1}, {p50: ms(2), n: 1}},
		{"r", 1, "cork"}:   {{p50: ms(2), n: 1}, {p50: ms(11), n: 1}, {p50: ms(3), n: 1}},
	}}
	got, ok := l.added("r", 1, "cork", 50)
	if !ok || got != ms(1) {
		t.Errorf("added = %v, %v; want 1ms, true", got, ok)
	}
	if got := l.pct(latKey{"r", 1, "cork"}, 50); got != ms(3) {
		t.Errorf("pct = %v, want 3ms", got)
	}
}
