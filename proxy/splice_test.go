package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// A blind tunnel between two TCP connections is spliced: the bytes never
// enter the proxy's user space. strace, attached to this test process,
// counts the splice(2) calls and the bytes they move; a wrapper around the
// connections (as before: counting bytes per read) makes Go fall back to
// read/write and this test fail.
func TestTunnelSplices(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("splice(2) is Linux's")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		testenv.Missing(t, "strace is not installed (Debian package strace)")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "attaching strace to the test process needs root (ptrace)")
	}
	const size = 16 << 20
	got := make(chan int64, 1)
	addr := serveOnce(t, func(c net.Conn) { // reads what the client sends, then sends size bytes back
		n, _ := io.Copy(io.Discard, readerOnly{c})
		got <- n
		_, _ = c.Write(bytes.Repeat([]byte("d"), size))
	})
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"b.example.test:443": addr})
	resp, c, br := tp.connect(t, "b.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d", resp.StatusCode)
	}

	out := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "trace=splice", "-e", "signal=none",
		"-o", out, "-p", strconv.Itoa(os.Getpid()))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("strace: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGINT) // detaches
			_ = cmd.Wait()
		}
	}
	defer stop()
	waitTraced(t)

	if _, err := c.Write(bytes.Repeat([]byte("u"), size)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	down, err := io.Copy(io.Discard, readerOnly{br})
	if err != nil || down != size {
		t.Fatalf("client read %d bytes (%v), want %d", down, err, size)
	}
	if up := <-got; up != size {
		t.Fatalf("upstream read %d bytes, want %d", up, size)
	}
	stop()

	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	calls, moved := spliced(string(raw))
	// Each byte is spliced twice (socket → pipe, pipe → socket), both ways.
	if want := int64(4 * size * 9 / 10); moved < want {
		t.Errorf("splice(2) moved %d bytes in %d calls, want ≥ %d: the tunnel is not spliced", moved, calls, want)
	}
	t.Logf("splice(2): %d calls, %d bytes", calls, moved)
}

var spliceResult = regexp.MustCompile(`splice\(.*\)\s*=\s*(\d+)`)

// spliced sums strace's splice lines that returned a byte count.
func spliced(trace string) (calls int, bytes int64) {
	for _, line := range strings.Split(trace, "\n") {
		m := spliceResult.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		calls++
		bytes += n
	}
	return calls, bytes
}

// waitTraced waits until every thread of this process has a tracer.
func waitTraced(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		all := len(tasks) > 0
		for _, s := range tasks {
			b, err := os.ReadFile(s)
			if err == nil && bytes.Contains(b, []byte("\nTracerPid:\t0\n")) {
				all = false
				break
			}
		}
		if all {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("strace did not attach to every thread within 10 s")
}

// readerOnly hides WriteTo, so the test's own copies read and never splice.
type readerOnly struct{ io.Reader }

// A tunnel whose client reads slowly but steadily is not idle: the relay's
// copies shrink with the reader's pace, so each one ends, and counts as
// progress, well within the reaper's period.
func TestTunnelSlowReaderNotReaped(t *testing.T) {
	const (
		idle  = 300 * time.Millisecond
		size  = 1536 << 10
		step  = 8 << 10
		pause = 10 * time.Millisecond // ≤ 800 KiB/s: a 1 MiB copy would take 1.3 s
	)
	addr := serveOnce(t, func(c net.Conn) { _, _ = c.Write(bytes.Repeat([]byte("d"), size)) })
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"b.example.test:443": addr},
		func(c *Config) { c.TunnelIdleTimeout = idle })
	// Small socket buffers on both ends of the client connection (set
	// before connect and listen, which turns autotuning off): the proxy's
	// writes block on the reader's pace.
	small := func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, step)
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, step)
		})
	}
	pln, err := (&net.ListenConfig{Control: small}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: tp.Proxy}
	go func() { _ = srv.Serve(pln) }()
	defer srv.Close()
	c, err := (&net.Dialer{Control: small}).Dial("tcp", pln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "CONNECT b.example.test:443 HTTP/1.1\r\nHost: b.example.test:443\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	head := "HTTP/1.1 200 Connection established\r\n\r\n"
	buf := make([]byte, step)
	var got int
	start := time.Now()
	for got < len(head)+size {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("after %d bytes in %v: %v (reaped while the client was reading?)", got-len(head), time.Since(start), err)
		}
		time.Sleep(pause)
	}
	if took := time.Since(start); took < 4*idle {
		t.Errorf("the transfer took %v: not slow enough to test the idle timeout %v", took, idle)
	}
}

