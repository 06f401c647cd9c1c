package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// TestProbe: `cork probe` exits 0 once anything answers HTTP at the
// proxy address (a refusal counts: the proxy answered), and exits 1 with
// one line naming the address when nothing does within its timeout.
func TestProbe(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(answering.Close)
	// A port nothing listens on: bind, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
		maxTime  time.Duration
	}{
		{"answers", []string{"probe", "--timeout", "5s", answering.URL}, 0, "answered 407", "", 5 * time.Second},
		{"nothing listens", []string{"probe", "--timeout", "600ms", "http://" + dead}, 1, "",
			"cork: probe: proxy " + dead + ": no answer within 600ms: ", 5 * time.Second},
		{"not a URL", []string{"probe", "10.0.0.1:3128"}, 2, "", "want http://HOST:PORT", time.Second},
		{"no URL", []string{"probe"}, 2, "", "want one proxy URL", time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, stderr := runCork(t, nil, tc.args...)
			took := time.Since(start)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tc.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout, tc.wantOut)
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.wantErr)
			}
			if tc.wantCode == 1 && strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is %d lines, want one: %q", strings.Count(stderr, "\n"), stderr)
			}
			if took > tc.maxTime {
				t.Errorf("took %v, want at most %v", took, tc.maxTime)
			}
		})
	}
}

// TestProbeDeny: with --deny, once the proxy answered, an address that
// accepts a TCP connection is exit 3 with one line naming it, a closed
// port is blocked (refused), a name that does not resolve proves nothing
// (exit 1), and an address that does not parse, such as an orchestrator's
// unexpanded variable, is a usage error naming --deny.
func TestProbeDeny(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(answering.Close)
	open := acceptCounter(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dead := closed // nothing answers as a proxy there either

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  string // the whole of stderr
	}{
		{"open", []string{"--deny", open.addr, answering.URL}, 3, []string{"answered 407"},
			"cork: probe: connected to " + open.addr + " directly: the sandbox network does not confine the sandbox\n"},
		{"closed", []string{"--deny", closed, answering.URL}, 0, []string{"answered 407", "deny " + closed + ": blocked (refused)\n"}, ""},
		{"closed and open", []string{"--deny", closed, "--deny", open.addr, answering.URL}, 3,
			[]string{"deny " + closed + ": blocked (refused)\n"},
			"cork: probe: connected to " + open.addr + " directly: the sandbox network does not confine the sandbox\n"},
		{"unresolved name", []string{"--deny", "cork-deny.invalid:443", "--deny-timeout", "1s", answering.URL}, 1, nil,
			"cork: probe: --deny cork-deny.invalid:443: not tested: "},
		{"unexpanded variable", []string{"--deny", "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)", answering.URL}, 2, nil,
			`cork: --deny "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)": port "$(KUBERNETES_SERVICE_PORT)": want 1-65535` + "\n"},
		{"unexpanded host", []string{"--deny", "$(KUBERNETES_SERVICE_HOST):443", answering.URL}, 2, nil,
			`cork: --deny "$(KUBERNETES_SERVICE_HOST):443": host "$(KUBERNETES_SERVICE_HOST)": want an IP address or a host name` + "\n"},
		{"no port", []string{"--deny", "10.0.0.1", answering.URL}, 2, nil, `cork: --deny "10.0.0.1": want HOST:PORT` + "\n"},
		{"port 0", []string{"--deny", "10.0.0.1:0", answering.URL}, 2, nil, `cork: --deny "10.0.0.1:0": port "0": want 1-65535` + "\n"},
		{"bad timeout", []string{"--deny", closed, "--deny-timeout", "0s", answering.URL}, 2, nil, "cork: --deny-timeout: want a positive duration\n"},
		// The proxy first: no answer, no dial.
		{"proxy silent", []string{"--timeout", "300ms", "--deny", open.addr, "http://" + dead}, 1, nil, "cork: probe: proxy " + dead + ": no answer within 300ms: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := open.count()
			code, stdout, stderr := runCork(t, nil, append([]string{"probe"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tc.wantCode, stdout, stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q lacks %q", stdout, w)
				}
			}
			if !strings.HasPrefix(stderr, tc.wantErr) || strings.Count(stderr, "\n") != min(1, len(tc.wantErr)) {
				t.Errorf("stderr = %q, want one line starting %q", stderr, tc.wantErr)
			}
			if tc.name == "proxy silent" && open.count() != before {
				t.Errorf("%s was dialled although the proxy never answered", open.addr)
			}
		})
	}
}

