package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cork-sh/cork/settings"
)

// lockedBuffer is a strings.Builder safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startReadyProxy runs `cork proxy` in-process with env and CORK_READY_FD=1,
// and returns its stdin, a channel of its stdout lines and its log.
func startReadyProxy(t *testing.T, env map[string]string) (io.WriteCloser, <-chan string, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("routes:\n  - host: api.test\n    slot: api\nslots:\n  api:\n    placeholder: placeholder-api-0000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env["CORK_POLICY_FILE"] = pol
	env["CORK_LISTEN"] = "127.0.0.1:0"
	env["CORK_READY_FD"] = "1"
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var log lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"proxy"}, env, inR, outW, &log) }()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		if err := <-done; err != nil {
			t.Errorf("cork proxy = %v", err)
		}
		outW.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "proxy listening") {
		if time.Now().After(deadline) {
			t.Fatalf("cork proxy did not listen; log:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return inW, lines, &log
}

// TestProxyReadyLine: with CORK_READY_FD, `cork proxy` writes one JSON
// line once it listens and has its first token map, not before; the line
// names its listener, holds no token, and comes once.
func TestProxyReadyLine(t *testing.T) {
	const real = "REALtoken0123456789"
	stdin, lines, log := startReadyProxy(t, map[string]string{})
	select {
	case l := <-lines:
		t.Fatalf("readiness line %q before any token map", l)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := io.WriteString(stdin, `{"api":"`+real+`"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	var line string
	select {
	case line = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatalf("no readiness line after the token map; log:\n%s", log.String())
	}
	if strings.Contains(line, real) {
		t.Fatalf("readiness line %q holds the token", line)
	}
	var rd struct {
		Ready  bool   `json:"ready"`
		Listen string `json:"listen"`
	}
	if err := json.Unmarshal([]byte(line), &rd); err != nil || !rd.Ready {
		t.Fatalf("readiness line %q: want {\"ready\":true,...} (%v)", line, err)
	}
	c, err := net.DialTimeout("tcp", rd.Listen, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the readiness line's listener %q: %v", rd.Listen, err)
	}
	c.Close()
	if _, err := io.WriteString(stdin, `{"api":"`+real+`2"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-lines:
		t.Errorf("second line %q: want one readiness line", l)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestProxyReadyLineTokensFile: with a tokens file the proxy is ready as
// soon as it listens.
func TestProxyReadyLineTokensFile(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"api":"REALtoken0123456789"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, lines, _ := startReadyProxy(t, map[string]string{"CORK_TOKENS_FILE": tokens})
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, `{"ready":true,"listen":"127.0.0.1:`) || strings.Contains(l, "REAL") {
			t.Errorf("readiness line = %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no readiness line")
	}
}

func TestProxyReadyFDErrors(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("allow: [a.test]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A descriptor open read-only (as Go's runtime keeps some) is not a
	// place for the line.
	ro, err := os.Open(policy)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	roFD := strconv.Itoa(int(ro.Fd()))
	for _, tt := range []struct{ env, args, want string }{
		{roFD, "", "cork: CORK_READY_FD: descriptor " + roFD + ": not open for writing\n"},
		{"x", "", `cork: CORK_READY_FD: "x": want a file descriptor number, e.g. 1 for stdout` + "\n"},
		{"", "--ready-fd=-1", `cork: --ready-fd: "-1": want a file descriptor number, e.g. 1 for stdout` + "\n"},
		{"987", "", "cork: CORK_READY_FD: descriptor 987: not open\n"},
	} {
		env := map[string]string{"CORK_POLICY_FILE": policy}
		if tt.env != "" {
			env["CORK_READY_FD"] = tt.env
		}
		args := []string{"proxy"}
		if tt.args != "" {
			args = append(args, tt.args)
		}
		code, _, stderr := runCork(t, env, args...)
		if code != 2 || stderr != tt.want {
			t.Errorf("cork %v with CORK_READY_FD=%q: exit %d, stderr %q; want 2, %q", args, tt.env, code, stderr, tt.want)
		}
	}
}

// The readiness line on stdout or stderr never closes them: the log goes
// on there after it.
func TestReadyWriterKeepsStdio(t *testing.T) {
	for _, fd := range []int{1, 2} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		got, closeReady, err := readyWriter(fd, w, w)
		if err != nil || got != io.Writer(w) {
			t.Fatalf("readyWriter(%d) = %v, %v; want the stream itself", fd, got, err)
		}
		closeReady()
		if _, err := w.Write([]byte("log line\n")); err != nil {
			t.Errorf("fd %d: write after closeReady: %v; the stream was closed", fd, err)
		}
		w.Close()
		r.Close()
	}
}

// TestProxyReadyLineCA: the readiness line carries the CA certificate the
// proxy intercepts with, the one CORK_CA_OUT gets, and never its key: a
// leaf the proxy presents for an intercepted host chains to it.
func TestProxyReadyLineCA(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"api":"REALtoken0123456789"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	caOut := filepath.Join(dir, "ca.pem")
	_, lines, _ := startReadyProxy(t, map[string]string{"CORK_TOKENS_FILE": tokens, "CORK_CA_OUT": caOut})
	var line string
	select {
	case line = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("no readiness line")
	}
	if strings.Contains(line, "PRIVATE") || strings.Contains(line, "REAL") {
		t.Fatalf("readiness line %q holds a key or a token", line)
	}
	var rd settings.Ready
	if err := json.Unmarshal([]byte(line), &rd); err != nil {
		t.Fatalf("readiness line %q: %v", line, err)
	}
	block, rest := pem.Decode([]byte(rd.CA))
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("readiness line's ca %q: want one PEM certificate", rd.CA)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("readiness line's ca: %v (IsCA %v); want a CA certificate", err, ca != nil && ca.IsCA)
	}
	written, err := os.ReadFile(caOut)
	if err != nil {
		t.Fatal(err)
	}
	if rd.CA != string(written) {
		t.Errorf("readiness line's ca differs from CORK_CA_OUT's:\n%s\nwant\n%s", rd.CA, written)
	}

	// The leaf the proxy presents for api.test (an intercepted host)
	// verifies against the line's CA alone.
	c, err := net.DialTimeout("tcp", rd.Listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT api.test:443 = %v, %v; want 200", resp, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tc := tls.Client(c, &tls.Config{ServerName: "api.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS to api.test through the proxy, trusting only the line's CA: %v", err)
	}
}
