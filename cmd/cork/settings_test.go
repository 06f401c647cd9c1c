package main

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cork-sh/cork/launch"
)

// TestLimitSettingsReachTheOptions: good values of the timeout and bound
// settings, from variables or flags, end up in proxyOptions.limits, the
// fields runProxy and launch copy into proxy.Config.
func TestLimitSettingsReachTheOptions(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want launch.ProxyLimits
	}{
		{
			name: "unset: zero, the proxy's defaults",
			env:  map[string]string{},
		},
		{
			name: "every variable",
			env: map[string]string{
				"CORK_RESPONSE_HEADER_TIMEOUT":   "90s",
				"CORK_MAX_RESPONSE_HEADER_BYTES": "65536",
				"CORK_READ_HEADER_TIMEOUT":       "5s",
				"CORK_CLIENT_IDLE_TIMEOUT":       "1m30s",
				"CORK_TUNNEL_IDLE_TIMEOUT":       "2h",
				"CORK_MAX_CONNS_PER_CLIENT":      "64",
			},
			want: launch.ProxyLimits{
				ResponseHeaderTimeout:  90 * time.Second,
				MaxResponseHeaderBytes: 65536,
				ReadHeaderTimeout:      5 * time.Second,
				ClientIdleTimeout:      90 * time.Second,
				TunnelIdleTimeout:      2 * time.Hour,
				MaxConnsPerClient:      64,
			},
		},
		{
			name: "KiB suffix, no bound, trailing newlines",
			env: map[string]string{
				"CORK_MAX_RESPONSE_HEADER_BYTES": "64KiB\n",
				"CORK_MAX_CONNS_PER_CLIENT":      "0\n",
				"CORK_READ_HEADER_TIMEOUT":       "250ms\n",
			},
			want: launch.ProxyLimits{MaxResponseHeaderBytes: 64 << 10, MaxConnsPerClient: -1, ReadHeaderTimeout: 250 * time.Millisecond},
		},
		{
			name: "MiB suffix",
			env:  map[string]string{"CORK_MAX_RESPONSE_HEADER_BYTES": "2MiB"},
			want: launch.ProxyLimits{MaxResponseHeaderBytes: 2 << 20},
		},
		{
			name: "flags override variables",
			env:  map[string]string{"CORK_TUNNEL_IDLE_TIMEOUT": "1h", "CORK_MAX_CONNS_PER_CLIENT": "10"},
			args: []string{"--tunnel-idle-timeout", "30s", "--max-conns-per-client=0", "--max-response-header-bytes", "1MiB", "--response-header-timeout=15m", "--client-idle-timeout", "10s"},
			want: launch.ProxyLimits{TunnelIdleTimeout: 30 * time.Second, MaxConnsPerClient: -1, MaxResponseHeaderBytes: 1 << 20, ResponseHeaderTimeout: 15 * time.Minute, ClientIdleTimeout: 10 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadProxySettings(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			fs := newFlagSet("proxy", "", io.Discard)
			s.registerFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			s.set = setFlags(fs)
			o, err := s.validate(false, io.Discard)
			if err != nil {
				t.Fatalf("validate = %v", err)
			}
			if o.limits != tt.want {
				t.Errorf("limits = %+v, want %+v", o.limits, tt.want)
			}
		})
	}
}

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

// TestParseSize covers the size syntax on its own, edges included.
func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1", 1, false},
		{"1048576", 1 << 20, false},
		{"007", 7, false},
		{"1KiB", 1 << 10, false},
		{"1 MiB", 1 << 20, false},
		{"8796093022207MiB", 8796093022207 << 20, false},
		{"8796093022208MiB", 0, true}, // 2^63: overflows int64
		{strings.Repeat("9", 19), 0, true},
		{"1kib", 0, true},
		{"1KB", 0, true},
		{"1MiBMiB", 0, true},
		{"", 0, true},
		{" ", 0, true},
		{"0x10", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want && !tt.wantErr {
				t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if math.MaxInt64>>20 != 8796093022207 {
		t.Fatal("the overflow cases above assume int64")
	}
}

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