// TestProbeDenyBlackhole: an address whose SYN vanishes (in a network
// namespace of the test's own: see blackholeNetns) is blocked (timeout) once --deny-timeout passes, alongside
// a refused one; the probe runs in that namespace, as a probe pod does
// in the sandbox's place.
func TestProbeDenyBlackhole(t *testing.T) {
	ns := blackholeNetns(t)
	ln := listenInNetns(t, ns)
	answering := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	answering.Listener.Close()
	answering.Listener = ln
	answering.Start()
	t.Cleanup(answering.Close)

	bin := corkBinary(t)
	start := time.Now()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, bin, "probe", "--timeout", "5s",
		"--deny", "198.18.254.2:443", "--deny", "127.0.0.1:1", "--deny-timeout", "700ms", answering.URL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("cork probe in %s took %v:\n%s", ns, took, stdout.String())
	if err != nil {
		t.Fatalf("cork probe in %s: %v (stdout %q, stderr %q)", ns, err, stdout.String(), stderr.String())
	}
	for _, w := range []string{"deny 198.18.254.2:443: blocked (timeout)\n", "deny 127.0.0.1:1: blocked (refused)\n"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("stdout %q lacks %q", stdout.String(), w)
		}
	}
	// The dials run at once: one --deny-timeout, not two.
	if took < 700*time.Millisecond || took > 4*time.Second {
		t.Errorf("took %v, want about --deny-timeout (700ms)", took)
	}
}

// TestProbeUsageExitStatus: the usage documents the exit statuses.
func TestProbeUsageExitStatus(t *testing.T) {
	code, stdout, _ := runCork(t, nil, "probe", "--help")
	for _, w := range []string{"--deny", "--deny-timeout", "Exit status:", "  3  a --deny address accepted"} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("cork probe --help: exit %d, stdout %q lacks %q", code, stdout, w)
		}
	}
}

// counter is a listener that accepts and counts connections.
type counter struct {
	addr string
	mu   sync.Mutex
	n    int
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func acceptCounter(t *testing.T) *counter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &counter{addr: ln.Addr().String()}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.n++
			c.mu.Unlock()
			conn.Close()
		}
	}()
	return c
}

// blackholeNetns creates a network namespace, removed at cleanup, whose
// lo is up and where a SYN to 198.18.254.2 is dropped, never answered.
// It returns its name.
func blackholeNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root to create a network namespace")
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "needs %s", tool)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	ns := "cork-probe-" + hex.EncodeToString(b)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	// No dummy device in every kernel: a veth pair whose far end takes
	// frames for a MAC address it does not have, and so drops them.
	ip("-n", ns, "link", "add", "blackhole0", "type", "veth", "peer", "name", "blackhole1")
	ip("-n", ns, "addr", "add", "198.18.254.1/24", "dev", "blackhole0")
	ip("-n", ns, "link", "set", "blackhole0", "up")
	ip("-n", ns, "link", "set", "blackhole1", "up")
	ip("-n", ns, "neigh", "add", "198.18.254.2", "lladdr", "02:00:00:00:fe:02", "dev", "blackhole0", "nud", "permanent")
	return ns
}

// listenInNetns listens on 127.0.0.1:0 inside the namespace ns: the
// socket is made on a thread moved there, which then ends with its
// goroutine (it is never unlocked), so no other goroutine runs in ns.
func listenInNetns(t *testing.T, ns string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ln
}

// TestProbeSettle: with --settle, an address that connects is dialled
// again until it is blocked (a network policy that applies late counts
// once it applies) or settle passes (one that never applies counts).
func TestProbeSettle(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(answering.Close)

	t.Run("applies late", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		time.AfterFunc(1200*time.Millisecond, func() { ln.Close() })
		code, stdout, stderr := runCork(t, nil, "probe", "--settle", "10s", "--deny", addr, answering.URL)
		if code != 0 || !strings.Contains(stdout, "deny "+addr+": blocked (refused)\n") || !strings.Contains(stdout, "deny: round ") {
			t.Errorf("exit %d, stdout %q, stderr %q: want blocked after more than one round", code, stdout, stderr)
		}
	})
	t.Run("never applies", func(t *testing.T) {
		open := acceptCounter(t)
		start := time.Now()
		code, stdout, stderr := runCork(t, nil, "probe", "--settle", "1500ms", "--deny", open.addr, answering.URL)
		took := time.Since(start)
		if code != 3 || !strings.Contains(stderr, "connected to "+open.addr+" directly") {
			t.Errorf("exit %d, stdout %q, stderr %q: want exit 3", code, stdout, stderr)
		}
		if took < time.Second || open.count() < 2 {
			t.Errorf("gave up after %v and %d dials: want about --settle (1.5s), several rounds", took, open.count())
		}
	})
	t.Run("negative", func(t *testing.T) {
		code, _, stderr := runCork(t, nil, "probe", "--settle", "-1s", "--deny", "127.0.0.1:1", answering.URL)
		if code != 2 || !strings.Contains(stderr, "--settle") {
			t.Errorf("exit %d, stderr %q: want a usage error naming --settle", code, stderr)
		}
	})
}

