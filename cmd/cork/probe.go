package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
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

	"golang.org/x/net/dns/dnsmessage"
)

// Bounds and defaults of `cork probe`.
const (
	DefaultProbeTimeout = 10 * time.Second
	DefaultDenyTimeout  = 3 * time.Second
	DefaultResolvConf   = "/etc/resolv.conf"
	probeAttemptTimeout = 2 * time.Second
	probeRetryDelay     = 100 * time.Millisecond
)

// probeExitConnected is `cork probe`'s exit status when a --deny address
// answered: the sandbox network lets the sandbox out.
const probeExitConnected = 3

// The API server's Service address, which the kubelet puts in the
// environment of every pod (--deny-kubernetes-api).
const (
	kubeServiceHostVar = "KUBERNETES_SERVICE_HOST"
	kubeServicePortVar = "KUBERNETES_SERVICE_PORT"
)

// probeDNSName is what --deny-resolvers asks each resolver for: a name
// every cluster resolver knows, so that one that forwards answers fast.
const probeDNSName = "kubernetes.default.svc.cluster.local."

const probeExitText = `
Exit status:
  0  the proxy answered, and every --deny address was blocked (with
     --deny-kubernetes-api and --deny-resolvers, theirs too)
  1  the proxy did not answer within --timeout; or an address could not
     be tested (a name that did not resolve: give an IP address; a
     --resolv-conf that could not be read); or the probe was interrupted
  2  usage error, one line naming the flag (with --deny-kubernetes-api:
     KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT unset or bad)
  3  a --deny address accepted a TCP connection, or a resolver answered
     over UDP: the sandbox network does not confine the sandbox (3 wins
     over 1)
`

const probeSynopsis = "[--timeout D] [--verbose] [--deny HOST:PORT]... [--deny-kubernetes-api] [--deny-resolvers [--resolv-conf PATH]] [--deny-timeout D] [--settle D] http://HOST:PORT"

// probeHidden are the flags of `cork probe` that its usage leaves out:
// they exist for tests.
var probeHidden = map[string]bool{"dns-port": true}

// runProbe is the hidden `cork probe [--timeout D] [--verbose] [--deny
// HOST:PORT]... [--deny-kubernetes-api] [--deny-resolvers] [--deny-timeout
// D] [--settle D] URL`: it asks the proxy at URL for a URL that no policy
// allows, until the proxy answers with any HTTP response (a 407 without
// credentials, a 403 otherwise) or the timeout passes. Then it tries
// every denied address at once, each bounded by --deny-timeout, and
// prints one line per address that stayed closed (`deny HOST:PORT:
// blocked (timeout)`; refused, unreachable and not permitted are blocked
// too). The denied addresses are each --deny; with --deny-kubernetes-api,
// the API server's Service address from KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT (an IPv6 host too); with --deny-resolvers,
// each nameserver of --resolv-conf but loopback ones, over TCP to port
// 53 and by one DNS query over UDP (`deny A udp/53: blocked (no
// answer)`). A backend runs it from the sidecar image in the sandbox's
// place before the agent starts (launch/docker_probe.go, the kubernetes
// backend's probe pod); it proves that the sandbox network confines, not
// just that the proxy is reachable. It sends no credential.
//
// Exit status (probeExitText): 0 when the proxy answered and every
// denied address was blocked; 1 with one line when the proxy did not
// answer, an address could not be tested (a name that does not resolve
// proves nothing), or the probe was interrupted; 2 for a usage error,
// one line naming the flag or variable; 3 when a denied address answered,
// one line per such address.
func runProbe(ctx context.Context, args []string, environ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	err := probe(ctx, args, environ, stdout, stderr)
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// Not 130 as for cork run: the probe's statuses are 0 to 3.
		return fmt.Errorf("probe: interrupted before every check ended")
	}
	return err
}

