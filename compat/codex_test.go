package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/provision"
)

// codexFixture is the HOST auth.json (fake, with REAL… markers in its
// secret parts; see testdata/codex/README.md).
const codexFixture = "../testdata/codex/chatgpt/auth.json"

// codexSecretMarkers are parts of the host auth.json that must never
// reach the sandbox.
var codexSecretMarkers = []string{"REALACCESSSIG", "REALIDSIG", "rt_REALREFRESH", "REALSESSIONID", "REALIDJTI", "REALORGID"}

// codexSSEProvider is a custom model provider pointing at the same
// ChatGPT backend with WebSocket off: the only way to get SSE on purpose
// (supports_websockets is ignored on the built-in provider; docs/AGENTS.md).
var codexSSEProvider = []string{
	"-c", `model_provider="corksse"`,
	"-c", `model_providers.corksse.name="cork SSE"`,
	"-c", `model_providers.corksse.base_url="https://chatgpt.com/backend-api/codex"`,
	"-c", `model_providers.corksse.wire_api="responses"`,
	"-c", `model_providers.corksse.requires_openai_auth=true`,
	"-c", `model_providers.corksse.supports_websockets=false`,
}

func TestCodex(t *testing.T) {
	codex := requireCLI(t, "codex")
	version := cliVersion(t, codex)
	for i, tc := range []struct {
		name      string
		transport string
		mode      codexMode
		extra     []string
	}{
		{"websocket", "WebSocket (default)", codexWS, nil},
		{"sse", "SSE (custom provider, supports_websockets=false)", codexSSE, codexSSEProvider},
		{"fallback", "WebSocket refused upstream → SSE fallback", codexFallback, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := report(t, 10+i, "Codex CLI (`codex exec`, ChatGPT sign-in)", version, tc.transport, "")
			testCodex(t, codex, tc.mode, tc.extra, row)
		})
	}
}

// codexMode is how a Codex turn is expected to travel.
type codexMode int

const (
	codexWS       codexMode = iota // WebSocket, the default
	codexSSE                       // POST + SSE, asked for by configuration
	codexFallback                  // the upgrade refused by the upstream; Codex falls back to SSE
)

// wsRefusedStatus is how the fake refuses Codex's upgrade in the fallback
// case.
const wsRefusedStatus = http.StatusUpgradeRequired

