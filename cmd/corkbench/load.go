package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// variant is one way to reach the upstream: directly, or through a proxy.
type variant struct {
	name  string
	proxy *url.URL       // nil: direct
	pid   int            // proxy process, 0 for direct
	roots *x509.CertPool // upstream CA, plus the proxy's CA
	// resolve maps the benchmark host names to the upstream (direct only).
	resolve map[string]string
	up      *upstream // for counting upstream connections
	// peer marks squid and tinyproxy: no interception, and the request names
	// the upstream by address (see route in peers.go).
	peer bool
}

// path is how a request travels.
type path struct {
	name string
	url  string // https://bench.test, https://tunnel.test, http://tunnel.test
	auth bool   // send the placeholder credential (MITM route only)
	host string // Host header when url names an address (peers)
}

var (
	pathMITM   = path{name: "mitm", url: "https://" + hostMITM, auth: true}
	pathTunnel = path{name: "tunnel", url: "https://" + hostTunnel}
	pathPlain  = path{name: "plain", url: "http://" + hostTunnel}
)

// clientTransport is what a well-behaved agent HTTP client uses: HTTP/1.1
// (cork serves HTTP/1.1 to the sandbox), a TLS session cache (Node, Python
// and Go clients resume sessions), no compression.
func (v variant) clientTransport(keepAlive bool, cache tls.ClientSessionCache) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := v.resolve[addr]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{
			RootCAs:            v.roots,
			ClientSessionCache: cache,
			NextProtos:         []string{"http/1.1"},
		},
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if v.proxy != nil {
		tr.Proxy = http.ProxyURL(v.proxy)
	}
	if v.peer {
		tr.TLSClientConfig.ServerName = hostTunnel // peers carry only the tunnel
	}
	return tr
}

func newRequest(ctx context.Context, method string, p path, rel string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.url+rel, body)
	if err != nil {
		return nil, err
	}
	if p.auth {
		req.Header.Set("Authorization", "Bearer "+placeholder)
	}
	if p.host != "" {
		req.Host = p.host
	}
	req.Header.Set("User-Agent", "cork-bench")
	return req, nil
}

// loadResult is one timed run at fixed concurrency.
type loadResult struct {
	n, errs   int
	elapsed   time.Duration
	lat       []time.Duration // sorted
	resumed   int             // TLS handshakes that resumed a session (new-connection runs)
	handshake int
	proxyCPU  time.Duration
	upConns   int64 // connections the upstream accepted during the run
	firstErr  error
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

func (r loadResult) pct(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q * float64(len(r.lat)-1))
	return r.lat[i]
}

