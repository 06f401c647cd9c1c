package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of `cork probe`.
const (
	DefaultProbeTimeout = 10 * time.Second
	DefaultDenyTimeout  = 3 * time.Second
	probeAttemptTimeout = 2 * time.Second
	probeRetryDelay     = 100 * time.Millisecond
)

// probeExitConnected is `cork probe`'s exit status when a --deny address
// answered: the sandbox network lets the sandbox out.
const probeExitConnected = 3

const probeExitText = `
Exit status:
  0  the proxy answered, and every --deny address was blocked
  1  the proxy did not answer within --timeout, or a --deny address could
     not be tested (its name did not resolve: give an IP address)
  2  usage error
  3  a --deny address accepted a TCP connection: the sandbox network does
     not confine the sandbox
`

// runProbe is the hidden `cork probe [--timeout D] [--verbose] [--deny
// HOST:PORT]... [--deny-timeout D] URL`: it asks the proxy at URL for a
// URL that no policy allows, until the proxy answers with any HTTP
// response (a 407 without credentials, a 403 otherwise) or the timeout
// passes. Then it dials each --deny address over TCP (at once, each
// bounded by --deny-timeout) and prints one line per address that stayed
// closed (`deny HOST:PORT: blocked (timeout)`; refused, unreachable and
// not permitted are blocked too). A backend runs it from the sidecar
// image in the sandbox's place before the agent starts
// (launch/docker_probe.go); --deny proves that the sandbox network
// confines, not just that the proxy is reachable. It sends no credential.
//
// Exit status: 0 when the proxy answered and every --deny address was
// blocked; 1 with one line when the proxy did not answer, or a --deny
// address could not be tested (a name that does not resolve proves
// nothing); 2 for a usage error, one line naming the flag; 3 when a
// --deny address accepted a connection, one line per such address.
func runProbe(ctx context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", "[--timeout D] [--verbose] [--deny HOST:PORT]... [--deny-timeout D] [--settle D] http://HOST:PORT", stderr)
	flagUsage := fs.Usage
	fs.Usage = func() {
		flagUsage()
		fmt.Fprint(fs.Output(), probeExitText)
	}
	timeout := fs.Duration("timeout", DefaultProbeTimeout, "how long the proxy may take to answer")
	verbose := fs.Bool("verbose", false, "print every attempt")
	var deny repeatedFlag
	fs.Var(&deny, "deny", "a HOST:PORT the sandbox must not reach over TCP, dialled once the proxy answered (repeatable)")
	denyTimeout := fs.Duration("deny-timeout", DefaultDenyTimeout, "how long each --deny dial may take; its end counts as blocked")
	settle := fs.Duration("settle", 0, "how long a --deny address that connects is dialled again before it counts (a network policy\n"+
		"applies to a new pod within seconds); 0: once")
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
	if *settle < 0 {
		return usageErrorf("--settle: want a duration of 0 or more")
	}
	if *denyTimeout <= 0 {
		return usageErrorf("--deny-timeout: want a positive duration")
	}
	for _, a := range deny {
		if err := checkHostPort(a); err != nil {
			return usageErrorf("--deny %q: %v", a, err)
		}
	}
	if err := waitForProxy(ctx, proxyURL, *timeout, *verbose, stdout, stderr); err != nil {
		return err
	}
	if len(deny) == 0 {
		return nil
	}
	return probeSettled(ctx, deny, *denyTimeout, *settle, stdout, stderr)
}

// probeSettled runs probeDenied until no address connects or settle
// passes, and prints the last round: a policy that a network applies
// late to a new pod counts once it applies; one it never applies counts
// at the end of settle.
func probeSettled(ctx context.Context, addrs []string, timeout, settle time.Duration, stdout, stderr io.Writer) error {
	start := time.Now()
	for round := 1; ; round++ {
		var out, errOut bytes.Buffer
		err := probeDenied(ctx, addrs, timeout, &out, &errOut)
		var ee *exitError
		if errors.As(err, &ee) && ee.code == probeExitConnected && time.Since(start)+probeSettleDelay < settle {
			time.Sleep(probeSettleDelay)
			continue
		}
		if round > 1 {
			fmt.Fprintf(stdout, "deny: round %d, after %v\n", round, time.Since(start).Round(time.Millisecond))
		}
		io.Copy(stdout, &out)
		io.Copy(stderr, &errOut)
		return err
	}
}

// probeSettleDelay is the pause between two rounds of --deny dials.
const probeSettleDelay = 500 * time.Millisecond

// waitForProxy asks the proxy at proxyURL until it answers or timeout
// passes, and prints one line saying what answered and when.
func waitForProxy(ctx context.Context, proxyURL *url.URL, timeout time.Duration, verbose bool, stdout, stderr io.Writer) error {
	client := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true},
		// The proxy's answer is what counts, not where it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	deadline := start.Add(timeout)
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
		if verbose {
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
	return fmt.Errorf("probe: proxy %s: no answer within %v: %v", proxyURL.Host, timeout, last)
}

// probeDenied dials every address at once, each bounded by timeout, and
// reports in the order given: a blocked address on stdout, one that
// connected or could not be tested on stderr. A connection is exit
// status 3 (probeExitConnected); an untested address, 1.
func probeDenied(ctx context.Context, addrs []string, timeout time.Duration, stdout, stderr io.Writer) error {
	type outcome struct {
		blocked string // why the dial failed as wanted; empty: it did not
		err     error  // nil with blocked empty: connected
	}
	outcomes := make([]outcome, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				return
			}
			outcomes[i] = outcome{blocked: blockedBy(err), err: err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	code := 0
	for i, o := range outcomes {
		switch {
		case o.blocked != "":
			fmt.Fprintf(stdout, "deny %s: blocked (%s)\n", addrs[i], o.blocked)
		case o.err == nil:
			printLines(stderr, fmt.Errorf("probe: connected to %s directly: the sandbox network does not confine the sandbox", addrs[i]))
			code = probeExitConnected
		default:
			printLines(stderr, fmt.Errorf("probe: --deny %s: not tested: %v", addrs[i], unwrapOpError(o.err)))
			code = max(code, 1)
		}
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
}

// blockedBy names how a failed dial shows the address is closed to us:
// refused (a RST or an ICMP port unreachable: a REJECT rule), timeout
// (the SYN vanished: a DROP rule), unreachable (no route, or an ICMP
// host/network unreachable) or not permitted (a local firewall). It
// returns "" for anything else, such as a name that did not resolve,
// which proves nothing about the network.
func blockedBy(err error) string {
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr):
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return "not permitted"
	}
	return ""
}

// unwrapOpError drops net.OpError's "dial tcp ADDR:" prefix: the line
// names the address already.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// checkHostPort returns why s is not HOST:PORT with an IP address or a
// host name and a port from 1 to 65535: an orchestrator's unexpanded
// variable ($(KUBERNETES_SERVICE_HOST)) is caught here, not dialled.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want HOST:PORT")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q: want 1-65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !isHostName(host) {
		return fmt.Errorf("host %q: want an IP address or a host name", host)
	}
	return nil
}

// isHostName reports whether s is a DNS name: dot-separated labels of
// letters, digits and inner hyphens, 63 bytes each, 253 in all.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// repeatedFlag is a flag that may be given several times; its values in
// order. The zero value is empty.
type repeatedFlag []string

func (r *repeatedFlag) String() string { return strings.Join(*r, ",") }

func (r *repeatedFlag) Set(s string) error {
	*r = append(*r, s)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
