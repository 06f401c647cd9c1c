package compat

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/provision"
)

// The Copilot CLI rows: `copilot -p` in the default local sandbox, with
// the GitHub token from COPILOT_GITHUB_TOKEN, and from gh's login together
// with --agent github (one shared credential, docs/AGENTS.md).

// copilotScript runs the CLI with the package it unpacks on every start
// (about 235 MB, into ~/.cache/copilot/pkg by default) kept out of the
// sandbox HOME, which the harness copies and reads whole: the dump
// directory is writable and not inspected.
const copilotScript = `COPILOT_PKG_CACHE_HOME="$CORK_COMPAT_OUT/copilot-pkg" exec "$@"`

func TestCopilot(t *testing.T) {
	copilot := requireCLI(t, "copilot")
	version := strings.TrimSuffix(cliVersion(t, copilot), ".") // "GitHub Copilot CLI 1.0.102."
	for i, tc := range []struct {
		name, transport string
		// plan provisions the run; it returns the plan, the host env and
		// the real token.
		plan func(t *testing.T) (provision.Plan, map[string]string, string)
	}{
		{
			name: "env", transport: "HTTPS + SSE, `COPILOT_GITHUB_TOKEN` (fine-grained token)",
			plan: func(t *testing.T) (provision.Plan, map[string]string, string) {
				real := "github_pat_11" + strings.NewReplacer("-", "x", "_", "y").Replace(randomToken(t, "", 80))
				hostEnv := map[string]string{provision.CopilotTokenEnv: real}
				plan, err := provision.Build(provision.Options{HostHome: t.TempDir(), HostEnv: hostEnv, ForwardHostCredentials: true}, provision.Copilot{})
				if err != nil {
					t.Fatalf("provision.Build(copilot) = %v", err)
				}
				return plan, hostEnv, real
			},
		},
		{
			name: "gh login with github", transport: "HTTPS + SSE, gh's login (`hosts.yml`), `--agent copilot --agent github`",
			plan: func(t *testing.T) (provision.Plan, map[string]string, string) {
				real := "gho_" + strings.NewReplacer("-", "x", "_", "y").Replace(randomToken(t, "", 36))
				dir := t.TempDir()
				hosts := "github.com:\n    oauth_token: " + real + "\n    user: " + fakeupstream.GitHubUserLogin + "\n    git_protocol: https\n"
				if err := os.WriteFile(filepath.Join(dir, "hosts.yml"), []byte(hosts), 0o600); err != nil {
					t.Fatal(err)
				}
				hostEnv := map[string]string{"GH_CONFIG_DIR": dir}
				plan, err := provision.Build(provision.Options{HostHome: t.TempDir(), HostEnv: hostEnv, ForwardHostCredentials: true}, provision.Copilot{}, provision.GitHub{})
				if err != nil {
					t.Fatalf("provision.Build(copilot, github) = %v", err)
				}
				if len(plan.Egress.Slots) != 1 || plan.Env[provision.GHTokenEnv] != plan.Env[provision.CopilotTokenEnv] {
					t.Fatalf("copilot and github do not share one slot: slots %v", plan.Egress.Slots)
				}
				return plan, hostEnv, real
			},
		},
		{
			name: "gh login with github read-only", transport: "HTTPS + SSE, gh's login, `--agent copilot --agent github --github-read-only`",
			plan: func(t *testing.T) (provision.Plan, map[string]string, string) {
				real := "gho_" + strings.NewReplacer("-", "x", "_", "y").Replace(randomToken(t, "", 36))
				dir := t.TempDir()
				hosts := "github.com:\n    oauth_token: " + real + "\n    user: " + fakeupstream.GitHubUserLogin + "\n    git_protocol: https\n"
				if err := os.WriteFile(filepath.Join(dir, "hosts.yml"), []byte(hosts), 0o600); err != nil {
					t.Fatal(err)
				}
				hostEnv := map[string]string{"GH_CONFIG_DIR": dir}
				plan, err := provision.Build(provision.Options{HostHome: t.TempDir(), HostEnv: hostEnv, ForwardHostCredentials: true}, provision.Copilot{}, provision.GitHub{ReadOnly: true})
				if err != nil {
					t.Fatalf("provision.Build(copilot, github read-only) = %v", err)
				}
				// The shared token is narrowed on the Copilot hosts too: to
				// the paths the CLI uses (docs/AGENTS.md).
				pol, err := plan.Egress.Policy()
				if err != nil {
					t.Fatal(err)
				}
				if got := pol.Lookup("api.individual.githubcopilot.com", 443).Permits("POST", "/mcp/"); got == "" {
					t.Fatalf("read-only: POST /mcp/ on the Copilot API host is permitted, want refused")
				}
				return plan, hostEnv, real
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := report(t, 52+i, "GitHub Copilot CLI (`copilot -p`)", version, tc.transport, "")
			plan, hostEnv, real := tc.plan(t)
			testCopilot(t, copilot, plan, hostEnv, real, row)
		})
	}
}