// tunnelEcho opens a blind tunnel through a proxy to a TCP echo server.
func tunnelEcho(b *testing.B) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	tp := startProxy(b, testPolicy, testTokens(), map[string]string{"b.example.test:443": ln.Addr().String()},
		func(c *Config) { lg := zerolog.New(io.Discard); c.Logger = &lg })
	c, err := net.Dial("tcp", tp.addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "CONNECT b.example.test:443 HTTP/1.1\r\nHost: b.example.test:443\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	head := make([]byte, len("HTTP/1.1 200 Connection established\r\n\r\n"))
	if _, err := io.ReadFull(c, head); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkTunnelRoundTrip: 1 KiB there and back through a blind tunnel.
func BenchmarkTunnelRoundTrip(b *testing.B) {
	c := tunnelEcho(b)
	msg := make([]byte, 1<<10)
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTunnelBulk: 256 KiB writes echoed back through a blind tunnel.
func BenchmarkTunnelBulk(b *testing.B) {
	c := tunnelEcho(b)
	msg := make([]byte, 256<<10)
	done := make(chan error, 1)
	b.SetBytes(int64(len(msg)))
	go func() {
		_, err := io.CopyN(io.Discard, readerOnly{c}, int64(b.N)*int64(len(msg)))
		done <- err
	}()
	for range b.N { // b.N, not b.Loop: the reader needs the count first
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// A tunnel cut by the proxy in the middle of a copy counts every byte the
// client got: the audit line is written when the relay's copies have
// returned, not when the connection was closed.
func TestTunnelCutCountsEveryByte(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn) {
		buf := bytes.Repeat([]byte("d"), 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"b.example.test:443": addr})
	resp, c, br := tp.connect(t, "b.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d", resp.StatusCode)
	}
	head := int64(len("HTTP/1.1 200 Connection established\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.CopyN(io.Discard, readerOnly{br}, 32<<20) // mid-stream: copies of 1 MiB by now
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.Copy(io.Discard, readerOnly{br}) // what was on its way when the proxy cut
	got += rest
	re := regexp.MustCompile(`"decision":"tunnel".*"bytes_down":(\d+)`)
	var line string
	if !eventually(t, func() bool {
		line = grepLines(tp.logs.String(), `"decision":"tunnel"`)
		return re.MatchString(line)
	}) {
		t.Fatalf("no tunnel audit line: %q", line)
	}
	down, _ := strconv.ParseInt(re.FindStringSubmatch(line)[1], 10, 64)
	if down < got+head {
		t.Errorf("bytes_down %d, but the client read %d bytes after the %d-byte CONNECT answer", down, got, head)
	}
}

// Closing the proxy while a tunnel's dial runs cancels the dial: the relay
// does not outlive Close by the dial timeout.
func TestTunnelDialCancelledByClose(t *testing.T) {
	tp := startProxy(t, testPolicy, testTokens(), nil, func(c *Config) { c.DialTimeout = 30 * time.Second })
	started := make(chan struct{}, 1)
	tp.dialer.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		started <- struct{}{}
		<-ctx.Done() // a resolver that never answers
		return nil, ctx.Err()
	}
	c, err := net.Dial("tcp", tp.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "CONNECT b.example.test:443 HTTP/1.1\r\nHost: b.example.test:443\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel's dial did not start")
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if !eventually(t, func() bool { return !goroutinesWith("proxy.(*Proxy).serveTunnel") }) {
		t.Error("the tunnel's dial still runs after Close")
	}
}