func probe(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", probeSynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: cork probe %s\n\nFlags:\n", probeSynopsis)
		printVisibleDefaults(fs, probeHidden)
		fmt.Fprint(fs.Output(), probeExitText)
	}
	timeout := fs.Duration("timeout", DefaultProbeTimeout, "how long the proxy may take to answer")
	verbose := fs.Bool("verbose", false, "print every attempt")
	var deny repeatedFlag
	fs.Var(&deny, "deny", "a HOST:PORT the sandbox must not reach over TCP, dialled once the proxy answered (repeatable)")
	denyAPI := fs.Bool("deny-kubernetes-api", false, "deny the API server's Service address, $"+kubeServiceHostVar+":$"+kubeServicePortVar+" (the kubelet sets both in every pod)")
	denyResolvers := fs.Bool("deny-resolvers", false, "deny each nameserver of --resolv-conf (loopback ones are skipped): over TCP to port 53, and by one DNS query over UDP")
	resolvConf := fs.String("resolv-conf", DefaultResolvConf, "the resolver configuration --deny-resolvers reads")
	dnsPort := fs.Int("dns-port", 53, "the resolvers' port (for tests)")
	denyTimeout := fs.Duration("deny-timeout", DefaultDenyTimeout, "how long each denied address may take to answer; its end counts as blocked")
	settle := fs.Duration("settle", 0, "how long a denied address that answers is tried again before it counts (a network policy\n"+
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
	if *dnsPort < 1 || *dnsPort > 65535 {
		return usageErrorf("--dns-port: want 1-65535")
	}
	var targets []denyTarget
	for _, a := range deny {
		if err := checkHostPort(a); err != nil {
			return usageErrorf("--deny %q: %v", a, err)
		}
		targets = append(targets, denyTarget{addr: a, flag: "--deny"})
	}
	if *denyAPI {
		addr, err := kubernetesAPIAddr(environ)
		if err != nil {
			return &usageError{prefixLines("--deny-kubernetes-api", err)}
		}
		targets = append(targets, denyTarget{addr: addr, flag: "--deny-kubernetes-api", what: "the kubernetes API server"})
	}
	var notes []string // what --deny-resolvers skipped, printed with the results
	if *denyResolvers {
		servers, err := readNameservers(*resolvConf)
		if err != nil {
			return fmt.Errorf("probe: --deny-resolvers: %w", err)
		}
		var rt []denyTarget
		rt, notes = resolverTargets(servers, *dnsPort, *resolvConf)
		targets = append(targets, rt...)
	}
	if err := waitForProxy(ctx, proxyURL, *timeout, *verbose, stdout, stderr); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(stdout, n)
	}
	if len(targets) == 0 {
		return nil
	}
	return probeSettled(ctx, targets, *denyTimeout, *settle, stdout, stderr)
}

// printVisibleDefaults is fs.PrintDefaults without the flags in hidden.
func printVisibleDefaults(fs *flag.FlagSet, hidden map[string]bool) {
	vis := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	vis.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		if !hidden[f.Name] {
			vis.Var(f.Value, f.Name, f.Usage)
			vis.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	vis.PrintDefaults()
}

// denyTarget is one address the sandbox must not reach.
type denyTarget struct {
	addr string // HOST:PORT
	flag string // the flag that asked for it, for "not tested" lines
	what string // what it is, e.g. "the kubernetes API server"; empty: nothing to add
	udp  bool   // a resolver asked one DNS query over UDP, not a TCP dial
}

// name is the target in a result line: "10.0.0.1:443", "10.96.0.1:443
// (the kubernetes API server)", or "10.96.0.10 udp/53".
func (t denyTarget) name() string {
	if t.udp {
		host, port, _ := net.SplitHostPort(t.addr)
		return host + " udp/" + port
	}
	if t.what != "" {
		return t.addr + " (" + t.what + ")"
	}
	return t.addr
}

// kubernetesAPIAddr is the API server's Service address from the
// environment the kubelet gives every pod, or why it cannot be had.
func kubernetesAPIAddr(environ map[string]string) (string, error) {
	host, port := environ[kubeServiceHostVar], environ[kubeServicePortVar]
	var unset []string
	if host == "" {
		unset = append(unset, kubeServiceHostVar)
	}
	if port == "" {
		unset = append(unset, kubeServicePortVar)
	}
	if len(unset) > 0 {
		return "", fmt.Errorf("%s: not set (the kubelet sets %s and %s in every pod)", strings.Join(unset, ", "), kubeServiceHostVar, kubeServicePortVar)
	}
	var errs []error
	if _, err := netip.ParseAddr(host); err != nil && !isHostName(host) {
		errs = append(errs, fmt.Errorf("%s %q: want an IP address or a host name", kubeServiceHostVar, host))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		errs = append(errs, fmt.Errorf("%s %q: want a port, 1-65535", kubeServicePortVar, port))
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return net.JoinHostPort(host, port), nil
}

// readNameservers returns the nameserver addresses of the resolv.conf
// at path, in order. A nameserver line that is not an IP address is an
// error naming its line: the resolver it names could not be tested.
func readNameservers(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, pathError(err)
	}
	var out []netip.Addr
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "nameserver" {
			continue // comments (# or ;) and other options
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s line %d: nameserver without an address", path, i+1)
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: nameserver %q: want an IP address", path, i+1, f[1])
		}
		out = append(out, a)
	}
	return out, nil
}