// TestProbeDenyKubernetesAPI: --deny-kubernetes-api denies the address
// the kubelet puts in KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT,
// joined as HOST:PORT (an IPv6 host in brackets, which --deny
// $(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT) could not give),
// with --deny's semantics; unset or bad variables are a usage error
// naming them.
func TestProbeDenyKubernetesAPI(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(answering.Close)
	open := acceptCounter(t)
	openHost, openPort, _ := net.SplitHostPort(open.addr)
	closedPort := freePort(t, "tcp", "127.0.0.1")
	env := func(host, port string) map[string]string {
		m := map[string]string{}
		if host != "" {
			m["KUBERNETES_SERVICE_HOST"] = host
		}
		if port != "" {
			m["KUBERNETES_SERVICE_PORT"] = port
		}
		return m
	}
	tests := []struct {
		name     string
		env      map[string]string
		wantCode int
		wantOut  string
		wantErr  string // the whole of stderr
	}{
		{"reachable", env(openHost, openPort), 3, "",
			"cork: probe: connected to " + open.addr + " (the kubernetes API server) directly: the sandbox network does not confine the sandbox\n"},
		{"blocked", env("127.0.0.1", closedPort), 0, "deny 127.0.0.1:" + closedPort + " (the kubernetes API server): blocked (refused)\n", ""},
		{"unset", nil, 2, "",
			"cork: --deny-kubernetes-api: KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT: not set (the kubelet sets KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in every pod)\n"},
		{"port unset", env("10.96.0.1", ""), 2, "",
			"cork: --deny-kubernetes-api: KUBERNETES_SERVICE_PORT: not set (the kubelet sets KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in every pod)\n"},
		{"bad both", env("10.96.0.1:443", "https"), 2, "",
			"cork: --deny-kubernetes-api: KUBERNETES_SERVICE_HOST \"10.96.0.1:443\": want an IP address or a host name\n" +
				"cork: --deny-kubernetes-api: KUBERNETES_SERVICE_PORT \"https\": want a port, 1-65535\n"},
		{"port 0", env("10.96.0.1", "0"), 2, "", "cork: --deny-kubernetes-api: KUBERNETES_SERVICE_PORT \"0\": want a port, 1-65535\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCork(t, tc.env, "probe", "--deny-kubernetes-api", answering.URL)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantOut) || stderr != tc.wantErr {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, stdout with %q, stderr %q", code, stdout, stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}

	t.Run("IPv6", func(t *testing.T) {
		ln, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		code, stdout, stderr := runCork(t, env("::1", port), "probe", "--deny-kubernetes-api", answering.URL)
		if want := "cork: probe: connected to [::1]:" + port + " (the kubernetes API server) directly"; code != 3 || !strings.HasPrefix(stderr, want) {
			t.Errorf("exit %d, stdout %q, stderr %q; want 3 and %q", code, stdout, stderr, want)
		}
		closed := freePort(t, "tcp", "::1")
		code, stdout, stderr = runCork(t, env("::1", closed), "probe", "--deny-kubernetes-api", answering.URL)
		if want := "deny [::1]:" + closed + " (the kubernetes API server): blocked (refused)\n"; code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0 and %q", code, stdout, stderr, want)
		}
	})
}

// freePort returns a port of host on which nothing listens for network
// (tcp or udp): bound, noted, closed.
func freePort(t *testing.T, network, host string) string {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr()
		c.Close()
	} else {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr()
		ln.Close()
	}
	_, port, _ := net.SplitHostPort(addr.String())
	return port
}

