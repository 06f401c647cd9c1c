package compat

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/provision"
)

// claudeFixture is a HOST .credentials.json (fake, with REAL… markers; see
// testdata/claude/README.md). Its tokens expire at 14:00 on claudeNow's
// day, so provisioning runs at that clock.
const claudeFixture = "../testdata/claude/oauth/.credentials.json"

var claudeNow = time.Date(2026, 11, 2, 8, 30, 0, 0, time.UTC)

// claudeSecretMarkers are parts of the host credentials file that must
// never reach the sandbox.
var claudeSecretMarkers = []string{"sk-ant-oat01-REALACCESS", "sk-ant-ort01-REALREFRESH", "REALMCPACCESS", "REALMCPREFRESH"}

// randomToken returns prefix and n random base64url characters.
func randomToken(t *testing.T, prefix string, n int) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

func TestClaude(t *testing.T) {
	claude := requireCLI(t, "claude")
	version := cliVersion(t, claude)
	apiKey := randomToken(t, "sk-ant-api03-", 93) + "AA"
	for i, tc := range []struct {
		name, transport string
		// opts returns the provisioning options for a host home.
		opts func(hostHome string) provision.Options
		// real is the credential the fake must receive; header carries it.
		real, header, sandboxVar string
		markers                  []string
	}{
		{
			name: "oauth", transport: "HTTPS + SSE, OAuth token from the host's `.credentials.json`",
			opts: func(hostHome string) provision.Options {
				return provision.Options{HostHome: hostHome, ForwardHostCredentials: true, Now: func() time.Time { return claudeNow }}
			},
			header: "Authorization", sandboxVar: provision.ClaudeOAuthTokenEnv, markers: claudeSecretMarkers,
		},
		{
			name: "apikey", transport: "HTTPS + SSE, `ANTHROPIC_API_KEY` (x-api-key)",
			opts: func(hostHome string) provision.Options {
				return provision.Options{HostHome: hostHome, HostEnv: map[string]string{provision.AnthropicAPIKeyEnv: apiKey}}
			},
			real: apiKey, header: "X-Api-Key", sandboxVar: provision.AnthropicAPIKeyEnv,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := report(t, 20+i, "Claude Code (`claude -p`)", version, tc.transport, "")
			hostHome := t.TempDir()
			real := tc.real
			if tc.name == "oauth" {
				real = copyClaudeFixture(t, hostHome)
			}
			plan, err := provision.Build(tc.opts(hostHome), provision.Claude{})
			if err != nil {
				t.Fatalf("provision.Build(claude) = %v", err)
			}
			testClaude(t, claude, plan, tc.opts(hostHome).HostEnv, real, tc.header, tc.sandboxVar, tc.markers, row)
		})
	}
}

// copyClaudeFixture puts the fixture at <hostHome>/.claude/.credentials.json
// and returns its access token.
func copyClaudeFixture(t *testing.T, hostHome string) string {
	t.Helper()
	data, err := os.ReadFile(claudeFixture)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(hostHome, ".claude")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".credentials.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var creds struct {
		ClaudeAiOauth struct {
			AccessToken string `json:"accessToken"`
		} `json:"claudeAiOauth"`
	}
	if err := json.Unmarshal(data, &creds); err != nil || creds.ClaudeAiOauth.AccessToken == "" {
		t.Fatalf("fixture %s: %v", claudeFixture, err)
	}
	return creds.ClaudeAiOauth.AccessToken
}

func testClaude(t *testing.T, claude string, plan provision.Plan, hostEnv map[string]string, real, header, sandboxVar string, markers []string, row *row) {
	slot := provision.ClaudeSlot
	if header != "Authorization" {
		slot = provision.AnthropicSlot
	}
	placeholder := plan.Egress.Slots[slot].Placeholder
	if placeholder == "" || placeholder == real {
		t.Fatalf("%s slot placeholder = %q", slot, placeholder)
	}
	fake := startFake(t, fakeupstream.Config{AnthropicToken: real})
	r := runSandbox(t, plan, fake, t.TempDir(), hostEnv, nil, claude, "-p", "say ok")
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s", fake.Summary())
			t.Logf("proxy decisions:\n%s", egressSummary(r))
			t.Logf("claude stdout:\n%s\nclaude stderr:\n%s", tail(r.Stdout, 4000), tail(r.Stderr, 6000))
		}
	}()

	if r.Code != 0 {
		t.Errorf("claude exit status = %d, want 0", r.Code)
	}
	if !strings.Contains(r.Stdout, fake.Reply()) {
		t.Errorf("claude stdout does not hold the canned reply %q", fake.Reply())
	}
	want := real
	if header == "Authorization" {
		want = "Bearer " + real
	}
	messages := 0
	for _, q := range fake.Requests(fakeupstream.AnthropicHost) {
		if got := q.Header.Get(header); got != want {
			t.Errorf("%s %s reached api.anthropic.com with %s %s, want the real credential", q.Method, q.Path, header, describeToken(got, real, placeholder))
		}
		checkNoPlaceholder(t, q, placeholder)
		if q.Path == fakeupstream.MessagesPath && q.Status == http.StatusOK {
			messages++
			// OAuth needs its beta flag kept (docs/AGENTS.md).
			if header == "Authorization" && !strings.Contains(strings.Join(q.Header.Values("anthropic-beta"), ","), "oauth-") {
				t.Errorf("POST %s without the oauth anthropic-beta flag: %q", q.Path, q.Header.Values("anthropic-beta"))
			}
		}
	}
	if messages == 0 {
		t.Errorf("no successful POST %s", fakeupstream.MessagesPath)
	}
	for _, h := range []string{fakeupstream.ClaudePlatformHost, fakeupstream.AnthropicConsole} {
		if got := fake.Requests(h); len(got) > 0 {
			t.Errorf("%s was called %d times", h, len(got))
		}
		if got := auditLines(r, h); len(got) > 0 {
			t.Errorf("the sandbox tried %s: %v", h, got)
		}
	}
	if r.Env[sandboxVar] != placeholder {
		t.Errorf("sandbox %s is not the placeholder", sandboxVar)
	}
	checkNoSecret(t, r, "real credential", real)
	for _, m := range markers {
		checkNoSecret(t, r, "host credentials secret "+m, m)
	}
	if !t.Failed() {
		row.Notes = fmt.Sprintf("placeholder in %s; %s swapped on api.anthropic.com; settings/policy_limits answered 404", sandboxVar, header)
		if header == "Authorization" {
			row.Notes += "; `anthropic-beta: oauth-…` kept"
		}
	}
}

// checkNoPlaceholder fails t if any header of q carries the placeholder.
func checkNoPlaceholder(t *testing.T, q fakeupstream.Request, placeholder string) {
	t.Helper()
	for k, vs := range q.Header {
		for _, v := range vs {
			if strings.Contains(v, placeholder) {
				t.Errorf("%s %s: header %s carries the placeholder", q.Method, q.Path, k)
			}
		}
	}
}
