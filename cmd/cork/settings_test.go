package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLimitSettingErrors: each bad value is one line naming its variable
// (or its flag when given as one), and all are reported at once.
func TestLimitSettingErrors(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("allow:\n  - example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const (
		wantDuration = "want a duration such as 30s, 2m or 1h30m"
		wantPositive = "want a positive duration such as 30s"
		wantSize     = "want a size in bytes, or with a KiB or MiB suffix, e.g. 65536 or 64KiB"
		wantConns    = "want a number of connections, or 0 for no bound"
	)
	tests := []struct {
		variable, value, want string
	}{
		{"CORK_RESPONSE_HEADER_TIMEOUT", "ten minutes", wantDuration},
		{"CORK_RESPONSE_HEADER_TIMEOUT", "600", wantDuration},
		{"CORK_RESPONSE_HEADER_TIMEOUT", "0", wantPositive},
		{"CORK_RESPONSE_HEADER_TIMEOUT", "-5s", wantPositive},
		{"CORK_READ_HEADER_TIMEOUT", "30x", wantDuration},
		{"CORK_READ_HEADER_TIMEOUT", "0s", wantPositive},
		{"CORK_CLIENT_IDLE_TIMEOUT", "2 minutes", wantDuration},
		{"CORK_CLIENT_IDLE_TIMEOUT", "-1m", wantPositive},
		{"CORK_TUNNEL_IDLE_TIMEOUT", "1d", wantDuration},
		{"CORK_TUNNEL_IDLE_TIMEOUT", "0h", wantPositive},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "1MB", wantSize},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "1.5MiB", wantSize},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "-1", wantSize},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "+64", wantSize},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "MiB", wantSize},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "0", "want a positive size"},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "0KiB", "want a positive size"},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "99999999999999999999", wantSize},
		{"CORK_MAX_RESPONSE_HEADER_BYTES", "9007199254740992MiB", "too large"},
		{"CORK_MAX_CONNS_PER_CLIENT", "-1", wantConns},
		{"CORK_MAX_CONNS_PER_CLIENT", "many", wantConns},
		{"CORK_MAX_CONNS_PER_CLIENT", "1.5", wantConns},
	}
	for _, tt := range tests {
		t.Run(tt.variable+"="+tt.value, func(t *testing.T) {
			env := map[string]string{"CORK_POLICY_FILE": policy, tt.variable: tt.value}
			code, _, stderr := runCork(t, env, "proxy")
			want := "cork: " + tt.variable + ": " + quote(tt.value) + ": " + tt.want + "\n"
			if code != 2 || stderr != want {
				t.Errorf("cork proxy with %s=%q: exit %d, stderr %q; want 2, %q", tt.variable, tt.value, code, stderr, want)
			}
		})
	}

	t.Run("all at once, flags named as flags", func(t *testing.T) {
		env := map[string]string{
			"CORK_POLICY_FILE":               policy,
			"CORK_RESPONSE_HEADER_TIMEOUT":   "0",
			"CORK_MAX_RESPONSE_HEADER_BYTES": "big",
			"CORK_READ_HEADER_TIMEOUT":       "soon",
			"CORK_CLIENT_IDLE_TIMEOUT":       "-1s",
			"CORK_TUNNEL_IDLE_TIMEOUT":       "forever",
		}
		code, _, stderr := runCork(t, env, "proxy", "--max-conns-per-client", "-3")
		want := []string{
			`cork: CORK_RESPONSE_HEADER_TIMEOUT: "0": ` + wantPositive,
			`cork: CORK_READ_HEADER_TIMEOUT: "soon": ` + wantDuration,
			`cork: CORK_CLIENT_IDLE_TIMEOUT: "-1s": ` + wantPositive,
			`cork: CORK_TUNNEL_IDLE_TIMEOUT: "forever": ` + wantDuration,
			`cork: CORK_MAX_RESPONSE_HEADER_BYTES: "big": ` + wantSize,
			`cork: --max-conns-per-client: "-3": ` + wantConns,
		}
		if code != 2 || stderr != strings.Join(want, "\n")+"\n" {
			t.Errorf("exit %d, stderr:\n%s\nwant 2 and:\n%s", code, stderr, strings.Join(want, "\n"))
		}
	})
}

// TestRunParsesLimitSettings: `cork run` takes the same settings, with
// the same errors, before it starts anything.
func TestRunParsesLimitSettings(t *testing.T) {
	env := map[string]string{"CORK_TUNNEL_IDLE_TIMEOUT": "later", "EXAMPLE_TOKEN": "REALexample"}
	code, _, stderr := runCork(t, env, "run", "--inject", "api.example.com=EXAMPLE_TOKEN", "--max-conns-per-client", "-1", "--", "true")
	want := `cork: CORK_TUNNEL_IDLE_TIMEOUT: "later": want a duration such as 30s, 2m or 1h30m` + "\n" +
		`cork: --max-conns-per-client: "-1": want a number of connections, or 0 for no bound` + "\n"
	if code != 2 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
}

func quote(s string) string { return `"` + s + `"` }

// TestPolicyFileFIFOIsRefused: a FIFO as the policy file is refused at
// start instead of waiting for a writer.
func TestPolicyFileFIFOIsRefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "policy.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var code int
	var stderr string
	go func() {
		defer close(done)
		code, _, stderr = runCork(t, map[string]string{"CORK_POLICY_FILE": fifo}, "proxy")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close() // release the blocked open so the test can end
		}
		<-done
		t.Fatal("cork proxy waited on a FIFO policy file")
	}
	want := "cork: CORK_POLICY_FILE: " + fifo + ": not a regular file\n"
	if code != 2 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
}