// dnsServer serves UDP on 127.0.0.1 (or conn, if not nil): with answer,
// it answers each standard A query for probeDNSName with 10.96.0.1 (and
// reports any other datagram with t.Errorf); without, it reads and never
// answers. It returns the address and a count of datagrams read.
func dnsServer(t *testing.T, conn net.PacketConn, answer bool) (string, *atomic.Int32) {
	t.Helper()
	if conn == nil {
		var err error
		if conn, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { conn.Close() })
	var n atomic.Int32
	go func() {
		buf := make([]byte, 1500)
		for {
			m, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			n.Add(1)
			if !answer {
				continue
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:m])
			if err != nil {
				t.Errorf("the probe's query: %v", err)
				continue
			}
			q, err := p.Question()
			if err != nil || h.Response || !h.RecursionDesired || q.Name.String() != probeDNSName || q.Type != dnsmessage.TypeA || q.Class != dnsmessage.ClassINET {
				t.Errorf("the probe's query = %+v %+v (%v), want a recursive A IN query for %s", h, q, err, probeDNSName)
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: true, RecursionAvailable: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: [4]byte{10, 96, 0, 1}})
			reply, err := b.Finish()
			if err != nil {
				t.Errorf("build the answer: %v", err)
				continue
			}
			conn.WriteTo(reply, from)
		}
	}()
	return conn.LocalAddr().String(), &n
}

// TestProbeDeniedResolverUDP: a DNS query over UDP to a resolver that
// answers is exit 3 with one line naming it; one that never answers is
// blocked (no answer) once --deny-timeout passes; a closed port (an ICMP
// port unreachable) is blocked (refused), at once. The resolvers are on
// 127.0.0.1, which --deny-resolvers skips: this calls what it runs for
// each resolver that it does not skip.
func TestProbeDeniedResolverUDP(t *testing.T) {
	answering, asked := dnsServer(t, nil, true)
	silent, silentAsked := dnsServer(t, nil, false)
	closed := "127.0.0.1:" + freePort(t, "udp", "127.0.0.1")
	udp := func(addr string) denyTarget { return denyTarget{addr: addr, flag: "--deny-resolvers", udp: true} }
	hostPort := func(addr string) string {
		host, port, _ := net.SplitHostPort(addr)
		return host + " udp/" + port
	}
	tests := []struct {
		name     string
		target   string
		wantCode int
		wantOut  string
		wantErr  string
		maxTime  time.Duration
	}{
		{"answers", answering, probeExitConnected, "", "cork: probe: the resolver 127.0.0.1 answered over UDP: DNS is a way out of the sandbox\n", time.Second},
		{"never answers", silent, 0, "deny " + hostPort(silent) + ": blocked (no answer)\n", "", 2 * time.Second},
		{"closed port", closed, 0, "deny " + hostPort(closed) + ": blocked (refused)\n", "", 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := probeDenied(t.Context(), []denyTarget{udp(tc.target)}, 700*time.Millisecond, &stdout, &stderr)
			took := time.Since(start)
			if code := exitCode(err, &stderr); code != tc.wantCode || stdout.String() != tc.wantOut || stderr.String() != tc.wantErr {
				t.Errorf("probeDenied(%s) = exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.target, code, stdout.String(), stderr.String(), tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if took > tc.maxTime {
				t.Errorf("took %v, want at most %v", took, tc.maxTime)
			}
		})
	}
	if asked.Load() != 1 || silentAsked.Load() != 1 {
		t.Errorf("queries read: %d by the answering resolver, %d by the silent one; want one each", asked.Load(), silentAsked.Load())
	}
}