// runLoad has conns workers, each with its own Transport (so "32 conns" is
// 32 client connections, one CONNECT tunnel each through a proxy), GET
// /1k in a loop for d after one warm-up request each.
func runLoad(v variant, p path, conns int, keepAlive bool, d time.Duration) loadResult {
	p = v.route(p)
	cache := tls.NewLRUClientSessionCache(4 * conns)
	var (
		wg, ready sync.WaitGroup
		start     = make(chan struct{})
		stopAt    atomic.Int64
		mu        sync.Mutex
		res       loadResult
		resumed   atomic.Int64
		hs        atomic.Int64
	)
	trace := &httptrace.ClientTrace{
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			if err == nil {
				hs.Add(1)
				if cs.DidResume {
					resumed.Add(1)
				}
			}
		},
	}
	ready.Add(conns)
	wg.Add(conns)
	for range conns {
		go func() {
			defer wg.Done()
			tr := v.clientTransport(keepAlive, cache)
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			do := func(ctx context.Context) error { return get1k(ctx, client, p) }
			warmErr := do(context.Background())
			ready.Done()
			<-start
			var lat []time.Duration
			errs := 0
			var firstErr error
			if warmErr != nil {
				errs++
				firstErr = warmErr
			}
			ctx := httptrace.WithClientTrace(context.Background(), trace)
			for time.Now().UnixNano() < stopAt.Load() {
				t0 := time.Now()
				if err := do(ctx); err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	ready.Wait()
	cpu0 := cpuOf(v.pid)
	var conns0 int64
	if v.up != nil {
		conns0 = v.up.conns.Load()
	}
	t0 := time.Now()
	stopAt.Store(t0.Add(d).UnixNano())
	close(start)
	wg.Wait()
	res.elapsed = time.Since(t0)
	res.proxyCPU = cpuOf(v.pid) - cpu0
	if v.up != nil {
		res.upConns = v.up.conns.Load() - conns0
	}
	res.n = len(res.lat)
	slices.Sort(res.lat)
	res.resumed, res.handshake = int(resumed.Load()), int(hs.Load())
	return res
}

// get1k fetches /1k on path p and checks the answer.
func get1k(ctx context.Context, client *http.Client, p path) error {
	req, err := newRequest(ctx, http.MethodGet, p, "/1k", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || n != 1024 {
		return fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
	}
	return nil
}

func cpuOf(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	return procCPU(pid)
}

// sseResult is one stream of events.
type sseResult struct {
	first  time.Duration // request sent → first event complete
	maxGap time.Duration // largest gap between consecutive events
	events int
}

// runSSE reads one /sse stream on a warm keep-alive client.
func runSSE(client *http.Client, p path, events, gapMS int) (sseResult, error) {
	req, err := newRequest(context.Background(), http.MethodGet, p, fmt.Sprintf("/sse?n=%d&ms=%d", events, gapMS), nil)
	if err != nil {
		return sseResult{}, err
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return sseResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sseResult{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var r sseResult
	br := bufio.NewReader(resp.Body)
	last := t0
	for {
		line, err := br.ReadSlice('\n')
		if len(bytes.TrimSpace(line)) == 0 && err == nil {
			now := time.Now()
			if r.events == 0 {
				r.first = now.Sub(t0)
			} else if g := now.Sub(last); g > r.maxGap {
				r.maxGap = g
			}
			last = now
			r.events++
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return r, err
		}
	}
	if r.events != events {
		return r, fmt.Errorf("got %d events, want %d", r.events, events)
	}
	return r, nil
}

// warmClient returns a keep-alive client whose connection is already up.
func warmClient(v variant, p path) (*http.Client, *http.Transport, error) {
	p = v.route(p)
	tr := v.clientTransport(true, nil)
	c := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	req, err := newRequest(context.Background(), http.MethodGet, p, "/1k", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("warm-up: status %d", resp.StatusCode)
	}
	return c, tr, nil
}

// runBulk moves n bytes down (GET /down) or up (POST /up) on a warm
// connection and returns the throughput in bytes per second.
func runBulk(client *http.Client, p path, n int64, up bool) (float64, error) {
	var req *http.Request
	var err error
	if up {
		req, err = newRequest(context.Background(), http.MethodPost, p, "/up", &genReader{n: n})
		if req != nil {
			req.ContentLength = n
			req.Header.Set("Content-Type", "application/octet-stream")
		}
	} else {
		req, err = newRequest(context.Background(), http.MethodGet, p, fmt.Sprintf("/down?n=%d", n), nil)
	}
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	el := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if !up && got != n {
		return 0, fmt.Errorf("got %d of %d bytes", got, n)
	}
	return float64(n) / el.Seconds(), nil
}

// openIdle opens n keep-alive connections through v on p (one request
// each) and returns a function that closes them.
func openIdle(v variant, p path, n int) (func(), error) {
	trs := make([]*http.Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, tr, err := warmClient(v, p)
			trs[i], errs[i] = tr, err
		}()
	}
	wg.Wait()
	closeAll := func() {
		for _, tr := range trs {
			if tr != nil {
				tr.CloseIdleConnections()
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, err
	}
	return closeAll, nil
}
