package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProxyExitOnStdinEOF: with CORK_EXIT_ON_STDIN_EOF=true the proxy
// shuts down cleanly (exit 0, "stopped") when its token stream ends, and
// says why; without it, the end of stdin keeps the proxy serving.
func TestProxyExitOnStdinEOF(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		wantExit bool
	}{
		{"set", []string{"CORK_EXIT_ON_STDIN_EOF=true"}, true},
		{"default", nil, false},
		{"false", []string{"CORK_EXIT_ON_STDIN_EOF=false"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startProcProxy(t, streamPolicy, tc.env...)
			p.sendTokens(t, map[string]string{"api": apiReal})
			p.waitLog(t, "tokens updated")
			if err := p.stdin.Close(); err != nil {
				t.Fatal(err)
			}
			if !tc.wantExit {
				p.waitLog(t, "token stream closed; keeping the current tokens")
				select {
				case <-p.stopped:
					t.Fatalf("the proxy exited when stdin closed; log:\n%s", p.logText())
				case <-time.After(500 * time.Millisecond):
				}
				if code := connectStatus(t, p.addr, "denied.test:443"); code != 403 {
					t.Errorf("after stdin closed: CONNECT = %d, want 403 from a serving proxy", code)
				}
				return
			}
			if m := p.waitLog(t, "token stream ended; shutting down"); !strings.Contains(m["reason"].(string), "stdin closed") {
				t.Errorf("shutdown line = %v, want a reason naming stdin", m)
			}
			if code := p.waitExit(t, 10*time.Second); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			if !strings.Contains(p.logText(), `"stopped"`) {
				t.Errorf("no clean shutdown in the log:\n%s", p.logText())
			}
		})
	}
}

// TestExitOnStdinEOFSetting: a bad value is a usage error naming the
// variable or the flag; the flag alone means true and is `cork proxy`'s
// only (cork run does not take it).
func TestExitOnStdinEOFSetting(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(streamPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCork(t, map[string]string{"CORK_POLICY_FILE": policy, "CORK_EXIT_ON_STDIN_EOF": "sometimes"}, "proxy")
	if code != 2 || stderr != "cork: CORK_EXIT_ON_STDIN_EOF: \"sometimes\": want true or false\n" {
		t.Errorf("bad variable: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCork(t, map[string]string{"CORK_POLICY_FILE": policy}, "proxy", "--exit-on-stdin-eof=maybe")
	if code != 2 || stderr != "cork: --exit-on-stdin-eof: \"maybe\": want true or false\n" {
		t.Errorf("bad flag: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCork(t, nil, "run", "--exit-on-stdin-eof", "--", "true")
	if code != 2 || !strings.Contains(stderr, "flag provided but not defined") {
		t.Errorf("cork run --exit-on-stdin-eof: exit %d, stderr %q; want a usage error", code, stderr)
	}
}

// TestGCUsage: `cork gc` takes no argument, and --help documents
// --dry-run.
func TestGCUsage(t *testing.T) {
	code, _, stderr := runCork(t, nil, "gc", "now")
	if code != 2 || !strings.Contains(stderr, `gc: unexpected argument "now"`) {
		t.Errorf("cork gc now: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ := runCork(t, nil, "gc", "--help")
	if code != 0 || !strings.Contains(stdout, "--dry-run") && !strings.Contains(stdout, "-dry-run") {
		t.Errorf("cork gc --help: exit %d, stdout %q", code, stdout)
	}
}
