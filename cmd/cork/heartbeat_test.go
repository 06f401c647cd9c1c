package main

import (
	"strings"
	"testing"
	"time"
)

// TestProxyExitOnStdinIdle: with CORK_EXIT_ON_STDIN_IDLE and the token
// stream on stdin, a proxy whose stdin stays open but silent (a
// Kubernetes pod's, once cork is gone) shuts down cleanly (exit 0,
// "stopped") soon after the timeout, saying why; a heartbeat (a blank
// line) keeps it serving, and is no token map: no warning, and a map
// sent between heartbeats applies.
func TestProxyExitOnStdinIdle(t *testing.T) {
	t.Run("silent", func(t *testing.T) {
		p := startProcProxy(t, streamPolicy, "CORK_EXIT_ON_STDIN_IDLE=300ms")
		p.sendTokens(t, map[string]string{"api": apiReal})
		p.waitLog(t, "tokens updated")
		start := time.Now()
		m := p.waitLog(t, "token stream silent for 300ms; shutting down")
		if r, _ := m["reason"].(string); r != "no byte on stdin for 300ms (exit-on-stdin-idle)" {
			t.Errorf("shutdown line = %v, want a reason naming the idle stdin", m)
		}
		code := p.waitExit(t, 10*time.Second)
		took := time.Since(start)
		if code != 0 {
			t.Errorf("exit status %d, want 0", code)
		}
		if took > time.Second {
			t.Errorf("exited %v after the last byte, want about 300ms", took)
		}
		if !strings.Contains(p.logText(), `"stopped"`) {
			t.Errorf("no clean shutdown in the log:\n%s", p.logText())
		}
	})

	t.Run("heartbeats", func(t *testing.T) {
		p := startProcProxy(t, streamPolicy, "CORK_EXIT_ON_STDIN_IDLE=300ms")
		p.sendTokens(t, map[string]string{"api": apiReal})
		p.waitLog(t, "tokens updated")
		beat := func(d time.Duration) {
			for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				if _, err := p.stdin.Write([]byte("\n")); err != nil {
					t.Fatalf("heartbeat: %v; log:\n%s", err, p.logText())
				}
			}
		}
		beat(500 * time.Millisecond)
		p.sendTokens(t, map[string]string{"api": apiReal + "2"})
		p.waitLog(t, "tokens updated")
		beat(600 * time.Millisecond)
		select {
		case <-p.stopped:
			t.Fatalf("the proxy exited while heartbeats came; log:\n%s", p.logText())
		default:
		}
		if code := connectStatus(t, p.addr, "denied.test:443"); code != 403 {
			t.Errorf("after 1.1s of heartbeats: CONNECT = %d, want 403 from a serving proxy", code)
		}
		log := p.logText()
		if n := strings.Count(log, `"tokens updated"`); n != 2 {
			t.Errorf("%d token maps applied, want 2; log:\n%s", n, log)
		}
		if strings.Contains(log, "token stream:") || strings.Contains(log, `"level":"warn"`) || strings.Contains(log, `"level":"error"`) {
			t.Errorf("heartbeats were taken for something; log:\n%s", log)
		}
		// The heartbeats stop: the proxy ends.
		p.waitLog(t, "token stream silent for 300ms; shutting down")
		if code := p.waitExit(t, 10*time.Second); code != 0 {
			t.Errorf("exit status %d, want 0", code)
		}
	})

	t.Run("tokens from a file", func(t *testing.T) {
		code, _, stderr := runCork(t, map[string]string{"CORK_POLICY_FILE": "/nonexistent", "CORK_EXIT_ON_STDIN_IDLE": "90s", "CORK_TOKENS_FILE": "/nonexistent/t.json"}, "proxy")
		if code != 2 || !strings.Contains(stderr, "cork: CORK_EXIT_ON_STDIN_IDLE: only with CORK_TOKENS_FILE=- ") {
			t.Errorf("exit %d, stderr %q; want 2 and a line naming both variables", code, stderr)
		}
	})
	t.Run("cork run does not take the flag", func(t *testing.T) {
		code, _, stderr := runCork(t, nil, "run", "--exit-on-stdin-idle", "1s", "--", "true")
		if code != 2 || !strings.Contains(stderr, "flag provided but not defined") {
			t.Errorf("cork run --exit-on-stdin-idle: exit %d, stderr %q; want a usage error", code, stderr)
		}
	})
}
