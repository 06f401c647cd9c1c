package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
)

// claudeFixtureDir holds the Claude Code .credentials.json fixtures.
var claudeFixtureDir = filepath.Join("..", "testdata", "claude")

// Host env values of these tests: fake, with markers to grep for.
const (
	claudeEnvOAuth     = "sk-ant-oat01-REALENVOAUTH0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefAA"
	claudeEnvAPIKey    = "sk-ant-api03-REALENVAPIKEY123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdeAA"
	claudeEnvAuthToken = "gw-REALENVAUTHTOKEN0123456789abcdefghij"
)

var claudeBlocks = []policy.Block{
	{Host: "platform.claude.com", Path: "/v1/oauth/token", Reason: "OAuth token refresh happens on the host; cork keeps the sandbox's token fresh"},
	{Host: "console.anthropic.com", Path: "/v1/oauth/token", Reason: "OAuth token refresh happens on the host; cork keeps the sandbox's token fresh"},
}

func claudeConfigDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(claudeFixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// claudeHost is a fixture .credentials.json, decoded loosely.
type claudeHost struct {
	ClaudeAiOauth struct {
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
	} `json:"claudeAiOauth"`
}

func readClaudeHost(t *testing.T, name string) claudeHost {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(claudeFixtureDir, name, ".credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h claudeHost
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// claudeSecrets lists every secret string of the fixtures and the host env
// values of these tests.
func claudeSecrets(t *testing.T) []string {
	t.Helper()
	h := readClaudeHost(t, "oauth")
	return []string{
		h.ClaudeAiOauth.AccessToken, h.ClaudeAiOauth.RefreshToken,
		"REALACCESS", "REALREFRESH", "REALMCPACCESS", "REALMCPREFRESH",
		claudeEnvOAuth, claudeEnvAPIKey, claudeEnvAuthToken, "REALENV",
	}
}

// claudeOpts forwards host credentials from the fixture directory name
// (CLAUDE_CONFIG_DIR), with extra host env.
func claudeOpts(t *testing.T, name string, env map[string]string) Options {
	t.Helper()
	hostEnv := map[string]string{"CLAUDE_CONFIG_DIR": claudeConfigDir(t, name)}
	for k, v := range env {
		hostEnv[k] = v
	}
	return Options{
		HostHome:               t.TempDir(),
		HostEnv:                hostEnv,
		ForwardHostCredentials: true,
		Now:                    func() time.Time { return testNow },
	}
}

func buildClaude(t *testing.T, opts Options) Plan {
	t.Helper()
	plan, err := Build(opts, Claude{})
	if err != nil {
		t.Fatalf("Build(claude) error = %v", err)
	}
	return plan
}

// noReads fails the test if a host file is read.
func noReads(t *testing.T) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		t.Errorf("ReadFile(%q) called; want no host file read", name)
		return nil, os.ErrPermission
	}
}

func TestClaudeModes(t *testing.T) {
	oauth := readClaudeHost(t, "oauth").ClaudeAiOauth.AccessToken
	tests := []struct {
		name        string
		opts        func(t *testing.T) Options
		slot        string
		tokenEnv    string
		sandboxVar  string // holds the placeholder
		real        string // shapes the placeholder
		prefix      string
		provisioned bool // the real token is in ProvisionedEnv (and a Source)
		route       policy.Route
	}{
		{
			name: "credentials file", opts: func(t *testing.T) Options { return claudeOpts(t, "oauth", nil) },
			slot: "claude", tokenEnv: "CORK_CLAUDE_ACCESS_TOKEN", sandboxVar: "CLAUDE_CODE_OAUTH_TOKEN",
			real: oauth, prefix: "sk-ant-oat01-", provisioned: true,
			route: policy.Route{Host: "api.anthropic.com", Slot: "claude", Header: "Authorization", Scheme: "bearer"},
		},
		{
			name: "minimal credentials file", opts: func(t *testing.T) Options { return claudeOpts(t, "minimal", nil) },
			slot: "claude", tokenEnv: "CORK_CLAUDE_ACCESS_TOKEN", sandboxVar: "CLAUDE_CODE_OAUTH_TOKEN",
			real: oauth, prefix: "sk-ant-oat01-", provisioned: true,
			route: policy.Route{Host: "api.anthropic.com", Slot: "claude", Header: "Authorization", Scheme: "bearer"},
		},
		{
			name: "credentials file wins over keys",
			opts: func(t *testing.T) Options {
				return claudeOpts(t, "oauth", map[string]string{"ANTHROPIC_API_KEY": claudeEnvAPIKey, "ANTHROPIC_AUTH_TOKEN": claudeEnvAuthToken})
			},
			slot: "claude", tokenEnv: "CORK_CLAUDE_ACCESS_TOKEN", sandboxVar: "CLAUDE_CODE_OAUTH_TOKEN",
			real: oauth, prefix: "sk-ant-oat01-", provisioned: true,
			route: policy.Route{Host: "api.anthropic.com", Slot: "claude", Header: "Authorization", Scheme: "bearer"},
		},
		{
			name: "CLAUDE_CODE_OAUTH_TOKEN wins over the file",
			opts: func(t *testing.T) Options {
				o := claudeOpts(t, "oauth", map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": claudeEnvOAuth, "ANTHROPIC_API_KEY": claudeEnvAPIKey})
				o.ReadFile = noReads(t)
				return o
			},
			slot: "claude", tokenEnv: "CLAUDE_CODE_OAUTH_TOKEN", sandboxVar: "CLAUDE_CODE_OAUTH_TOKEN",
			real: claudeEnvOAuth, prefix: "sk-ant-oat01-",
			route: policy.Route{Host: "api.anthropic.com", Slot: "claude", Header: "Authorization", Scheme: "bearer"},
		},
		{
			name: "API key without a file",
			opts: func(t *testing.T) Options {
				o := claudeOpts(t, "oauth", map[string]string{"ANTHROPIC_API_KEY": claudeEnvAPIKey, "ANTHROPIC_AUTH_TOKEN": claudeEnvAuthToken})
				o.HostEnv["CLAUDE_CONFIG_DIR"] = t.TempDir()
				return o
			},
			slot: "anthropic", tokenEnv: "ANTHROPIC_API_KEY", sandboxVar: "ANTHROPIC_API_KEY",
			real: claudeEnvAPIKey, prefix: "sk-ant-api03-",
			route: policy.Route{Host: "api.anthropic.com", Slot: "anthropic", Header: "X-Api-Key", Scheme: "raw"},
		},
		{
			name: "auth token without a file",
			opts: func(t *testing.T) Options {
				o := claudeOpts(t, "oauth", map[string]string{"ANTHROPIC_AUTH_TOKEN": claudeEnvAuthToken})
				delete(o.HostEnv, "CLAUDE_CONFIG_DIR") // ~/.claude does not exist
				return o
			},
			slot: "claude", tokenEnv: "ANTHROPIC_AUTH_TOKEN", sandboxVar: "ANTHROPIC_AUTH_TOKEN",
			real: claudeEnvAuthToken, prefix: "",
			route: policy.Route{Host: "api.anthropic.com", Slot: "claude", Header: "Authorization", Scheme: "bearer"},
		},
		{
			name: "forwarding off, nothing set",
			opts: func(t *testing.T) Options {
				o := claudeOpts(t, "oauth", nil)
				o.ForwardHostCredentials = false
				o.ReadFile = noReads(t)
				return o
			},
			slot: "claude", tokenEnv: "CLAUDE_CODE_OAUTH_TOKEN", sandboxVar: "CLAUDE_CODE_OAUTH_TOKEN",
			prefix: "sk-ant-oat01-",
			route:  policy.Route{Host: "api.anthropic.com", Slot: "claude", Header: "Authorization", Scheme: "bearer"},
		},
		{
			name: "forwarding off, API key",
			opts: func(t *testing.T) Options {
				o := claudeOpts(t, "oauth", map[string]string{"ANTHROPIC_API_KEY": claudeEnvAPIKey})
				o.ForwardHostCredentials = false
				o.ReadFile = noReads(t)
				return o
			},
			slot: "anthropic", tokenEnv: "ANTHROPIC_API_KEY", sandboxVar: "ANTHROPIC_API_KEY",
			real: claudeEnvAPIKey, prefix: "sk-ant-api03-",
			route: policy.Route{Host: "api.anthropic.com", Slot: "anthropic", Header: "X-Api-Key", Scheme: "raw"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts(t)
			plan := buildClaude(t, opts)

			if got, want := plan.Egress.TokenEnvMap, map[string]string{tt.slot: tt.tokenEnv}; !reflect.DeepEqual(got, want) {
				t.Errorf("TokenEnvMap = %v, want %v", got, want)
			}
			if got, want := keys(plan.Egress.Slots), []string{tt.slot}; !reflect.DeepEqual(got, want) {
				t.Fatalf("Slots = %v, want %v", got, want)
			}
			ph := plan.Egress.Slots[tt.slot].Placeholder
			wantLen := 108
			if tt.real != "" {
				wantLen = len(tt.real)
			}
			if !strings.HasPrefix(ph, tt.prefix) || len(ph) != wantLen || ph == tt.real {
				t.Errorf("placeholder = %q, want prefix %q and %d characters, not the real token", ph, tt.prefix, wantLen)
			}
			wantEnv := map[string]string{tt.sandboxVar: ph, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
			if got := plan.Env; !reflect.DeepEqual(got, wantEnv) {
				t.Errorf("Env = %v, want %v", got, wantEnv)
			}
			if got, want := plan.Egress.Routes, []policy.Route{tt.route}; !reflect.DeepEqual(got, want) {
				t.Errorf("Routes = %+v, want %+v", got, want)
			}
			if got := plan.Egress.Block; !reflect.DeepEqual(got, claudeBlocks) {
				t.Errorf("Block = %+v, want %+v", got, claudeBlocks)
			}
			if len(plan.Egress.Allow) != 0 {
				t.Errorf("Allow = %v, want none", plan.Egress.Allow)
			}
			if len(plan.Files) != 1 || plan.Files[0].Path != ".claude.json" || plan.Files[0].Mode != 0o600 {
				t.Errorf("Files = %v, want only .claude.json, mode 0600", plan)
			}

			if !tt.provisioned {
				if len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
					t.Errorf("ProvisionedEnv keys = %v, Sources = %v; want none: the token is in the host env", keys(plan.ProvisionedEnv), plan)
				}
				return
			}
			if got, want := revealed(plan.ProvisionedEnv), map[string]string{"CORK_CLAUDE_ACCESS_TOKEN": tt.real}; !reflect.DeepEqual(got, want) {
				t.Errorf("ProvisionedEnv keys = %v, want exactly [CORK_CLAUDE_ACCESS_TOKEN] holding the host access token", keys(got))
			}
			wantPath := filepath.Join(opts.HostEnv["CLAUDE_CONFIG_DIR"], ".credentials.json")
			if len(plan.Sources) != 1 || plan.Sources[0].Path != wantPath {
				t.Fatalf("Sources = %v, want [%s]", plan, wantPath)
			}
			got, err := plan.Sources[0].Read()
			if err != nil || !reflect.DeepEqual(got, plan.ProvisionedEnv) {
				t.Errorf("Sources[0].Read() = keys %v, %v; want the provisioned env", keys(got), err)
			}
		})
	}
}

func TestClaudeDefaultConfigDir(t *testing.T) {
	home := t.TempDir()
	copyClaudeFixture(t, "oauth", filepath.Join(home, ".claude"))
	plan := buildClaude(t, Options{HostHome: home, ForwardHostCredentials: true, Now: func() time.Time { return testNow }})
	if got, want := plan.Egress.TokenEnvMap["claude"], ClaudeAccessTokenEnv; got != want {
		t.Errorf("TokenEnvMap[claude] = %q, want %q from ~/.claude/.credentials.json", got, want)
	}
	if want := filepath.Join(home, ".claude", ".credentials.json"); len(plan.Sources) != 1 || plan.Sources[0].Path != want {
		t.Errorf("Sources = %v, want [%s]", plan, want)
	}
}

func copyClaudeFixture(t *testing.T, name, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(claudeFixtureDir, name, ".credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".credentials.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestClaudeStateFile(t *testing.T) {
	t.Run("oauth", func(t *testing.T) {
		plan := buildClaude(t, claudeOpts(t, "oauth", nil))
		if got, want := string(file(t, plan, ClaudeStateFile).Data), "{\n  \"hasCompletedOnboarding\": true\n}\n"; got != want {
			t.Errorf("%s = %q, want %q", ClaudeStateFile, got, want)
		}
	})
	t.Run("api key", func(t *testing.T) {
		opts := claudeOpts(t, "oauth", map[string]string{"ANTHROPIC_API_KEY": claudeEnvAPIKey})
		opts.ForwardHostCredentials = false
		plan := buildClaude(t, opts)
		ph := plan.Env["ANTHROPIC_API_KEY"]
		var state struct {
			HasCompletedOnboarding bool `json:"hasCompletedOnboarding"`
			CustomAPIKeyResponses  struct {
				Approved []string `json:"approved"`
				Rejected []string `json:"rejected"`
			} `json:"customApiKeyResponses"`
		}
		data := file(t, plan, ClaudeStateFile).Data
		if err := json.Unmarshal(data, &state); err != nil {
			t.Fatalf("%s: %v\n%s", ClaudeStateFile, err, data)
		}
		r := state.CustomAPIKeyResponses
		if !state.HasCompletedOnboarding || !reflect.DeepEqual(r.Approved, []string{ph[len(ph)-20:]}) || r.Rejected == nil || len(r.Rejected) != 0 {
			t.Errorf("%s = %s, want onboarding done and the placeholder's last 20 characters approved", ClaudeStateFile, data)
		}
		if strings.Contains(string(data), "primaryApiKey") {
			t.Errorf("%s = %s, must not carry a primaryApiKey", ClaudeStateFile, data)
		}
	})
}

func TestClaudeNoRealSecretsInSandbox(t *testing.T) {
	for name, opts := range map[string]Options{
		"file":       claudeOpts(t, "oauth", nil),
		"oauth env":  claudeOpts(t, "oauth", map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": claudeEnvOAuth}),
		"api key":    claudeOpts(t, "missing", map[string]string{"ANTHROPIC_API_KEY": claudeEnvAPIKey}),
		"auth token": claudeOpts(t, "missing", map[string]string{"ANTHROPIC_AUTH_TOKEN": claudeEnvAuthToken}),
	} {
		t.Run(name, func(t *testing.T) {
			plan := buildClaude(t, opts)
			view := sandboxView(t, plan)
			printed := fmt.Sprintf("%v %+v %#v", plan, plan, plan)
			js, err := json.Marshal(plan)
			if err != nil {
				t.Fatalf("json.Marshal(plan) error = %v", err)
			}
			for _, s := range claudeSecrets(t) {
				if strings.Contains(view, s) {
					t.Errorf("sandbox files, env or policy contain real secret %.24q...", s)
				}
				if strings.Contains(printed, s) || strings.Contains(string(js), s) {
					t.Errorf("printed or JSON plan contains real secret %.24q...", s)
				}
			}
			// The refresh token and the MCP tokens go nowhere, not even
			// into the provisioned env or a Source's answer.
			var provisioned strings.Builder
			for k, v := range plan.ProvisionedEnv {
				provisioned.WriteString(k + "=" + v.Reveal() + "\n")
			}
			for _, s := range plan.Sources {
				m, err := s.Read()
				if err != nil {
					t.Fatalf("Source.Read() error = %v", err)
				}
				for k, v := range m {
					provisioned.WriteString(k + "=" + v.Reveal() + "\n")
				}
			}
			for _, s := range []string{"REALREFRESH", "REALMCP", "sk-ant-ort01-"} {
				if strings.Contains(provisioned.String(), s) {
					t.Errorf("provisioned env or Source holds %q", s)
				}
			}
		})
	}
}

func TestClaudePlaceholdersRandom(t *testing.T) {
	a := buildClaude(t, claudeOpts(t, "oauth", nil))
	b := buildClaude(t, claudeOpts(t, "oauth", nil))
	pa, pb := a.Egress.Slots["claude"].Placeholder, b.Egress.Slots["claude"].Placeholder
	if pa == pb {
		t.Errorf("two Builds: placeholder %q both times, want random", pa)
	}
	if a.Env[ClaudeOAuthTokenEnv] != pa || b.Env[ClaudeOAuthTokenEnv] != pb {
		t.Error("sandbox CLAUDE_CODE_OAUTH_TOKEN is not the slot's placeholder")
	}
	if strings.Trim(strings.TrimPrefix(pa, "sk-ant-oat01-"), alnum) != "" {
		t.Errorf("placeholder %q: want alphanumerics after the prefix", pa)
	}
}

func TestClaudeMalformed(t *testing.T) {
	tests := []struct {
		fixture string
		want    string // after "claude: read <path>: "
	}{
		{"bad/badjson", "invalid JSON at byte"},
		{"bad/null", "want a JSON object, got null"},
		{"bad/nooauth", "claudeAiOauth: missing (sign in on the host with `claude`)"},
		{"bad/oauthnotobject", "claudeAiOauth: want a JSON object"},
		{"bad/noaccess", "claudeAiOauth.accessToken: missing or empty"},
		{"bad/emptyaccess", "claudeAiOauth.accessToken: missing or empty"},
		{"bad/accessnotstring", "claudeAiOauth.accessToken: want a string"},
		{"bad/badexpiry", "claudeAiOauth.expiresAt: want milliseconds since the epoch"},
		{"bad/noinference", "claudeAiOauth.scopes: no user:inference scope"},
		{"bad/scopesnotlist", "claudeAiOauth.scopes: want a list of strings"},
		{"bad/expired", "claudeAiOauth.expiresAt: the access token expired at 2026-11-01T20:00:00Z; run `claude` on the host once to refresh it"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			// A key in the env must not paper over a broken file.
			opts := claudeOpts(t, tt.fixture, map[string]string{"ANTHROPIC_API_KEY": claudeEnvAPIKey})
			path := filepath.Join(opts.HostEnv["CLAUDE_CONFIG_DIR"], ".credentials.json")
			_, err := Build(opts, Claude{})
			checkReadError(t, "claude", path, err, tt.want, claudeSecrets(t))
		})
	}
}

func TestClaudeUnreadable(t *testing.T) {
	testUnreadable(t, Claude{}, "CLAUDE_CONFIG_DIR", ".credentials.json", "sign in on the host with `claude`, set CLAUDE_CODE_OAUTH_TOKEN")
}

func TestClaudeSourceFollowsRefresh(t *testing.T) {
	dir := t.TempDir()
	copyClaudeFixture(t, "oauth", dir)
	opts := Options{HostEnv: map[string]string{"CLAUDE_CONFIG_DIR": dir}, ForwardHostCredentials: true, Now: func() time.Time { return testNow }}
	plan := buildClaude(t, opts)
	src := plan.Sources[0]

	// The host's Claude Code refreshes: a new access token, expired or not.
	const refreshed = "sk-ant-oat01-REALREFRESHEDACCESS"
	data := fmt.Sprintf(`{"claudeAiOauth":{"accessToken":%q,"refreshToken":"sk-ant-ort01-REALNEXT","expiresAt":1}}`, refreshed)
	if err := os.WriteFile(filepath.Join(dir, ".credentials.json"), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := src.Read()
	if err != nil || !reflect.DeepEqual(revealed(got), map[string]string{ClaudeAccessTokenEnv: refreshed}) {
		t.Errorf("Source.Read() after a refresh = keys %v, %v; want the new access token", keys(got), err)
	}

	copyClaudeFixture(t, "bad/noaccess", dir)
	if _, err := src.Read(); err == nil || !strings.Contains(err.Error(), "claudeAiOauth.accessToken: missing or empty") {
		t.Errorf("Source.Read() of a broken file error = %v, want claudeAiOauth.accessToken", err)
	}
	if err := os.Remove(filepath.Join(dir, ".credentials.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Read(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Source.Read() of a removed file error = %v, want not exist", err)
	}
}