// testCopilot runs `copilot -p` for plan, whose slot "copilot" holds the
// real token (the profile listed first names a shared slot).
func testCopilot(t *testing.T, copilot string, plan provision.Plan, hostEnv map[string]string, real string, row *row) {
	placeholder := plan.Egress.Slots[provision.CopilotSlot].Placeholder
	if placeholder == "" || placeholder == real {
		t.Fatalf("copilot slot placeholder = %q", placeholder)
	}
	fake := startFake(t, fakeupstream.Config{CopilotToken: real, GitHubToken: real})
	r := runSandbox(t, plan, fake, t.TempDir(), hostEnv, nil,
		"/bin/sh", "-c", copilotScript, "sh", copilot, "-p", "say ok", "--allow-all-tools")
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s", fake.Summary())
			t.Logf("proxy decisions:\n%s", egressSummary(r))
			t.Logf("copilot stdout:\n%s\ncopilot stderr:\n%s", tail(r.Stdout, 4000), tail(r.Stderr, 6000))
		}
	}()

	if r.Code != 0 {
		t.Errorf("copilot exit status = %d, want 0", r.Code)
	}
	if !strings.Contains(r.Stdout, fake.Reply()) {
		t.Errorf("copilot stdout does not hold the canned reply %q", fake.Reply())
	}
	completions := 0
	for _, host := range []string{fakeupstream.GitHubAPIHost, fakeupstream.CopilotAPIHost} {
		reqs := fake.Requests(host)
		if len(reqs) == 0 {
			t.Errorf("no request reached %s", host)
		}
		for _, q := range reqs {
			auth := q.Header.Get("Authorization")
			if _, tok, _ := strings.Cut(auth, " "); tok != real {
				t.Errorf("%s %s reached %s with Authorization %s, want the real token", q.Method, q.Path, host, describeToken(auth, real, placeholder))
			}
			checkNoPlaceholder(t, q, placeholder)
			if host == fakeupstream.CopilotAPIHost && q.Path == fakeupstream.CopilotCompletionsPath && q.Status == http.StatusOK {
				completions++
			}
			if q.Path == fakeupstream.CopilotTokenPath {
				t.Errorf("the Copilot token exchange reached api.github.com")
			}
		}
	}
	if completions == 0 {
		t.Errorf("no successful POST %s", fakeupstream.CopilotCompletionsPath)
	}
	// Telemetry is not allowed: the proxy refuses it and the CLI goes on.
	if got := fake.Requests(fakeupstream.CopilotTelemetryHost); len(got) > 0 {
		t.Errorf("%s was reached %d times", fakeupstream.CopilotTelemetryHost, len(got))
	}
	telemetryDenied := false
	for _, m := range auditLines(r, fakeupstream.CopilotTelemetryHost) {
		telemetryDenied = telemetryDenied || m["decision"] == "deny"
	}
	if r.Env[provision.CopilotTokenEnv] != placeholder {
		t.Errorf("sandbox %s is not the placeholder", provision.CopilotTokenEnv)
	}
	checkNoSecret(t, r, "real token", real)
	if !t.Failed() {
		row.Notes = fmt.Sprintf("placeholder in `%s`; the GitHub token itself swapped on api.github.com (`/copilot_internal/user`, …) and on the Copilot API host it names (%s: `/models`, `POST /chat/completions` streamed); no token exchange",
			provision.CopilotTokenEnv, fakeupstream.CopilotAPIHost)
		if len(plan.Egress.TokenEnvMap) == 1 && plan.Env[provision.GHTokenEnv] != "" {
			row.Notes += "; one slot shared with the github profile (the same placeholder in `GH_TOKEN`)"
		}
		if telemetryDenied {
			row.Notes += "; telemetry refused by the policy"
		}
	}
}
