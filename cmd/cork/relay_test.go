package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/upstreamtest"
)

// relayPolicy routes api.test (slot api) for the relay tests.
const relayPolicy = `slots:
  api: { placeholder: "` + apiPlaceholder + `" }
routes:
  - host: api.test
    slot: api
`

// relayProc is a `cork relay` process; conn is its stdin and stdout as
// one connection (closing it closes stdin).
type relayProc struct {
	cmd    *exec.Cmd
	conn   *stdioConn
	stderr *lockedBuffer
	done   chan error // the process's exit, once
}

// startRelay runs `cork relay --socket socket` as its own process, as
// QEMU does, and kills it at cleanup if it is still running.
func startRelay(t *testing.T, socket string) *relayProc {
	t.Helper()
	r := &relayProc{cmd: exec.Command(corkBinary(t), "relay", "--socket", socket), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	r.cmd.Stderr = r.stderr
	in, err := r.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Our own pipe, not StdoutPipe: Wait closes that one as soon as the
	// relay exits, which can cut a read of what it wrote just before
	// ("file already closed"). This one ends in EOF once the relay is gone.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	r.cmd.Stdout = w
	err = r.cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	r.conn = &stdioConn{Reader: out, WriteCloser: in}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
		}
	})
	return r
}

// wait returns the relay's exit error; it ends t if the relay has not
// exited within limit.
func (r *relayProc) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(limit):
		t.Fatalf("cork relay still running %v later; stderr %q", limit, r.stderr.String())
		return nil
	}
}

// stdioConn is a process's stdout (read) and stdin (write) as a
// net.Conn, for TLS over a relay. Deadlines are not supported: the tests
// bound the relay's life instead.
type stdioConn struct {
	io.Reader
	io.WriteCloser
}

