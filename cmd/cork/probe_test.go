package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

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
