//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// ttyOutput collects what a pseudo-terminal's master reads.
type ttyOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *ttyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output holds s.
func (o *ttyOutput) waitFor(t *testing.T, s string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(o.String(), s) {
			return
		}
	}
	t.Fatalf("the terminal never showed %q within %v; it showed:\n%s", s, within, o.String())
}

// An interactive program in the default sandbox owns the terminal: it
// reads what the user types, sees the window size, opens /dev/tty, gets
// Ctrl-C from the terminal (and cork does not kill it for that: the
// program decides), cannot push input into the terminal (TIOCSTI), and
// its exit status comes back through cork.
func TestSandboxTerminal(t *testing.T) {
	requireSandbox(t)
	needTools(t, "python3")
	cork := corkBinary(t)
	master, slave := openPTY(t)
	script := `
test -t 0 && test -t 1 && echo "TTY-YES $(stty size)"
echo VIA-DEV-TTY > /dev/tty
python3 -c 'import fcntl, termios, sys
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    print("TIOCSTI-ALLOWED")
except OSError as e:
    print("TIOCSTI-REFUSED", e.errno)'
IFS= read -r line
echo "GOT:$line"
trap 'echo CAUGHT-INT; exit 5' INT
echo READY
while :; do sleep 0.1; done
`
	cmd := exec.Command(cork, "run", "--inject", "api.example.com=TTY_TEST_TOKEN", "--", "sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + t.TempDir(), "TTY_TEST_TOKEN=tty-test-real-token-value", "TERM=dumb"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out ttyOutput
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.mu.Lock()
			out.buf.Write(buf[:n])
			out.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	out.waitFor(t, "TIOCSTI-", 30*time.Second)
	if strings.Contains(out.String(), "TIOCSTI-ALLOWED") {
		t.Errorf("the sandboxed command pushed input into the terminal with TIOCSTI:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "TTY-YES 33 111") {
		t.Errorf("the command did not see a terminal of 33x111:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "VIA-DEV-TTY") {
		t.Errorf("the command could not write to /dev/tty:\n%s", out.String())
	}
	io.WriteString(master, "hello from the user\r")
	out.waitFor(t, "GOT:hello from the user", 10*time.Second)
	out.waitFor(t, "READY", 10*time.Second)
	master.Write([]byte{3}) // Ctrl-C
	out.waitFor(t, "CAUGHT-INT", 10*time.Second)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Errorf("cork exited with %v, want the command's status 5 after its Ctrl-C handler; terminal:\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("cork did not exit after the command's Ctrl-C handler; terminal:\n%s", out.String())
	}
	if strings.Contains(out.String(), "tty-test-real-token-value") {
		t.Errorf("the real token reached the terminal")
	}
}
