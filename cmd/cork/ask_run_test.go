package main

import (
	"github.com/cork-sh/cork/internal/testing/testenv"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestRunAskLocal runs the cork binary with the pseudo-terminal as its
// controlling terminal: curl in the local sandbox asks for a host nobody
// listed, the request is held until "a" is typed, then completes against
// the fake upstream; the policy file gets the entry, and a second run
// without --ask passes with it.
func TestRunAskLocal(t *testing.T) {
	requireSandbox(t)
	curl := requireTool(t, "curl")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello from " + r.Host))
	}))
	t.Cleanup(up.Close)
	pf := writeAskPolicy(t, "# the team's policy\nallow:\n  - example.org # docs\n")
	env := []string{
		"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"),
		"CORK_RESOLVE=new.ask.test:80=" + up.Listener.Addr().String(),
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
	}
	script := shq(curl) + " -sS --max-time 20 http://new.ask.test/x; echo; echo DONE"
	cmd := exec.Command(corkBinary(t), "run", "--quiet", "--policy", pf, "--ask", "--", "/bin/sh", "-c", script)
	cmd.Env = env
	ptmx, err := pty.Start(cmd) // the pty is cork's controlling terminal
	if err != nil {
		testenv.Missing(t, "no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close(); _ = cmd.Process.Kill() })
	tm := readTerm(ptmx)
	tm.waitFor(t, "cork: agent wants GET new.ask.test:80/x — [o]nce / [s]ession / [a]lways / [d]eny? ", 1)
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(tm.output(), "hello from") {
		t.Fatalf("the request was not held: %q", tm.output())
	}
	tm.typ(t, "a\n")
	tm.waitFor(t, "DONE", 1)
	if err := cmd.Wait(); err != nil {
		t.Errorf("cork run: %v; terminal:\n%s", err, tm.output())
	}
	if !strings.Contains(tm.output(), "hello from new.ask.test") {
		t.Errorf("the held request did not complete; terminal:\n%s", tm.output())
	}
	data, _ := os.ReadFile(pf)
	if s := string(data); !strings.Contains(s, `"new.ask.test:80"`) || !strings.Contains(s, "# the team's policy") || !strings.Contains(s, "# docs") {
		t.Errorf("policy file after always:\n%s", s)
	}

	// The next run needs no prompt: no --ask, no terminal.
	second := exec.Command(corkBinary(t), "run", "--quiet", "--policy", pf, "--", "/bin/sh", "-c", script)
	second.Env = env
	out, err := second.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from new.ask.test") {
		t.Errorf("second run: %v\n%s", err, out)
	}
}

// TestRunAskNoTerminal: --ask without a terminal, descriptor or URL
// fails at start with one line, exit 2.
func TestRunAskNoTerminal(t *testing.T) {
	cmd := exec.Command(corkBinary(t), "run", "--quiet", "--allow", "example.org", "--ask", "--", "/bin/true")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = noCtty()
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "no terminal to ask on") {
		t.Errorf("cork run --ask without a terminal: %v, output %q; want exit 2 and one line", err, out)
	}
}

// TestRunAskDocker: the docker backend's proxy runs apart from cork.
func TestRunAskDocker(t *testing.T) {
	code, _, errOut := runCork(t, map[string]string{"HOME": t.TempDir(), "PATH": os.Getenv("PATH")},
		"run", "--backend", "docker", "--allow", "example.org", "--ask-url", "http://127.0.0.1:1/", "--", "true")
	if code != 2 || !strings.Contains(errOut, "--ask: only for --backend local, smolvm or qemu") {
		t.Errorf("cork run --backend docker --ask = %d %q, want 2 and a usage line", code, errOut)
	}
}

// noCtty starts a process in a new session: it has no controlling
// terminal.
func noCtty() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
