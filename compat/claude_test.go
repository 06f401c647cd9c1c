package compat

import (
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/fakeupstream"
	"github.com/cork-sh/cork/provision"
)

const (
	claudeSlot     = "claude"
	claudeTokenEnv = "CORK_CLAUDE_OAUTH_TOKEN"
	// claudeOAuthPrefix starts Claude's OAuth access tokens.
	claudeOAuthPrefix = "sk-ant-oat01-"
)

// claudeToken returns a fake OAuth access token shaped like a real one:
// the prefix, 93 base64url characters, "AA".
func claudeToken(t *testing.T) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, 93)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return claudeOAuthPrefix + string(b) + "AA"
}

// claudePlan is what the claude profile is expected to provision for an
// OAuth token: the placeholder as CLAUDE_CODE_OAUTH_TOKEN (a static bearer,
// no refresh path), a bearer route on api.anthropic.com, the token
// endpoints blocked.
//
// TODO(claude profile): replace with provision.Build(opts, provision.Claude{})
// once the profile lands, reading the real token from a host
// .credentials.json fixture.
func claudePlan(real, placeholder string) provision.Plan {
	block := func(host string) provision.Block {
		return provision.Block{Host: host, Path: "/v1/oauth/token", Reason: "token refresh happens on the host"}
	}
	return provision.Plan{
		Env: map[string]string{
			"CLAUDE_CODE_OAUTH_TOKEN":                  placeholder,
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		},
		ProvisionedEnv: map[string]string{claudeTokenEnv: real},
		Egress: provision.EgressPlan{
			TokenEnvMap: map[string]string{claudeSlot: claudeTokenEnv},
			Slots:       map[string]provision.Slot{claudeSlot: {Placeholder: placeholder}},
			Routes: []provision.Route{
				{Host: fakeupstream.AnthropicHost, Slot: claudeSlot, Header: "Authorization", Scheme: provision.SchemeBearer},
			},
			Block: []provision.Block{block(fakeupstream.ClaudePlatformHost), block(fakeupstream.AnthropicConsole)},
		},
	}
}

func TestClaude(t *testing.T) {
	claude := requireCLI(t, "claude")
	version := cliVersion(t, claude)
	t.Parallel()
	row := report(t, 20, "Claude Code (`claude -p`, OAuth token)", version, "HTTPS + SSE (`/v1/messages`)", "")

	real, placeholder := claudeToken(t), claudeToken(t)
	fake := startFake(t, fakeupstream.Config{AnthropicToken: real})
	workspace := t.TempDir()
	r := runSandbox(t, claudePlan(real, placeholder), fake, workspace, nil, claude, "-p", "say ok")
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
	reqs := fake.Requests(fakeupstream.AnthropicHost)
	messages := 0
	for _, q := range reqs {
		if got := q.Header.Get("Authorization"); got != "Bearer "+real {
			t.Errorf("%s %s reached api.anthropic.com with Authorization %s, want the real token", q.Method, q.Path, describeToken(got, real, placeholder))
		}
		for k, vs := range q.Header {
			for _, v := range vs {
				if strings.Contains(v, placeholder) {
					t.Errorf("%s %s: header %s carries the placeholder", q.Method, q.Path, k)
				}
			}
		}
		if q.Path == fakeupstream.MessagesPath && q.Status == http.StatusOK {
			messages++
			// OAuth needs its beta flag kept (AGENTS.md).
			if !strings.Contains(strings.Join(q.Header.Values("anthropic-beta"), ","), "oauth-") {
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
	// Anything else Claude Code tried was denied, not sent.
	for _, m := range r.Audit {
		if (m["msg"] == "egress" || m["message"] == "egress") && m["host"] != fakeupstream.AnthropicHost {
			t.Logf("other egress: %v %v %v", m["decision"], m["host"], m["path"])
		}
	}

	if r.Env["CLAUDE_CODE_OAUTH_TOKEN"] != placeholder {
		t.Errorf("sandbox CLAUDE_CODE_OAUTH_TOKEN is not the placeholder")
	}
	checkNoSecret(t, r, "real OAuth token", real)
	if !t.Failed() {
		row.Notes = "placeholder in CLAUDE_CODE_OAUTH_TOKEN; settings/policy_limits 404; `anthropic-beta: oauth-…` kept"
	}
}