// resolverTargets is what --deny-resolvers tries for each server, on
// port: a TCP dial and a DNS query over UDP. A loopback (or unspecified)
// server is inside the sandbox, not a way out: skipped, with a note
// saying so. No server at all is a note too.
func resolverTargets(servers []netip.Addr, port int, path string) (targets []denyTarget, notes []string) {
	for _, a := range servers {
		if u := a.Unmap(); u.IsLoopback() || u.IsUnspecified() {
			notes = append(notes, fmt.Sprintf("resolver %s: skipped (a loopback address: inside the sandbox, not a way out)", a))
			continue
		}
		addr := net.JoinHostPort(a.String(), strconv.Itoa(port))
		targets = append(targets,
			denyTarget{addr: addr, flag: "--deny-resolvers", what: "a resolver"},
			denyTarget{addr: addr, flag: "--deny-resolvers", udp: true})
	}
	if len(servers) == 0 {
		notes = append(notes, fmt.Sprintf("resolvers: no nameserver in %s", path))
	}
	return targets, notes
}

// probeSettled runs probeDenied until no address connects or settle
// passes, and prints the last round: a policy that a network applies
// late to a new pod counts once it applies; one it never applies counts
// at the end of settle.
func probeSettled(ctx context.Context, targets []denyTarget, timeout, settle time.Duration, stdout, stderr io.Writer) error {
	start := time.Now()
	for round := 1; ; round++ {
		var out, errOut bytes.Buffer
		err := probeDenied(ctx, targets, timeout, &out, &errOut)
		var ee *exitError
		if errors.As(err, &ee) && ee.code == probeExitConnected && time.Since(start)+probeSettleDelay < settle {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(probeSettleDelay):
			}
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

// probeDenied tries every target at once, each bounded by timeout, and
// reports in the order given: a blocked target on stdout, one that
// answered or could not be tested on stderr. An answer is exit status 3
// (probeExitConnected), winning over an untested target's 1.
func probeDenied(ctx context.Context, targets []denyTarget, timeout time.Duration, stdout, stderr io.Writer) error {
	type outcome struct {
		blocked string // why it did not answer, as wanted; empty: it did not
		err     error  // nil with blocked empty: it answered
	}
	outcomes := make([]outcome, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			var err error
			if t.udp {
				err = dnsAnswered(ctx, t.addr, timeout)
			} else {
				var c net.Conn
				d := net.Dialer{Timeout: timeout}
				if c, err = d.DialContext(ctx, "tcp", t.addr); err == nil {
					c.Close()
				}
			}
			if err == nil {
				return
			}
			b := blockedBy(err)
			if t.udp && b == "timeout" {
				b = "no answer"
			}
			outcomes[i] = outcome{blocked: b, err: err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	code := 0
	for i, o := range outcomes {
		t := targets[i]
		switch {
		case o.blocked != "":
			fmt.Fprintf(stdout, "deny %s: blocked (%s)\n", t.name(), o.blocked)
		case o.err == nil && t.udp:
			host, _, _ := net.SplitHostPort(t.addr)
			printLines(stderr, fmt.Errorf("probe: the resolver %s answered over UDP: DNS is a way out of the sandbox", host))
			code = probeExitConnected
		case o.err == nil:
			printLines(stderr, fmt.Errorf("probe: connected to %s directly: the sandbox network does not confine the sandbox", t.name()))
			code = probeExitConnected
		default:
			printLines(stderr, fmt.Errorf("probe: %s %s: not tested: %v", t.flag, t.name(), unwrapOpError(o.err)))
			code = max(code, 1)
		}
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
}

// dnsAnswered sends one DNS query (A of probeDNSName) over UDP to addr
// and waits up to timeout for any datagram back: nil if one came (the
// resolver answered: DNS is a way out), else why not (a timeout: no
// answer; ECONNREFUSED: an ICMP port unreachable; EPERM: a local
// firewall).
func dnsAnswered(ctx context.Context, addr string, timeout time.Duration) error {
	q, err := dnsQuery()
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(q); err != nil {
		return err
	}
	// Any datagram is an answer, even one that is not DNS: something
	// beyond the sandbox talks back over UDP.
	_, err = c.Read(make([]byte, 512))
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// dnsQuery is a standard query, recursion desired, for the A records of
// probeDNSName.
func dnsQuery() ([]byte, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(rand.Uint32()), RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	q := dnsmessage.Question{Name: dnsmessage.MustNewName(probeDNSName), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	return b.Finish()
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
