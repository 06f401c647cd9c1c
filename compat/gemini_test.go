package compat

import (
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

// geminiFixture is a HOST directory holding .gemini/ of a Google sign-in
// (fake, with REAL… markers; see testdata/gemini/README.md). Its access
// token expires at 09:30 on geminiNow's day, so provisioning runs at that
// clock.
const geminiFixture = "../testdata/gemini/oauth"

var geminiNow = time.Date(2026, 11, 2, 8, 30, 0, 0, time.UTC)

// geminiSecretMarkers are parts of the host's .gemini/ that must never
// reach the sandbox.
var geminiSecretMarkers = []string{"ya29.a0REALACCESS", "1//0gREALREFRESH", "REALIDSIG"}

func TestGemini(t *testing.T) {
	gemini := requireCLI(t, "gemini")
	version := cliVersion(t, gemini)
	apiKey := randomToken(t, "AIza", 35)
	for i, tc := range []struct {
		name, transport string
		signIn          bool
	}{
		{name: "apikey", transport: "HTTPS + SSE, `GEMINI_API_KEY` (x-goog-api-key)"},
		{name: "signin", transport: "HTTPS + SSE, Google sign-in from the host's `~/.gemini/oauth_creds.json`", signIn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := report(t, 50+i, "Gemini CLI (`gemini -p`)", version, tc.transport, "")
			hostHome := t.TempDir()
			opts := provision.Options{HostHome: hostHome, HostEnv: map[string]string{provision.GeminiAPIKeyEnv: apiKey}}
			real := apiKey
			if tc.signIn {
				real = copyGeminiFixture(t, hostHome)
				opts = provision.Options{HostHome: hostHome, ForwardHostCredentials: true, Now: func() time.Time { return geminiNow }}
			}
			plan, err := provision.Build(opts, provision.Gemini{})
			if err != nil {
				t.Fatalf("provision.Build(gemini) = %v", err)
			}
			testGemini(t, gemini, plan, opts.HostEnv, real, tc.signIn, row)
		})
	}
}

// copyGeminiFixture puts the fixture's .gemini/ under hostHome and returns
// its access token.
func copyGeminiFixture(t *testing.T, hostHome string) string {
	t.Helper()
	if err := os.CopyFS(hostHome, os.DirFS(geminiFixture)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(hostHome, ".gemini", "oauth_creds.json"))
	if err != nil {
		t.Fatal(err)
	}
	var creds struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(data, &creds); err != nil || creds.AccessToken == "" {
		t.Fatalf("fixture %s: %v", geminiFixture, err)
	}
	return creds.AccessToken
}