// TestProbeDenyResolvers: --deny-resolvers skips a loopback nameserver
// (the backend points the sandbox's resolv.conf at 127.0.0.1 on purpose)
// with a line saying so, says so when there is none, and cannot test
// (exit 1, one line) a resolv.conf it cannot read or a nameserver that is
// not an address; --dns-port is hidden and checked.
func TestProbeDenyResolvers(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(answering.Close)
	dir := t.TempDir()
	conf := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	loopback := conf("loopback", "# the backend's\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:5\n")
	none := conf("none", "search cluster.local\n")
	bad := conf("bad", "nameserver 10.96.0.10\nnameserver dns.example\n")
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  string // the whole of stderr
	}{
		{"loopback skipped", []string{"--resolv-conf", loopback}, 0, []string{
			"resolver 127.0.0.1: skipped (a loopback address: inside the sandbox, not a way out)\n",
			"resolver ::1: skipped (a loopback address: inside the sandbox, not a way out)\n"}, ""},
		{"no nameserver", []string{"--resolv-conf", none}, 0, []string{"resolvers: no nameserver in " + none + "\n"}, ""},
		{"not an address", []string{"--resolv-conf", bad}, 1, nil,
			"cork: probe: --deny-resolvers: " + bad + " line 2: nameserver \"dns.example\": want an IP address\n"},
		{"unreadable", []string{"--resolv-conf", missing}, 1, nil,
			"cork: probe: --deny-resolvers: " + missing + ": no such file or directory\n"},
		{"bad port", []string{"--resolv-conf", loopback, "--dns-port", "0"}, 2, nil, "cork: --dns-port: want 1-65535\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"probe", "--deny-resolvers"}, tc.args...), answering.URL)
			code, stdout, stderr := runCork(t, nil, args...)
			if code != tc.wantCode || stderr != tc.wantErr {
				t.Errorf("exit %d, stderr %q; want %d, %q (stdout %q)", code, stderr, tc.wantCode, tc.wantErr, stdout)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q lacks %q", stdout, w)
				}
			}
			if strings.Contains(stdout, "deny ") {
				t.Errorf("stdout %q: a skipped resolver was tried", stdout)
			}
		})
	}
	code, stdout, _ := runCork(t, nil, "probe", "--help")
	if code != 0 || strings.Contains(stdout, "dns-port") || !strings.Contains(stdout, "-deny-resolvers") || !strings.Contains(stdout, "-deny-kubernetes-api") {
		t.Errorf("cork probe --help: exit %d, stdout %q: want --deny-resolvers and --deny-kubernetes-api, not the hidden --dns-port", code, stdout)
	}
}

// TestProbeDenyResolversNetns: end to end, in a network namespace of the
// test's own where the nameserver 198.18.254.1 is not loopback: a
// resolver that answers over UDP is exit 3 (while its TCP port 53, where
// nothing listens, is blocked); one that never answers is blocked (no
// answer) on both, exit 0.
func TestProbeDenyResolversNetns(t *testing.T) {
	ns := blackholeNetns(t)
	proxyLn := listenInNetns(t, ns)
	answering := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	answering.Listener.Close()
	answering.Listener = proxyLn
	answering.Start()
	t.Cleanup(answering.Close)
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.53\nnameserver 198.18.254.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := corkBinary(t)
	for _, answer := range []bool{true, false} {
		t.Run(fmt.Sprintf("answer=%v", answer), func(t *testing.T) {
			pc := packetInNetns(t, ns, "198.18.254.1:0")
			addr, asked := dnsServer(t, pc, answer)
			_, port, _ := net.SplitHostPort(addr)
			cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, bin, "probe", "--deny-resolvers", "--resolv-conf", conf,
				"--dns-port", port, "--deny-timeout", "700ms", answering.URL)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := cmd.ProcessState.ExitCode()
			t.Logf("cork probe in %s: exit %d (%v)\nstdout:\n%sstderr:\n%s", ns, code, err, stdout.String(), stderr.String())
			wantOut := []string{
				"resolver 127.0.0.53: skipped (a loopback address: inside the sandbox, not a way out)\n",
				"deny 198.18.254.1:" + port + " (a resolver): blocked (refused)\n",
			}
			wantErr := ""
			wantCode := 0
			if answer {
				wantCode, wantErr = 3, "cork: probe: the resolver 198.18.254.1 answered over UDP: DNS is a way out of the sandbox\n"
			} else {
				wantOut = append(wantOut, "deny 198.18.254.1 udp/"+port+": blocked (no answer)\n")
			}
			if code != wantCode || stderr.String() != wantErr {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr.String(), wantCode, wantErr)
			}
			for _, w := range wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			if asked.Load() != 1 {
				t.Errorf("the resolver read %d queries, want 1", asked.Load())
			}
		})
	}
}

// packetInNetns listens for UDP on addr inside the namespace ns, as
// listenInNetns does for TCP.
func packetInNetns(t *testing.T, ns, addr string) net.PacketConn {
	t.Helper()
	type result struct {
		pc  net.PacketConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		pc, err := net.ListenPacket("udp", addr)
		ch <- result{pc, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.pc
}

// TestProbeInterrupted: a probe interrupted (SIGTERM, SIGINT: its
// context ends) exits 1 with one line, not cork run's 130: every path of
// cork probe is one of 0 to 3.
func TestProbeInterrupted(t *testing.T) {
	dead := "127.0.0.1:" + freePort(t, "tcp", "127.0.0.1")
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"probe", "--timeout", "10s", "http://" + dead}, nil, strings.NewReader(""), &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 1 || stderr.String() != "cork: probe: interrupted before every check ended\n" {
		t.Errorf("interrupted cork probe: exit %d, stderr %q; want 1 and one line", code, stderr.String())
	}
}