func (*stdioConn) LocalAddr() net.Addr              { return &net.UnixAddr{Net: "unix", Name: "stdio"} }
func (*stdioConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix", Name: "stdio"} }
func (*stdioConn) SetDeadline(time.Time) error      { return nil }
func (*stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (*stdioConn) SetWriteDeadline(time.Time) error { return nil }

// startSocketProxy starts `cork proxy` on a Unix socket in a private
// directory, with a client credential configured (which its socket
// clients need not present), the fake upstream u behind api.test, and
// the real token for slot api. It returns the proxy and its socket path.
func startSocketProxy(t *testing.T, u *upstreamtest.Server) (*corkProxy, string) {
	t.Helper()
	dir := privateDir(t)
	caFile := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(caFile, u.CA().PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "proxy.sock")
	p := launchCorkProxy(t, relayPolicy, true,
		"CORK_LISTEN=unix:"+sock,
		"CORK_CLIENT_AUTH=cork:0123456789abcdefXYZ",
		"CORK_UPSTREAM_CA_FILE="+caFile,
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"CORK_RESOLVE=api.test:443="+u.Addr(),
	)
	if addr := p.waitLog(t, "proxy listening")["addr"]; addr != "unix:"+sock {
		t.Fatalf("cork proxy listens on %v, want unix:%s", addr, sock)
	}
	p.sendTokens(t, map[string]string{"api": apiReal})
	p.waitLog(t, "tokens updated")
	return p, sock
}

// relayRequest sends, through one `cork relay`, a CONNECT to api.test, a
// TLS handshake trusting only the proxy's CA and, once ready returns, a
// GET carrying the placeholder; then it closes the relay's stdin and
// checks that the relay exits 0 having written nothing on stderr. It
// returns the answer's body. It calls no t.Fatal: it may run on any
// goroutine.
func relayRequest(t *testing.T, sock string, caPool *x509.CertPool, path string, ready func()) (string, error) {
	r := startRelay(t, sock)
	defer r.cmd.Process.Kill()
	if _, err := io.WriteString(r.conn, "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n"); err != nil {
		return "", fmt.Errorf("write CONNECT to the relay: %w", err)
	}
	br := bufio.NewReader(r.conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", fmt.Errorf("CONNECT through the relay: %w; stderr %q", err, r.stderr.String())
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("CONNECT through the relay = %d (%s), want 200", resp.StatusCode, resp.Header.Get("X-Cork-Deny-Reason"))
	}
	tc := tls.Client(&stdioConn{Reader: br, WriteCloser: r.conn.WriteCloser}, &tls.Config{RootCAs: caPool, ServerName: "api.test", NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		return "", fmt.Errorf("TLS through the relay: %w", err)
	}
	ready()
	req, _ := http.NewRequest(http.MethodGet, "https://api.test"+path, nil)
	req.Header.Set("Authorization", "Bearer "+apiPlaceholder)
	req.Close = true
	if err := req.Write(tc); err != nil {
		return "", fmt.Errorf("request through the relay: %w", err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		return "", fmt.Errorf("answer through the relay: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s through the relay = %d %q, %v; want 200", path, resp.StatusCode, body, err)
	}
	r.conn.Close() // the client is done: stdin ends
	select {
	case err := <-r.done:
		if err != nil {
			return "", fmt.Errorf("cork relay = %v, want exit 0; stderr %q", err, r.stderr.String())
		}
	case <-time.After(10 * time.Second):
		return "", errors.New("cork relay still running 10s after its stdin ended")
	}
	if s := r.stderr.String(); s != "" {
		return "", fmt.Errorf("cork relay wrote on stderr: %q", s)
	}
	return string(body), nil
}

// TestRelayThroughSocketProxy: `cork relay` carries a CONNECT and a TLS
// session to `cork proxy` on its Unix socket, with no client credential;
// the upstream gets the real token while the client sent the
// placeholder. Several relays run at once, each its own connection.
func TestRelayThroughSocketProxy(t *testing.T) {
	u := upstreamtest.New(t, upstreamtest.Config{Hosts: []string{"api.test"}})
	p, sock := startSocketProxy(t, u)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 || st.Mode().Type() != os.ModeSocket {
		t.Errorf("proxy socket: %v, %v; want a socket of mode 0600", st.Mode(), err)
	}
	pem, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	t.Run("one", func(t *testing.T) {
		body, err := relayRequest(t, sock, pool, "/one", func() {})
		if err != nil || body != "ok from api.test" {
			t.Errorf("relay = %q, %v; want the upstream's answer", body, err)
		}
	})
	t.Run("parallel", func(t *testing.T) {
		// Every relay has its TLS session with the proxy before any sends
		// its request: n connections at once, one per relay.
		const n = 8
		var connected, wg sync.WaitGroup
		connected.Add(n)
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reached := false
				_, err := relayRequest(t, sock, pool, fmt.Sprintf("/parallel/%d", i), func() {
					reached = true
					connected.Done()
					connected.Wait()
				})
				if !reached {
					connected.Done() // failed before: do not hold the others
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
	reqs := u.Requests()
	if len(reqs) != 9 {
		t.Errorf("the upstream saw %d requests, want 9", len(reqs))
	}
	for _, r := range reqs {
		if got := r.Header.Get("Authorization"); got != "Bearer "+apiReal {
			t.Errorf("%s reached the upstream with Authorization %q, want the real token", r.Path, redact(got))
		}
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("%s reached the upstream with Proxy-Authorization", r.Path)
		}
	}
	if log := p.logText(); strings.Contains(log, apiReal) {
		t.Error("the proxy's log holds the real token")
	}
}

// privateDir is a fresh directory of mode 0700, as a proxy socket's must
// be (t.TempDir's follow the umask).
func privateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serveSocket listens on a Unix socket in a private directory and runs
// handle on each connection.
func serveSocket(t *testing.T, handle func(c *net.UnixConn)) string {
	t.Helper()
	sock := filepath.Join(privateDir(t), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c.(*net.UnixConn))
		}
	}()
	return sock
}

// TestRelayHalfClose: the end of stdin half-closes the socket, so a
// server that answers after the client's end of input (an echo) still
// has its answer relayed; then the relay exits 0. And a server that
// closes first ends the relay while stdin stays open.
func TestRelayHalfClose(t *testing.T) {
	t.Run("stdin ends first", func(t *testing.T) {
		sock := serveSocket(t, func(c *net.UnixConn) {
			defer c.Close()
			all, _ := io.ReadAll(c) // until the relay's CloseWrite
			_, _ = c.Write(bytes.ToUpper(all))
		})
		cmd := exec.Command(corkBinary(t), "relay", "--socket", sock)
		cmd.Stdin = strings.NewReader("hello, proxy")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := runWithin(t, cmd, 10*time.Second); err != nil || stdout.String() != "HELLO, PROXY" || stderr.Len() != 0 {
			t.Errorf("cork relay = %v, stdout %q, stderr %q; want exit 0 and the answer only", err, stdout.String(), stderr.String())
		}
	})
	t.Run("server closes first", func(t *testing.T) {
		sock := serveSocket(t, func(c *net.UnixConn) {
			_, _ = io.WriteString(c, "bye")
			c.Close()
		})
		r := startRelay(t, sock) // stdin stays open
		out, err := io.ReadAll(r.conn)
		if err != nil || string(out) != "bye" {
			t.Errorf("relayed %q, %v; want bye", out, err)
		}
		if err := r.wait(t, 5*time.Second); err != nil {
			t.Errorf("cork relay = %v, want exit 0 while its stdin is open", err)
		}
	})
}

// runWithin runs cmd and kills it if it takes longer than limit.
func runWithin(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(limit, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	return cmd.Wait()
}

// TestRelayErrors: a socket that cannot be reached, or no --socket, is
// one line naming --socket (and the path) and exit 2; nothing goes to
// stdout, which QEMU would relay to the guest.
func TestRelayErrors(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.sock")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing", []string{"--socket", missing}, "cork: relay: --socket " + missing + ": connect: no such file or directory\n"},
		{"nothing answers", []string{"--socket", stale}, "cork: relay: --socket " + stale + ": connect: connection refused\n"},
		{"not a socket", []string{"--socket", file}, "cork: relay: --socket " + file + ": connect: connection refused\n"},
		{"no --socket", nil, "cork: relay: --socket: required: the proxy's Unix socket\n"},
		{"an argument", []string{"--socket", stale, "extra"}, "cork: relay: unexpected argument \"extra\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCork(t, nil, append([]string{"relay"}, tt.args...)...)
			if code != 2 || stdout != "" || stderr != tt.want {
				t.Errorf("cork relay %q = %d, stdout %q, stderr %q; want 2, nothing, %q", tt.args, code, stdout, stderr, tt.want)
			}
		})
	}
	t.Run("process", func(t *testing.T) {
		cmd := exec.Command(corkBinary(t), "relay", "--socket", missing)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := runWithin(t, cmd, 10*time.Second)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("cork relay on a missing socket = %v, stdout %q, stderr %q; want exit 2, one line on stderr only", err, stdout.String(), stderr.String())
		}
		// --quiet (QEMU's guestfwd, where stderr is the guest's
		// connection): the same exit status, and not a byte of the host.
		cmd = exec.Command(corkBinary(t), "relay", "--quiet", "--socket", missing)
		stdout.Reset()
		stderr.Reset()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = runWithin(t, cmd, 10*time.Second)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || stdout.Len() != 0 || stderr.Len() != 0 {
			t.Errorf("cork relay --quiet on a missing socket = %v, stdout %q, stderr %q; want exit 2 and nothing written", err, stdout.String(), stderr.String())
		}
	})
}