func testGemini(t *testing.T, gemini string, plan provision.Plan, hostEnv map[string]string, real string, signIn bool, row *row) {
	slot, apiHost, header, want := provision.GeminiSlot, fakeupstream.GeminiAPIHost, "X-Goog-Api-Key", real
	cfg := fakeupstream.Config{GeminiAPIKey: real}
	if signIn {
		slot, apiHost, header, want = provision.GeminiOAuthSlot, fakeupstream.CodeAssistHost, "Authorization", "Bearer "+real
		cfg = fakeupstream.Config{GoogleAccessToken: real}
	}
	placeholder := plan.Egress.Slots[slot].Placeholder
	if placeholder == "" || placeholder == real {
		t.Fatalf("%s slot placeholder = %q", slot, placeholder)
	}
	fake := startFake(t, cfg)
	r := runSandbox(t, plan, fake, t.TempDir(), hostEnv, nil, gemini, "-p", "say ok")
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s", fake.Summary())
			t.Logf("proxy decisions:\n%s", egressSummary(r))
			t.Logf("gemini stdout:\n%s\ngemini stderr:\n%s", tail(r.Stdout, 4000), tail(r.Stderr, 6000))
		}
	}()

	if r.Code != 0 {
		t.Errorf("gemini exit status = %d, want 0", r.Code)
	}
	if !strings.Contains(r.Stdout, fake.Reply()) {
		t.Errorf("gemini stdout does not hold the canned reply %q", fake.Reply())
	}
	streams := 0
	for _, q := range fake.Requests(apiHost) {
		if got := q.Header.Get(header); got != want {
			t.Errorf("%s %s reached %s with %s %s, want the real credential", q.Method, q.Path, apiHost, header, describeToken(got, real, placeholder))
		}
		checkNoPlaceholder(t, q, placeholder)
		if strings.HasSuffix(q.Path, ":"+fakeupstream.GeminiStreamMethod) && q.Status == http.StatusOK {
			streams++
		}
	}
	if streams == 0 {
		t.Errorf("no successful streamGenerateContent on %s", apiHost)
	}

	// The token check is the only call to oauth2.googleapis.com: never the
	// token endpoint.
	tokenInfo := false
	for _, q := range fake.Requests(fakeupstream.GoogleOAuthHost) {
		if !signIn || q.Path != fakeupstream.GoogleTokenInfoPath {
			t.Errorf("%s %s%s was called", q.Method, fakeupstream.GoogleOAuthHost, q.Path)
			continue
		}
		if got := q.Header.Get("Authorization"); got != "Bearer "+real || q.Status != http.StatusOK {
			t.Errorf("tokeninfo got Authorization %s and answered %d, want the real token and 200", describeToken(got, real, placeholder), q.Status)
		}
		checkNoPlaceholder(t, q, placeholder)
		tokenInfo = true
	}
	if signIn {
		if !tokenInfo {
			t.Errorf("no call to %s%s", fakeupstream.GoogleOAuthHost, fakeupstream.GoogleTokenInfoPath)
		}
		loaded := false
		for _, q := range fake.Requests(fakeupstream.CodeAssistHost) {
			loaded = loaded || q.Path == fakeupstream.LoadCodeAssistPath && q.Status == http.StatusOK
		}
		if !loaded {
			t.Errorf("no successful %s", fakeupstream.LoadCodeAssistPath)
		}
		// The sandbox's CLI never refreshed: its file still holds the placeholder.
		if creds := r.Home[".gemini/oauth_creds.json"]; !strings.Contains(string(creds), placeholder) {
			t.Errorf("the sandbox's ~/.gemini/oauth_creds.json no longer holds the placeholder")
		}
	} else if got := r.Env[provision.GeminiAPIKeyEnv]; got != placeholder {
		t.Errorf("sandbox %s is not the placeholder", provision.GeminiAPIKeyEnv)
	}
	// Usage statistics (play.googleapis.com) and every other host stay
	// untried: nothing was denied.
	for _, m := range r.Audit {
		if (m["msg"] == "egress" || m["message"] == "egress") && (m["decision"] == "deny" || m["decision"] == "block") {
			t.Errorf("the sandbox tried %v %v%v: %v %v", m["method"], m["host"], m["path"], m["decision"], m["reason"])
		}
	}
	checkNoSecret(t, r, "real credential", real)
	if signIn {
		for _, m := range geminiSecretMarkers {
			checkNoSecret(t, r, "host credentials secret "+m, m)
		}
	}
	if !t.Failed() {
		if signIn {
			row.Notes = fmt.Sprintf("dummy `~/.gemini/oauth_creds.json` (placeholder `ya29.…`, far-future expiry); bearer swapped on %s and on %s%s; %s/token blocked, never called",
				fakeupstream.CodeAssistHost, fakeupstream.GoogleOAuthHost, fakeupstream.GoogleTokenInfoPath, fakeupstream.GoogleOAuthHost)
		} else {
			row.Notes = fmt.Sprintf("placeholder in %s; x-goog-api-key swapped on %s", provision.GeminiAPIKeyEnv, fakeupstream.GeminiAPIHost)
		}
		row.Notes += "; settings.json turns usage statistics off; `GEMINI_CLI_TRUST_WORKSPACE=true`"
	}
}
