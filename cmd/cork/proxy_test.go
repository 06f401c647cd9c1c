package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// socketEnv is the environment of a `cork proxy` on a Unix socket in a
// fresh private directory; it returns the environment and the socket.
func socketEnv(t *testing.T) (map[string]string, string) {
	t.Helper()
	dir := privateDir(t)
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("allow: [a.test]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "proxy.sock")
	return map[string]string{"CORK_POLICY_FILE": pol, "CORK_LISTEN": "unix:" + sock}, sock
}

// TestProxyUnixSocket: on CORK_LISTEN=unix:PATH, `cork proxy` serves on a
// socket of mode 0600, names it unix:PATH in its readiness line, and
// removes it when it shuts down.
func TestProxyUnixSocket(t *testing.T) {
	env, sock := socketEnv(t)
	env["CORK_READY_FD"] = "1"
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var log lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"proxy"}, env, inR, outW, &log) }()
	defer inW.Close()
	if _, err := io.WriteString(inW, `{"a":"REALtoken0123456789"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Scan()
		line <- sc.Text()
		io.Copy(io.Discard, outR)
	}()
	select {
	case l := <-line:
		var rd struct {
			Ready  bool   `json:"ready"`
			Listen string `json:"listen"`
		}
		if err := json.Unmarshal([]byte(l), &rd); err != nil || !rd.Ready || rd.Listen != "unix:"+sock {
			t.Errorf("readiness line %q, want ready on unix:%s", l, sock)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no readiness line; log:\n%s", log.String())
	}
	st, err := os.Lstat(sock)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, %v; want a socket of mode 0600", sock, st.Mode(), err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the proxy's socket: %v", err)
	}
	c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("cork proxy = %v, want a clean shutdown", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("cork proxy did not stop")
	}
	outW.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after shutdown: %v, want it removed", err)
	}
	if !strings.Contains(log.String(), `"addr":"unix:`+sock+`"`) {
		t.Errorf("log does not name unix:%s:\n%s", sock, log.String())
	}
}

// TestProxyUnixSocketLeftBehind: SIGTERM removes the socket; SIGKILL
// leaves it, and the next proxy replaces it because nothing answers on
// it; a socket something answers on is refused and left alone.
func TestProxyUnixSocketLeftBehind(t *testing.T) {
	env, sock := socketEnv(t)
	start := func() *corkProxy {
		t.Helper()
		p := launchCorkProxy(t, "allow: [a.test]\n", true, "CORK_LISTEN="+env["CORK_LISTEN"], "CORK_TOKENS_FILE=-")
		if addr := p.waitLog(t, "proxy listening")["addr"]; addr != "unix:"+sock {
			t.Fatalf("proxy listening on %v, want unix:%s", addr, sock)
		}
		return p
	}
	p := start()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.stopped
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after SIGTERM: %v, want it removed", err)
	}

	p = start()
	p.kill() // SIGKILL
	if st, err := os.Lstat(sock); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket after SIGKILL: %v; want it left behind (this test needs a stale socket)", err)
	}
	p = start() // replaces the stale socket
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the new proxy: %v", err)
	}
	c.Close()

	// The live proxy's socket: refused, and still served.
	code, stdout, stderr := runCork(t, env, "proxy")
	if want := "cork: listen unix:" + sock + ": in use: something answers on this socket\n"; code != 2 || stdout != "" || stderr != want {
		t.Errorf("cork proxy on a live socket = %d, %q, %q; want 2, %q", code, stdout, stderr, want)
	}
	if c, err := net.Dial("unix", sock); err != nil {
		t.Errorf("the first proxy's socket after a refused second: %v", err)
	} else {
		c.Close()
	}
	p.kill()
}

// TestProxyUnixSocketListenError: when the proxy cannot serve after its
// socket is made (here: the admin listener's address is taken), it exits
// 2 and removes the socket.
func TestProxyUnixSocketListenError(t *testing.T) {
	env, sock := socketEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env["CORK_ADMIN_LISTEN"] = taken.Addr().String()
	env["CORK_TOKENS_FILE"] = "-"
	code, _, stderr := runCork(t, env, "proxy")
	if code != 2 || !strings.HasPrefix(stderr, "cork: listen "+taken.Addr().String()+": ") {
		t.Errorf("cork proxy with a taken admin address = %d, %q; want 2 and the listen error", code, stderr)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after the listen error: %v, want it removed", err)
	}
}
