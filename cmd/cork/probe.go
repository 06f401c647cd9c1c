package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Bounds of `cork probe`.
const (
	DefaultProbeTimeout = 10 * time.Second
	probeAttemptTimeout = 2 * time.Second
	probeRetryDelay     = 100 * time.Millisecond
)

// runProbe is the hidden `cork probe [--timeout D] [--verbose] URL`: it
// asks the proxy at URL for a URL that no policy allows, until the proxy
// answers with any HTTP response (a 407 without credentials, a 403
// otherwise) or the timeout passes. Exit 0 with one line saying what
// answered and when; exit 1 with one line saying what did not. The docker
// backend runs it from the sidecar image on the sandbox network, before
// the agent starts (launch/docker_probe.go). It sends no credential.
func runProbe(ctx context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", "[--timeout D] [--verbose] http://HOST:PORT", stderr)
	timeout := fs.Duration("timeout", DefaultProbeTimeout, "how long the proxy may take to answer")
	verbose := fs.Bool("verbose", false, "print every attempt")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("probe: want one proxy URL, e.g. http://10.0.0.2:3128")
	}
	proxyURL, err := url.Parse(fs.Arg(0))
	if err != nil || proxyURL.Scheme != "http" || proxyURL.Host == "" {
		return usageErrorf("probe: %q: want http://HOST:PORT", fs.Arg(0))
	}
	if *timeout <= 0 {
		return usageErrorf("--timeout: want a positive duration")
	}
	client := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true},
		// The proxy's answer is what counts, not where it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	var last error
	for n := 1; ; n++ {
		actx, cancel := context.WithDeadline(ctx, minTime(deadline, time.Now().Add(probeAttemptTimeout)))
		req, _ := http.NewRequestWithContext(actx, http.MethodGet, "http://cork-probe.invalid/", nil)
		t0 := time.Now()
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			fmt.Fprintf(stdout, "proxy %s answered %d after %v (attempt %d)\n", proxyURL.Host, resp.StatusCode, time.Since(start).Round(time.Millisecond), n)
			return nil
		}
		last = err
		if *verbose {
			fmt.Fprintf(stderr, "attempt %d at +%v: %v after %v\n", n, t0.Sub(start).Round(time.Millisecond), err, time.Since(t0).Round(time.Millisecond))
			if host := proxyURL.Hostname(); net.ParseIP(host) == nil {
				// By name: is it the resolver that does not answer?
				lctx, cancel := context.WithTimeout(ctx, probeAttemptTimeout)
				t1 := time.Now()
				addrs, lerr := net.DefaultResolver.LookupHost(lctx, host)
				cancel()
				fmt.Fprintf(stderr, "  lookup %s: %v %v after %v\n", host, addrs, lerr, time.Since(t1).Round(time.Millisecond))
			}
		}
		if ctx.Err() != nil || time.Now().Add(probeRetryDelay).After(deadline) {
			break
		}
		time.Sleep(probeRetryDelay)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(last, &ue) {
		last = ue.Err
	}
	return fmt.Errorf("probe: proxy %s: no answer within %v: %v", proxyURL.Host, *timeout, last)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
