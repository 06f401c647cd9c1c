package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCanary: `cork canary` prints where it listens, greets every
// connection and closes it, and returns nil (exit 0) when its context
// ends.
func TestCanary(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"canary", "--listen", "127.0.0.1:0"}, nil, strings.NewReader(""), outW, &stderr)
		outW.Close()
	}()
	addr := readListening(t, bufio.NewReader(outR))
	for i := range 3 {
		if got := readCanary(t, addr); got != canaryGreeting {
			t.Errorf("connection %d read %q, want %q then EOF", i, got, canaryGreeting)
		}
	}
	cancel()
	select {
	case err := <-done:
		if code := exitCode(err, &stderr); code != 0 || stderr.String() != "" {
			t.Errorf("cork canary after cancel: exit %d, stderr %q; want 0, nothing", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cork canary did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after cork canary returned", addr)
	}
}

// TestCanarySignals: the binary exits 0 on SIGTERM and on SIGINT.
func TestCanarySignals(t *testing.T) {
	bin := corkBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "canary", "--listen", "127.0.0.1:0")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			addr := readListening(t, bufio.NewReader(out))
			if got := readCanary(t, addr); got != canaryGreeting {
				t.Errorf("read %q, want %q", got, canaryGreeting)
			}
			cmd.Process.Signal(sig)
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			select {
			case err := <-waited:
				if err != nil || stderr.String() != "" {
					t.Errorf("cork canary after %v: %v, stderr %q; want exit 0, nothing", sig, err, stderr.String())
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("cork canary did not exit on %v", sig)
			}
		})
	}
}

func TestCanaryUsage(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "cork: canary: --listen: required: HOST:PORT\n"},
		{[]string{"--listen", "nope"}, "cork: canary: --listen nope: address nope: missing port in address\n"},
		{[]string{"--listen", busy.Addr().String()}, "cork: canary: --listen " + busy.Addr().String() + ": bind: address already in use\n"},
		{[]string{"--listen", "127.0.0.1:0", "extra"}, "cork: canary: unexpected argument \"extra\"\n"},
	} {
		code, stdout, stderr := runCork(t, nil, append([]string{"canary"}, tt.args...)...)
		if code != 2 || stdout != "" || stderr != tt.want {
			t.Errorf("cork canary %q: exit %d, stdout %q, stderr %q; want 2, nothing, %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

// The hidden commands stay out of `cork --help`.
func TestHiddenCommands(t *testing.T) {
	_, stdout, _ := runCork(t, nil, "--help")
	for _, name := range []string{"canary", "seed-home", "probe"} {
		if strings.Contains(stdout, name) {
			t.Errorf("cork --help mentions the hidden %q:\n%s", name, stdout)
		}
	}
}

// readListening reads `cork canary`'s first line and returns its address.
func readListening(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		l, _ := r.ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok || !strings.HasSuffix(addr, "\n") {
			t.Fatalf("cork canary's first line = %q, want \"listening ADDR\\n\"", l)
		}
		return strings.TrimSuffix(addr, "\n")
	case <-time.After(10 * time.Second):
		t.Fatal("cork canary did not say it listens")
		return ""
	}
}

// readCanary connects to addr and returns all it reads until EOF.
func readCanary(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("read from %s: %v", addr, err)
	}
	return string(b)
}