func testCodex(t *testing.T, codex string, mode codexMode, extra []string, row *row) {
	plan, host := codexHostPlan(t)
	real, placeholder := host.accessToken, plan.Egress.Slots[provision.CodexSlot].Placeholder

	cfg := fakeupstream.Config{ChatGPTToken: real}
	if mode == codexFallback {
		cfg.WebSocketStatus = wsRefusedStatus
	}
	fake := startFake(t, cfg)
	workspace := t.TempDir()
	argv := []string{codex, "exec", "--skip-git-repo-check", "--color", "never", "-C", workspace,
		"-c", `approval_policy="never"`, "-c", `sandbox_mode="read-only"`,
		"-c", "check_for_update_on_startup=false", "-c", `otel.metrics_exporter="none"`}
	argv = append(argv, extra...)
	argv = append(argv, "say ok")
	r := runSandbox(t, plan, fake, workspace, nil, nil, argv...)

	failed := func() {
		t.Logf("fake upstream saw:\n%s", fake.Summary())
		t.Logf("proxy decisions:\n%s", egressSummary(r))
		t.Logf("codex stdout:\n%s\ncodex stderr:\n%s", tail(r.Stdout, 4000), tail(r.Stderr, 6000))
	}
	defer func() {
		if t.Failed() || testing.Verbose() {
			failed()
		}
	}()

	if r.Code != 0 {
		t.Errorf("codex exit status = %d, want 0", r.Code)
	}
	if !strings.Contains(r.Stdout, fake.Reply()) {
		t.Errorf("codex stdout does not hold the canned reply %q", fake.Reply())
	}

	// The fake saw only the real token.
	reqs := fake.Requests(fakeupstream.ChatGPTHost)
	if len(reqs) == 0 {
		t.Fatalf("chatgpt.com received no request")
	}
	var accountsOK bool
	var ws, sse []fakeupstream.Request
	for _, q := range reqs {
		if got := q.Header.Get("Authorization"); got != "Bearer "+real {
			t.Errorf("%s %s reached chatgpt.com with Authorization %s, want the real token", q.Method, q.Path, describeToken(got, real, placeholder))
		}
		for k, vs := range q.Header {
			for _, v := range vs {
				if strings.Contains(v, placeholder) {
					t.Errorf("%s %s: header %s carries the placeholder", q.Method, q.Path, k)
				}
			}
		}
		switch {
		case q.Path == fakeupstream.AccountsCheckPath && q.Status == http.StatusOK:
			accountsOK = true
			if q.Header.Get("ChatGPT-Account-ID") != host.accountID {
				t.Errorf("accounts/check ChatGPT-Account-ID = %q, want the fixture's %q", q.Header.Get("ChatGPT-Account-ID"), host.accountID)
			}
		case q.Path == fakeupstream.ResponsesPath && q.WebSocket:
			ws = append(ws, q)
		case q.Path == fakeupstream.ResponsesPath && q.Method == http.MethodPost:
			sse = append(sse, q)
		}
	}
	if !accountsOK {
		t.Errorf("no successful GET %s", fakeupstream.AccountsCheckPath)
	}
	generated := 0
	for _, q := range ws {
		for _, m := range q.Messages {
			if m.Type == "response.create" && m.Generate {
				generated++
			}
		}
	}
	switch mode {
	case codexWS:
		if generated == 0 {
			t.Errorf("no generating response.create over a WebSocket")
		}
		if len(sse) > 0 {
			t.Errorf("codex fell back to POST %s (%d times): the WebSocket path did not work", fakeupstream.ResponsesPath, len(sse))
		}
		biggest := 0
		deflate := false
		for _, q := range ws {
			deflate = deflate || strings.Contains(q.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
			for _, m := range q.Messages {
				biggest = max(biggest, m.Len)
			}
		}
		row.Notes = fmt.Sprintf("upgrade intercepted, token injected on the handshake; warm-up + turn on one socket (largest frame %d KiB)", biggest>>10)
		if deflate {
			row.Notes += "; permessage-deflate negotiated end to end"
		}
	case codexSSE, codexFallback:
		if len(sse) == 0 {
			t.Errorf("no POST %s", fakeupstream.ResponsesPath)
		}
		if mode == codexSSE && len(ws) > 0 {
			t.Errorf("codex opened a WebSocket with supports_websockets=false")
		}
		if mode == codexFallback && len(ws) == 0 {
			t.Errorf("codex never tried the WebSocket")
		}
		enc := checkSSEBodies(t, sse)
		row.Notes = "request body " + enc + ", passed through untouched"
		if mode == codexFallback {
			row.Notes = fmt.Sprintf("upgrade refused with %d (attempts: %d), then POST; ", wsRefusedStatus, len(ws)) + row.Notes
		}
	}

	// Refresh belongs to the host: the sandbox never reached the token
	// endpoint, nor did the proxy see it try.
	if got := fake.Requests(fakeupstream.OpenAIAuthHost); len(got) > 0 {
		t.Errorf("auth.openai.com was called %d times", len(got))
	}
	if got := auditLines(r, fakeupstream.OpenAIAuthHost); len(got) > 0 {
		t.Errorf("the sandbox tried auth.openai.com: %v", got)
	}

	// The sandbox held the placeholder and nothing real.
	if where := homeHolds(r, placeholder); !contains(where, ".codex/auth.json") {
		t.Errorf("the placeholder is not in the sandbox's ~/.codex/auth.json (found in %v)", where)
	}
	if want := r.Env["HOME"] + "/.codex"; r.Env["CODEX_HOME"] != want {
		t.Errorf("sandbox CODEX_HOME = %q, want %q", r.Env["CODEX_HOME"], want)
	}
	checkNoSecret(t, r, "real access token", real)
	for _, m := range codexSecretMarkers {
		checkNoSecret(t, r, "host auth.json secret "+m, m)
	}
	if t.Failed() {
		row.Notes = ""
	}
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// checkSSEBodies checks that each POST body arrived as Codex sent it: a
// zstd frame when so labelled, JSON otherwise. It returns the encodings
// seen.
func checkSSEBodies(t *testing.T, reqs []fakeupstream.Request) string {
	t.Helper()
	seen := map[string]bool{}
	for _, q := range reqs {
		enc := q.Header.Get("Content-Encoding")
		switch enc {
		case "zstd":
			if !bytes.HasPrefix(q.Body, zstdMagic) {
				t.Errorf("POST %s: Content-Encoding zstd but the body is not a zstd frame (% x…)", q.Path, q.Body[:min(8, len(q.Body))])
			}
		case "":
			enc = "identity"
			if !json.Valid(q.Body) {
				t.Errorf("POST %s: the plain body is not JSON", q.Path)
			}
		}
		seen["Content-Encoding: "+enc] = true
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), ", ")
}

// describeToken says what an Authorization value held without printing a
// token.
func describeToken(got, real, placeholder string) string {
	switch {
	case got == "":
		return "(none)"
	case strings.Contains(got, placeholder):
		return "(the placeholder)"
	case strings.Contains(got, real):
		return "(the real token, mangled)"
	default:
		return "(something else)"
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// codexHost is what the host's fixture auth.json holds.
type codexHost struct {
	accessToken, accountID string
}

// codexHostPlan provisions the Codex profile from a host CODEX_HOME
// holding the fixture auth.json (ChatGPT sign-in).
func codexHostPlan(t *testing.T) (provision.Plan, codexHost) {
	t.Helper()
	hostHome := t.TempDir()
	codexHome := filepath.Join(hostHome, "codex-home")
	if err := os.MkdirAll(codexHome, 0o700); err != nil {
		t.Fatal(err)
	}
	fixture, err := os.ReadFile(codexFixture)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(codexHome, "auth.json"), fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	var host struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
			AccountID   string `json:"account_id"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(fixture, &host); err != nil || host.Tokens.AccessToken == "" {
		t.Fatalf("fixture %s: %v", codexFixture, err)
	}
	plan, err := provision.Build(provision.Options{
		HostHome:               hostHome,
		HostEnv:                map[string]string{"CODEX_HOME": codexHome},
		ForwardHostCredentials: true,
	}, provision.Codex{})
	if err != nil {
		t.Fatalf("provision.Build(codex) = %v", err)
	}
	placeholder := plan.Egress.Slots[provision.CodexSlot].Placeholder
	if placeholder == "" || placeholder == host.Tokens.AccessToken {
		t.Fatalf("codex slot placeholder = %q", placeholder)
	}
	return plan, codexHost{accessToken: host.Tokens.AccessToken, accountID: host.Tokens.AccountID}
}
