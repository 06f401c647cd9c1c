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

// TestReadmePolicy keeps the policy shown in the README's "Policy" section
// valid, with the rules it describes in force.
func TestReadmePolicy(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "### Policy\n\n```yaml\n"
	_, rest, ok := strings.Cut(string(readme), start)
	doc, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("README.md: no yaml block after %q", "### Policy")
	}
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("README.md's policy: %v", err)
	}
	api := p.Lookup("api.github.com", 443)
	if got := api.Permits("GET", "/repos/OWNER/REPO/issues"); got != "" {
		t.Errorf("GET /repos/OWNER/REPO/issues: %q, want permitted", got)
	}
	if got := api.Permits("POST", "/repos/OWNER/REPO/issues"); got != policy.DenyMethod {
		t.Errorf("POST /repos/OWNER/REPO/issues: %q, want %q", got, policy.DenyMethod)
	}
	if got := api.Permits("GET", "/user"); got != policy.DenyPath {
		t.Errorf("GET /user: %q, want %q", got, policy.DenyPath)
	}
	git := p.Lookup("github.com", 443)
	if len(git.Routes) != 1 || git.Routes[0].Push == nil || git.Routes[0].Push.Allows("refs/heads/main", false) || !git.Routes[0].Push.Allows("refs/heads/agent/x", false) {
		t.Errorf("github.com rules = %+v, want a route whose push rule takes agent/* only", git)
	}
}
