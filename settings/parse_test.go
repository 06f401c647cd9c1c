package settings

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLimitSettingsReachTheOptions: good values of the timeout and bound
// settings, from variables or flags, end up in Proxy.Limits, which Config
// copies into proxy.Config.
func TestLimitSettingsReachTheOptions(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want Limits
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
			want: Limits{
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
			want: Limits{MaxResponseHeaderBytes: 64 << 10, MaxConnsPerClient: -1, ReadHeaderTimeout: 250 * time.Millisecond},
		},
		{
			name: "MiB suffix",
			env:  map[string]string{"CORK_MAX_RESPONSE_HEADER_BYTES": "2MiB"},
			want: Limits{MaxResponseHeaderBytes: 2 << 20},
		},
		{
			name: "flags override variables",
			env:  map[string]string{"CORK_TUNNEL_IDLE_TIMEOUT": "1h", "CORK_MAX_CONNS_PER_CLIENT": "10"},
			args: []string{"--tunnel-idle-timeout", "30s", "--max-conns-per-client=0", "--max-response-header-bytes", "1MiB", "--response-header-timeout=15m", "--client-idle-timeout", "10s"},
			want: Limits{TunnelIdleTimeout: 30 * time.Second, MaxConnsPerClient: -1, MaxResponseHeaderBytes: 1 << 20, ResponseHeaderTimeout: 15 * time.Minute, ClientIdleTimeout: 10 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
			s.RegisterFlags(fs, ForProxy)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			s.FlagsParsed(fs)
			o, err := s.Parse(ForRun)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if o.Limits != tt.want {
				t.Errorf("limits = %+v, want %+v", o.Limits, tt.want)
			}
		})
	}
}

func TestTrailingNewlines(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte("{\"a\":\"b\"}\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(map[string]string{
		"CORK_LISTEN":        "127.0.0.1:0\n",
		"CORK_POLICY_FILE":   filepath.Join(dir, "p.yaml") + "\n",
		"CORK_TOKENS_FILE":   tokens + "\n",
		"CORK_ALLOW_PRIVATE": "127.0.0.0/8\n",
		"CORK_LOG_LEVEL":     "debug\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("allow: [a.test]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Parse(ForProxy); err != nil {
		t.Errorf("Parse with trailing newlines = %v, want nil", err)
	}
}

func TestClientAuthSettings(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "auth")
	if err := os.WriteFile(good, []byte("cork:0123456789abcdefXYZ\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("cork:0123456789abcdefXYZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("cork:abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"file", map[string]string{"CORK_CLIENT_AUTH_FILE": good}, "cork:0123456789abcdefXYZ", ""},
		{"variable", map[string]string{"CORK_CLIENT_AUTH": "u:0123456789abcdefXYZ"}, "u:0123456789abcdefXYZ", ""},
		{"both", map[string]string{"CORK_CLIENT_AUTH_FILE": good, "CORK_CLIENT_AUTH": "u:0123456789abcdefXYZ"}, "", "CORK_CLIENT_AUTH_FILE: set only one of it and CORK_CLIENT_AUTH"},
		{"file readable by others", map[string]string{"CORK_CLIENT_AUTH_FILE": open}, "", "lets others read it"},
		{"short password", map[string]string{"CORK_CLIENT_AUTH_FILE": short}, "", "password shorter than 16 characters"},
		{"no user", map[string]string{"CORK_CLIENT_AUTH": ":0123456789abcdefXYZ"}, "", "CORK_CLIENT_AUTH: want user:password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			o, err := s.Parse(ForRun)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Parse = %v, want an error containing %q", err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
					t.Errorf("the error quotes the credential: %v", err)
				}
			case err != nil:
				t.Errorf("Parse = %v", err)
			case !o.ClientAuth.Equal(tt.want):
				t.Errorf("client auth is not %q", tt.want)
			}
		})
	}
}

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

// TestExitOnStdinIdle: CORK_EXIT_ON_STDIN_IDLE (--exit-on-stdin-idle, cork
// proxy's only) is a positive duration, for cork proxy only with the
// token stream on stdin (an error naming both settings, one line); Env
// renders it.
func TestExitOnStdinIdle(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	tokens := filepath.Join(dir, "tokens.json")
	for _, f := range []string{policy, tokens} {
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{"unset", nil, nil, 0, ""},
		{"variable", map[string]string{ExitOnStdinIdleVar: "90s\n"}, nil, 90 * time.Second, ""},
		{"flag", map[string]string{ExitOnStdinIdleVar: "1h"}, []string{"--exit-on-stdin-idle", "300ms"}, 300 * time.Millisecond, ""},
		{"not a duration", map[string]string{ExitOnStdinIdleVar: "90"}, nil, 0, `CORK_EXIT_ON_STDIN_IDLE: "90": want a duration such as 90s or 2m`},
		{"zero", nil, []string{"--exit-on-stdin-idle=0s"}, 0, `--exit-on-stdin-idle: "0s": want a positive duration such as 90s`},
		{"tokens from a file", map[string]string{ExitOnStdinIdleVar: "90s", "CORK_TOKENS_FILE": tokens}, nil, 0,
			"CORK_EXIT_ON_STDIN_IDLE: only with CORK_TOKENS_FILE=- (the token stream on stdin, whose bytes it times)"},
		{"tokens from a file, flags", nil, []string{"--exit-on-stdin-idle=90s", "--tokens-file", tokens}, 0,
			"--exit-on-stdin-idle: only with --tokens-file=- (the token stream on stdin, whose bytes it times)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"CORK_POLICY_FILE": policy}
			for k, v := range tt.env {
				env[k] = v
			}
			p, err := parse(t, env, ForProxy, tt.args...)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("Parse = %v, want the one line %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.ExitOnStdinIdle != tt.want {
				t.Errorf("ExitOnStdinIdle = %v, want %v", p.ExitOnStdinIdle, tt.want)
			}
			if got, want := p.Env()[ExitOnStdinIdleVar], map[bool]string{true: tt.want.String()}[tt.want != 0]; got != want {
				t.Errorf("Env()[%s] = %q, want %q", ExitOnStdinIdleVar, got, want)
			}
		})
	}
}
