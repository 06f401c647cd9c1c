package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
)

// TestAuditOnARealProxyLog: `cork audit` reads the log of a `cork proxy`
// process: the table shows each decision, and --missing prints exactly the
// hosts that were refused as not_allowed, as a policy that parses.
func TestAuditOnARealProxyLog(t *testing.T) {
	sink := startClosingSink(t)
	p := startProcProxy(t, "allow:\n  - one.test\nblock:\n  - host: bad.test\n",
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"CORK_SESSION_ID=audit-test-1",
		"CORK_RESOLVE=one.test:443="+sink)
	for target, want := range map[string]int{
		"one.test:443": 200, "two.test:443": 403, "three.test:8443": 403, "bad.test:443": 403, "TWO.test:443": 403,
	} {
		if got := connectStatus(t, p.addr, target); got != want {
			t.Errorf("CONNECT %s = %d, want %d", target, got, want)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(p.logText(), `"msg":"egress"`) < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	log := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(log, []byte(p.logText()), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCork(t, nil, "audit", log)
	if code != 0 {
		t.Fatalf("cork audit = %d, %q", code, errOut)
	}
	for _, want := range []string{"tunnel    one.test", "block     bad.test", "deny      two.test    443   -     2", "not_allowed  three.test  8443", "5 egress lines; 1 session (audit-test-1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("cork audit output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runCork(t, nil, "audit", "--missing", log)
	if code != 0 {
		t.Fatalf("cork audit --missing = %d, %q", code, errOut)
	}
	pol, err := policy.Parse([]byte(out))
	if err != nil {
		t.Fatalf("policy.Parse(cork audit --missing) = %v\n%s", err, out)
	}
	var hosts []string
	for _, a := range pol.Allow {
		hosts = append(hosts, a.Host)
	}
	if want := []string{"three.test:8443", "two.test"}; !slices.Equal(hosts, want) {
		t.Errorf("cork audit --missing allows %q, want %q:\n%s", hosts, want, out)
	}
}

// startClosingSink listens on loopback and closes every connection at
// once: a tunnel's far end that ends the tunnel, so that its audit line is
// written.
func startClosingSink(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestAuditErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"audit", filepath.Join(dir, "nope.log")}, "cork: audit: " + filepath.Join(dir, "nope.log") + ": no such file\n"},
		{"a directory", []string{"audit", dir}, "cork: audit: " + dir + ": is a directory\n"},
		{"two files", []string{"audit", "a.log", "b.log"}, "cork: audit: unexpected argument \"b.log\" (one log at a time)\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCork(t, nil, tt.args...)
			if code != 2 || errOut != tt.want {
				t.Errorf("cork %v = %d, %q; want 2, %q", tt.args, code, errOut, tt.want)
			}
		})
	}
}
