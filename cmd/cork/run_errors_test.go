package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input to `cork run` gets one clear line, exit status 2, and leaves
// nothing behind (issue #4).
func TestRunBadInput(t *testing.T) {
	home := t.TempDir()
	unreadable := filepath.Join(t.TempDir(), "locked")
	if err := os.Mkdir(unreadable, 0o000); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown backend", nil, []string{"--backend", "vmware", "--agent", "codex", "--", "true"}, `cork: --backend: unknown backend "vmware" (want docker, kubernetes, local, qemu, smolvm)`},
		{"unknown agent", nil, []string{"--agent", "cursor", "--", "true"}, `cork: --agent: unknown agent profile "cursor" (known: claude, codex, copilot, gemini, github)`},
		{"no command", nil, []string{"--agent", "codex"}, "cork: run: no command: give it after --, e.g. cork run --agent codex -- codex"},
		{"missing workspace", nil, []string{"--agent", "github", "--workspace", filepath.Join(home, "nope"), "--", "true"}, "cork: --workspace: " + filepath.Join(home, "nope") + ": no such file or directory"},
		{"missing host credential", nil, []string{"--agent", "codex", "--", "true"}, "cork: codex: read " + filepath.Join(home, ".codex", "auth.json") + ": no such file or directory (sign in on the host with `codex login`, set OPENAI_API_KEY, or don't forward host credentials)\n"},
		{"no github token", nil, []string{"--agent", "github", "--", "true"}, "cork: github: no token for github.com: GH_TOKEN and GITHUB_TOKEN are unset and " + filepath.Join(home, ".config", "gh", "hosts.yml") + " does not exist (run `gh auth login --hostname github.com` on the host, or set GH_TOKEN)\n"},
		{"no github login", map[string]string{"GH_CONFIG_DIR": filepath.Join("..", "..", "testdata", "github", "gh-keyring"), "GH_HOST": "x"}, []string{"--agent", "github", "--github-host", "other.example.com", "--", "true"}, "cork: github: no token for other.example.com: GH_ENTERPRISE_TOKEN and GITHUB_ENTERPRISE_TOKEN are unset and " + filepath.Join("..", "..", "testdata", "github", "gh-keyring", "hosts.yml") + " has no login for other.example.com (run `gh auth login --hostname other.example.com` on the host, or set GH_ENTERPRISE_TOKEN)\n"},
		{"--github-host without --agent github", nil, []string{"--agent", "codex", "--github-host", "ghe.example.com", "--", "true"}, "cork: --github-host, --github-read-only and --push-branch: only with --agent github\n"},
		{"--push-branch without an agent", nil, []string{"--inject", "api.example.com=EXAMPLE_TOKEN", "--push-branch", "agent/*", "--", "true"}, "cork: --github-host, --github-read-only and --push-branch: only with --agent github\n"},
		{"--github-read-only with --push-branch", nil, []string{"--agent", "github", "--github-read-only", "--push-branch", "agent/*", "--", "true"}, "cork: --github-read-only and --push-branch: give one (read-only pushes nothing)\n"},
		{"--github-host a URL", nil, []string{"--agent", "github", "--github-host", "https://ghe.example.com", "--", "true"}, "cork: --github-host: \"https://ghe.example.com\" is not a host name (want e.g. ghe.example.com, without scheme, port or path)\n"},
		{"--github-read-only with --github-host", nil, []string{"--agent", "github", "--github-read-only", "--github-host", "ghe.example.com", "--", "true"}, "cork: --github-read-only: not with --github-host: on GitHub Enterprise Server the API and git share the host"},
		{"--push-branch a ref", nil, []string{"--agent", "github", "--push-branch", "refs/heads/main", "--", "true"}, "cork: --push-branch: \"refs/heads/main\" is not a branch pattern (want e.g. 'agent/*', without refs/heads/)\n"},
		{"--push-branch a bad glob", nil, []string{"--agent", "github", "--push-branch", "a/[", "--", "true"}, "cork: --push-branch: \"a/[\" is not a branch pattern"},
		{"unset token variable, forwarding off", nil, []string{"--agent", "github", "--no-forward-host-credentials", "--", "true"}, "cork: missing credential: GH_TOKEN (slot github) unset or empty; set them in the environment or drop --no-forward-host-credentials, to let profiles read the host's logins\n"},
		{"unset --inject variable", nil, []string{"--inject", "api.example.com=EXAMPLE_TOKEN", "--", "true"}, "cork: missing credential: EXAMPLE_TOKEN (slot example_token) unset or empty; set them in the environment\n"},
		{"no docker image", map[string]string{"GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--backend", "docker", "--agent", "github", "--", "true"}, "cork: --image: the docker backend needs an image for the sandbox\n"},
		{"real token in --env", map[string]string{"GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--agent", "github", "--env", "LEAK=ghp_REAL000000000000000000000000000000000", "--", "true"}, "cork: --env LEAK holds the real github credential: the sandbox gets placeholders only, cork injects the real one on the way out\n"},
		{"real token in the command", map[string]string{"GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--agent", "github", "--", "echo", "ghp_REAL000000000000000000000000000000000"}, "cork: argument 1 of the command holds the real github credential: the sandbox gets placeholders only\n"},
		{"bad CORK_ variable", map[string]string{"CORK_LOG_LEVEL": "loud", "GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--agent", "github", "--", "true"}, `cork: CORK_LOG_LEVEL: "loud": want trace, debug, info, warn or error`},
		{"a CA of the operator's", map[string]string{"CORK_CA_CERT_FILE": "/ca.pem", "CORK_CA_KEY_FILE": "/ca.key", "GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--agent", "github", "--", "true"}, "cork: CORK_CA_CERT_FILE, CORK_CA_KEY_FILE: not used by cork run"},
		{"qemu without a kernel", map[string]string{"GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--backend", "qemu", "--agent", "github", "--", "true"}, "cork: --kernel: the qemu backend needs one"},
		{"--kernel elsewhere", nil, []string{"--kernel", "/vmlinux", "--agent", "github", "--", "true"}, "cork: --kernel, --initrd and --accel: only for --backend qemu"},
		{"--env HOME", map[string]string{"GH_TOKEN": "ghp_REAL000000000000000000000000000000000"}, []string{"--agent", "github", "--env", "HOME=/x", "--", "true"}, "cork: --env HOME: the sandbox's HOME is cork's"},
	}
	if os.Geteuid() != 0 { // root reads any directory
		tests = append(tests, struct {
			name string
			env  map[string]string
			args []string
			want string
		}{"unreadable workspace", nil, []string{"--agent", "github", "--workspace", unreadable, "--", "true"}, "cork: --workspace: " + unreadable + ": permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			env := map[string]string{"HOME": home, "PATH": os.Getenv("PATH"), "TMPDIR": tmp}
			for k, v := range tt.env {
				env[k] = v
			}
			t.Setenv("TMPDIR", tmp) // where a backend would create its sandbox
			code, _, stderr := runCork(t, env, append([]string{"run"}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit = %d, want 2; stderr:\n%s", code, stderr)
			}
			if !strings.HasPrefix(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to start with %q", stderr, tt.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 && !strings.Contains(tt.name, "usage") {
				t.Errorf("stderr has %d lines, want one:\n%s", n+1, stderr)
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("left behind in TMPDIR: %v", left)
			}
			if strings.Contains(stderr, "ghp_REAL") {
				t.Errorf("stderr shows a token value: %q", stderr)
			}
		})
	}
}
