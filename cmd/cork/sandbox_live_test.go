//go:build linux

package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/launch/confine"
)

// liveHome is a home outside /tmp (which the sandbox replaces) for one
// test, given to cork as $HOME.
func liveHome(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "cork-live-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// The host changes credential locations while the sandbox runs, the way
// programs write them: renaming a new file over the old one (editors,
// bash's history, credential stores), and creating one that did not
// exist when the sandbox started (a first `codex login` or `gh auth
// login`), also in a home that held no credential location at all.
// Nothing of it may show in the sandbox.
func TestSandboxHostChangesWhileRunning(t *testing.T) {
	requireSandbox(t)
	cork := corkBinary(t)
	write := func(t *testing.T, home, rel, content string) {
		t.Helper()
		p := filepath.Join(home, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		start map[string]string // written before cork starts
		later map[string]string // written (renamed into place) while the command runs
	}{
		{"renamed over and created", map[string]string{".claude.json": "dummy-at-start"},
			map[string]string{".claude.json": "sk-ant-renamed-over-0123456789", ".codex/auth.json": "codex-created-later-0123456789"}},
		{"created in an empty home", nil,
			map[string]string{".codex/auth.json": "codex-first-login-0123456789", ".config/gh/hosts.yml": "gh-first-login-0123456789"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := liveHome(t)
			for rel, v := range tc.start {
				write(t, home, rel, v)
			}
			script := "IFS= read -r go\n"
			for rel := range tc.later {
				script += `cat "$H/` + rel + `"; echo` + "\n"
			}
			script += `ls -aR "$H"; echo END`
			text := runWhileHostChanges(t, cork, home, script, func() {
				for rel, v := range tc.later {
					write(t, home, rel, v)
				}
			})
			for _, m := range []map[string]string{tc.start, tc.later} {
				for rel, v := range m {
					if strings.Contains(text, v) {
						t.Errorf("the sandbox read ~/%s (%q) after the host changed it:\n%s", rel, v, text)
					}
				}
			}
			// The control: the same script outside the sandbox reads them.
			direct := exec.Command("sh", "-c", script)
			direct.Env = []string{"PATH=/usr/bin:/bin", "H=" + home}
			direct.Stdin = strings.NewReader("go\n")
			b, err := direct.Output()
			for rel, v := range tc.later {
				if err != nil || !strings.Contains(string(b), v) {
					t.Errorf("outside the sandbox the script did not read ~/%s (%v):\n%s", rel, err, b)
				}
			}
		})
	}
}

// runWhileHostChanges runs script in the default sandbox with $H the
// home, calls change once the command runs, then lets the script go on
// (it reads a line first) and returns its output.
func runWhileHostChanges(t *testing.T, cork, home, script string, change func()) string {
	t.Helper()
	cmd := exec.Command(cork, "run", "--inject", "api.example.com=LIVE_TOKEN", "--env", "H="+home, "--", "sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "LIVE_TOKEN=live-test-real-token"}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Change the host once the command runs: after the progress line
	// that says so.
	ready := make(chan struct{})
	errText := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "cork: sandbox ready") {
				close(ready)
			}
		}
		errText <- all.String()
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no 'sandbox ready' line within 60s; stderr:\n%s", <-errText)
	}
	change()
	io.WriteString(stdin, "go\n")
	stdin.Close()
	err = cmd.Wait()
	text := out.String()
	if err != nil || !strings.Contains(text, "END") {
		t.Fatalf("cork run: %v; stdout:\n%s\nstderr:\n%s", err, text, <-errText)
	}
	return text
}

// Descriptors cork inherits from whatever started it do not reach the
// command: an open directory of the real home would bypass every hide.
func TestSandboxInheritsNoDescriptors(t *testing.T) {
	requireSandbox(t)
	cork := corkBinary(t)
	home := liveHome(t)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), []byte("inherited-fd-secret-key"), 0o600)
	dir, err := os.Open(home)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// fds 3..7 in cork: the last is the home directory.
	var extra []*os.File
	for range 4 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		extra = append(extra, f)
	}
	extra = append(extra, dir)
	cmd := exec.Command(cork, "run", "--quiet", "--inject", "api.example.com=LIVE_TOKEN", "--",
		"sh", "-c", `for fd in 3 4 5 6 7 8 9; do [ -e /proc/self/fd/$fd ] && echo "open $fd -> $(readlink /proc/self/fd/$fd)"; done; cat /proc/self/fd/7/.ssh/id_ed25519; echo END`)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "LIVE_TOKEN=live-test-real-token"}
	cmd.ExtraFiles = extra
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil || !strings.Contains(text, "END") {
		t.Fatalf("cork run: %v:\n%s", err, text)
	}
	if strings.Contains(text, "open ") || strings.Contains(text, "inherited-fd-secret-key") {
		t.Errorf("the command holds descriptors cork inherited:\n%s", text)
	}
}

// requireSandbox skips (fails under CI) where the kernel refuses the
// local sandbox's namespaces.
func requireSandbox(t *testing.T) {
	t.Helper()
	if err := confine.Probe(); err != nil {
		testenv.Missing(t, "%v", err)
	}
}
