package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
)

func TestProxyConfigErrors(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("allow:\n  - example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	openTokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(openTokens, []byte(`{"a":"b"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		lines []string // each must appear on its own line of stderr
	}{
		{
			name:  "policy required",
			env:   map[string]string{},
			lines: []string{"cork: CORK_POLICY_FILE: required: the policy file to enforce"},
		},
		{
			name: "every problem at once, each naming its variable",
			env: map[string]string{
				"CORK_POLICY_FILE":   filepath.Join(dir, "missing.yaml"),
				"CORK_LISTEN":        "nonsense",
				"CORK_LOG_LEVEL":     "loud",
				"CORK_LOG_FORMAT":    "xml",
				"CORK_ALLOW_PRIVATE": "10.0.0.0/8,not-a-cidr",
				"CORK_RESOLVE":       "api.test:443",
				"CORK_CA_CERT_FILE":  filepath.Join(dir, "ca.pem"),
			},
			lines: []string{
				"cork: CORK_LISTEN: want host:port",
				"cork: CORK_POLICY_FILE: " + filepath.Join(dir, "missing.yaml") + ": no such file or directory",
				`cork: CORK_LOG_LEVEL: "loud": want trace, debug, info, warn or error`,
				`cork: CORK_LOG_FORMAT: "xml": want json or console`,
				`cork: CORK_ALLOW_PRIVATE: entry 2 "not-a-cidr": not a CIDR (want e.g. 127.0.0.0/8)`,
				`cork: CORK_RESOLVE: entry 1 "api.test:443": want host:port=addr:port`,
				"cork: CORK_CA_KEY_FILE: required when CORK_CA_CERT_FILE is set",
			},
		},
		{
			name:  "a flag overrides its variable and is named instead",
			env:   map[string]string{"CORK_POLICY_FILE": policy, "CORK_LISTEN": "127.0.0.1:1"},
			args:  []string{"--listen", "127.0.0.1:99999"},
			lines: []string{`cork: --listen: bad port "99999"`},
		},
		{
			name:  "resolve target port 0",
			env:   map[string]string{"CORK_POLICY_FILE": policy, "CORK_RESOLVE": "api.test:443=127.0.0.1:0"},
			lines: []string{`cork: CORK_RESOLVE: entry 1: "127.0.0.1:0": bad port "0"`},
		},
		{
			name:  "tokens file readable by others",
			env:   map[string]string{"CORK_POLICY_FILE": policy, "CORK_TOKENS_FILE": openTokens},
			lines: []string{"cork: CORK_TOKENS_FILE: " + openTokens + ": mode 0644 lets others read it; chmod 600 " + openTokens},
		},
		{
			name:  "CA key readable by others",
			env:   map[string]string{"CORK_POLICY_FILE": policy, "CORK_CA_CERT_FILE": openTokens, "CORK_CA_KEY_FILE": openTokens},
			lines: []string{"cork: CORK_CA_KEY_FILE: " + openTokens + ": mode 0644 lets others read it; chmod 600 " + openTokens},
		},
		{
			name:  "empty tokens file setting",
			env:   map[string]string{"CORK_POLICY_FILE": policy, "CORK_TOKENS_FILE": " "},
			lines: []string{"cork: CORK_TOKENS_FILE: empty: give a file, or - for stdin"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCork(t, tt.env, append([]string{"proxy"}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit = %d, want 2; stderr:\n%s", code, stderr)
			}
			got := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			for _, want := range tt.lines {
				found := false
				for _, l := range got {
					if l == want {
						found = true
					}
				}
				if !found {
					t.Errorf("stderr lacks line %q; got:\n%s", want, stderr)
				}
			}
			if len(got) != len(tt.lines) {
				t.Errorf("stderr has %d lines, want %d (one per problem):\n%s", len(got), len(tt.lines), stderr)
			}
		})
	}
}

func TestProxyConfigTrailingNewlines(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte("{\"a\":\"b\"}\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := loadProxySettings(map[string]string{
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
	if _, err := s.validate(true, os.Stderr); err != nil {
		t.Errorf("validate with trailing newlines = %v, want nil", err)
	}
}

// TestExamplePolicy keeps the README's sample policy valid.
func TestExamplePolicy(t *testing.T) {
	p, err := policy.Load("../../examples/policy.yaml")
	if err != nil {
		t.Fatalf("policy.Load(examples/policy.yaml) = %v", err)
	}
	if r := p.Lookup("api.github.com", 443); len(r.Routes) != 1 || r.Routes[0].Slot != "github" {
		t.Errorf("api.github.com rules = %+v, want one route to slot github", r)
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
			s, err := loadProxySettings(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			o, err := s.validate(false, os.Stderr)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("validate = %v, want an error containing %q", err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
					t.Errorf("the error quotes the credential: %v", err)
				}
			case err != nil:
				t.Errorf("validate = %v", err)
			case o.clientAuth != tt.want:
				t.Errorf("client auth = %q, want %q", o.clientAuth, tt.want)
			}
		})
	}
}
