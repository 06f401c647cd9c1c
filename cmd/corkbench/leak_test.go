package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
)

// leakRequests is the number of requests TestNoLeakAfterLoad sends; the
// race detector makes TLS handshakes ~10× slower, so it sends fewer there.
func leakRequests() int {
	if raceEnabled {
		return 2000
	}
	return 10000
}

// Slack allowed over the baseline: runtime and test-framework goroutines
// (timers, the netpoller, a finaliser) and descriptors come and go.
const (
	goroutineSlack = 4
	fdSlack        = 4
)

// TestNoLeakAfterLoad sends 10,000 requests through an in-process proxy,
// mixing intercepted (MITM + inject), tunnelled and plain-HTTP requests
// with keep-alive and with a new connection each, plus denials, upstream
// failures (502) and clients that hang up mid-body. After the clients
// close their connections, goroutines and open files must return to what
// they were before the load (the proxy still running), and after p.Close
// and the servers' Close to what they were before the test.
func TestNoLeakAfterLoad(t *testing.T) {
	g0, fd0 := runtime.NumGoroutine(), countFDs(t)

	up, err := startUpstream(false)
	if err != nil {
		t.Fatal(err)
	}
	upClosed := false
	defer func() {
		if !upClosed {
			up.close()
		}
	}()
	// down.test:443 → a port nobody listens on: every request there is a 502.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	res := up.resolveMap()
	res[hostDown+":443"] = deadAddr

	pol, err := policy.Parse([]byte(corkPolicy))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{
		Policy:          pol,
		Tokens:          resolve.Tokens{slotName: resolve.NewSecret(realToken)},
		UpstreamRootCAs: up.pool(),
		AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolve:         res,
		// Pooled upstream connections expire quickly so that they do not
		// count as leaks; the proxy's own reaper is not needed here.
		IdleConnTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	closed := false
	defer func() {
		if !closed {
			srv.Close()
			p.Close()
		}
	}()
	proxyURL, _ := url.Parse(srv.URL)
	v := variant{name: "cork", proxy: proxyURL, roots: poolWith(up.pool(), p.CACertPEM())}

	// Warm-up: every kind once, so lazily started goroutines (the proxy's,
	// net/http's) exist before the baseline is taken.
	warm := newLeakClients(v)
	for _, k := range leakKinds {
		if err := k.do(t, v, warm); err != nil {
			t.Fatalf("warm-up %s: %v", k.name, err)
		}
	}
	warm.closeIdle()
	g1, fd1 := settle(t, 0, 0, 0)

	n := leakRequests()
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	const workers = 8
	var wg sync.WaitGroup
	start := time.Now()
	clients := make([]*leakClients, workers)
	for w := range workers {
		clients[w] = newLeakClients(v)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := sent.Add(1) - 1
				if i >= int64(n) {
					return
				}
				k := pickKind(int(i))
				if err := k.do(t, v, clients[w]); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", k.name, err))
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests in %s", n, time.Since(start).Round(time.Millisecond))
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d requests failed; first: %v", f, n, firstErr.Load())
	}
	if got, want := up.placeholders.Load(), int64(0); got != want {
		t.Errorf("upstream saw the placeholder %d times, want %d", got, want)
	}
	for _, c := range clients {
		c.closeIdle()
	}

	// The proxy keeps running: its per-connection goroutines and
	// descriptors must be gone once the clients have hung up.
	if g, fd := settle(t, g1, fd1, 5*time.Second); g > g1+goroutineSlack || fd > fd1+fdSlack {
		t.Errorf("after load, proxy running: %d goroutines (before load %d), %d open files (before load %d)\n%s",
			g, g1, fd, fd1, goroutineDump())
	}

	p.Close()
	srv.Close()
	up.close()
	closed, upClosed = true, true
	if g, fd := settle(t, g0, fd0, 5*time.Second); g > g0+goroutineSlack || fd > fd0+fdSlack {
		t.Errorf("after Close: %d goroutines (before the test %d), %d open files (before the test %d)\n%s",
			g, g0, fd, fd0, goroutineDump())
	}
}

// leakKind is one kind of request in the mix.
type leakKind struct {
	name   string
	weight int // per 100
	do     func(t *testing.T, v variant, c *leakClients) error
}

var leakKinds = []leakKind{
	{"mitm keep-alive", 36, func(_ *testing.T, v variant, c *leakClients) error { return get(c.keep, pathMITM, "/1k", 200) }},
	{"mitm new conn", 4, func(_ *testing.T, v variant, c *leakClients) error { return get(c.fresh, pathMITM, "/1k", 200) }},
	{"tunnel keep-alive", 24, func(_ *testing.T, v variant, c *leakClients) error { return get(c.keep, pathTunnel, "/1k", 200) }},
	{"tunnel new conn", 3, func(_ *testing.T, v variant, c *leakClients) error { return get(c.fresh, pathTunnel, "/1k", 200) }},
	{"plain keep-alive", 22, func(_ *testing.T, v variant, c *leakClients) error { return get(c.keep, pathPlain, "/1k", 200) }},
	{"plain new conn", 3, func(_ *testing.T, v variant, c *leakClients) error { return get(c.fresh, pathPlain, "/1k", 200) }},
	{"mitm sse", 2, func(_ *testing.T, v variant, c *leakClients) error {
		return get(c.keep, pathMITM, "/sse?n=3&ms=1", 200)
	}},
	{"mitm upload", 2, func(_ *testing.T, v variant, c *leakClients) error {
		req, _ := newRequest(context.Background(), http.MethodPost, pathMITM, "/up", &genReader{n: 64 << 10})
		return expect(c.keep.Do(req))(200)
	}},
	{"denied CONNECT", 1, func(_ *testing.T, v variant, c *leakClients) error {
		_, err := c.keep.Get("https://" + hostDenied + "/1k")
		if err == nil || !strings.Contains(err.Error(), "Forbidden") {
			return fmt.Errorf("want a refused CONNECT (403), got %v", err)
		}
		return nil
	}},
	{"upstream down (502)", 1, func(_ *testing.T, v variant, c *leakClients) error {
		p := path{name: "down", url: "https://" + hostDown, auth: true}
		return get(c.keep, p, "/1k", http.StatusBadGateway)
	}},
	{"client hangs up mid-body", 2, func(_ *testing.T, v variant, c *leakClients) error {
		// Read a little of a large MITM download, then drop the connection.
		req, _ := newRequest(context.Background(), http.MethodGet, pathMITM, "/down?n=1048576", nil)
		resp, err := c.fresh.Do(req)
		if err != nil {
			return err
		}
		_, err = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
		return err
	}},
}

// pickKind spreads the kinds by weight over each block of 100 requests.
func pickKind(i int) leakKind {
	j := i % 100
	for _, k := range leakKinds {
		if j < k.weight {
			return k
		}
		j -= k.weight
	}
	return leakKinds[0]
}

// leakClients is one worker's clients: a keep-alive one and one that opens
// a new connection for every request.
type leakClients struct {
	keep, fresh *http.Client
	trs         []*http.Transport
}

func newLeakClients(v variant) *leakClients {
	cache := tls.NewLRUClientSessionCache(8)
	k, f := v.clientTransport(true, cache), v.clientTransport(false, cache)
	return &leakClients{
		keep:  &http.Client{Transport: k, Timeout: time.Minute},
		fresh: &http.Client{Transport: f, Timeout: time.Minute},
		trs:   []*http.Transport{k, f},
	}
}

func (c *leakClients) closeIdle() {
	for _, tr := range c.trs {
		tr.CloseIdleConnections()
	}
}

func get(c *http.Client, p path, rel string, want int) error {
	req, err := newRequest(context.Background(), http.MethodGet, p, rel, nil)
	if err != nil {
		return err
	}
	return expect(c.Do(req))(want)
}

func expect(resp *http.Response, err error) func(int) error {
	return func(want int) error {
		if err != nil {
			return err
		}
		_, cerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("status %d, want %d", resp.StatusCode, want)
		}
		return cerr
	}
}

// settle polls until goroutines and open files are at most g and fd (plus
// slack) or the time is up, and returns the last counts. With zero limits
// it waits for the counts to stop falling and returns them (a baseline).
func settle(t *testing.T, g, fd int, within time.Duration) (int, int) {
	t.Helper()
	if within == 0 {
		prevG, prevFD := -1, -1
		for range 50 {
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
			cg, cfd := runtime.NumGoroutine(), countFDs(t)
			if cg == prevG && cfd == prevFD {
				return cg, cfd
			}
			prevG, prevFD = cg, cfd
		}
		return prevG, prevFD
	}
	deadline := time.Now().Add(within)
	for {
		runtime.GC()
		cg, cfd := runtime.NumGoroutine(), countFDs(t)
		if (cg <= g+goroutineSlack && cfd <= fd+fdSlack) || time.Now().After(deadline) {
			return cg, cfd
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countFDs counts this process's open file descriptors (Linux); elsewhere
// it returns 0 and only goroutines are checked.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	return len(ents) - 1 // the directory being read
}

func goroutineDump() string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}
