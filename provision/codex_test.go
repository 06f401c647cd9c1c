package provision

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
)

var chatGPTRoutes = []policy.Route{
	{Host: "chatgpt.com", Slot: CodexSlot, Header: "Authorization", Scheme: policy.SchemeBearer},
	{Host: "*.chatgpt.com", Slot: CodexSlot, Header: "Authorization", Scheme: policy.SchemeBearer},
	{Host: "chat.openai.com", Slot: CodexSlot, Header: "Authorization", Scheme: policy.SchemeBearer},
}

var refreshBlock = []policy.Block{{
	Host:   "auth.openai.com",
	Path:   "/oauth/token",
	Reason: "token refresh happens on the host; cork keeps the sandbox's token fresh",
}}

func TestCodexChatGPT(t *testing.T) {
	for _, fixture := range []string{"chatgpt", "chatgpt-noauthmode"} {
		t.Run(fixture, func(t *testing.T) {
			host := readHostAuth(t, fixture)
			opts := forwardOpts(t, fixture)
			plan := mustBuild(t, opts)

			if got, want := revealed(plan.ProvisionedEnv), map[string]string{CodexAccessTokenEnv: host.Tokens.AccessToken}; !reflect.DeepEqual(got, want) {
				t.Errorf("ProvisionedEnv keys = %v, want exactly [%s] holding the host access token", keys(got), CodexAccessTokenEnv)
			}
			if got, want := plan.Egress.TokenEnvMap, map[string]string{"codex": "CORK_CODEX_ACCESS_TOKEN"}; !reflect.DeepEqual(got, want) {
				t.Errorf("TokenEnvMap = %v, want %v", got, want)
			}
			if got, want := plan.Egress.Routes, chatGPTRoutes; !reflect.DeepEqual(got, want) {
				t.Errorf("Routes = %+v, want %+v", got, want)
			}
			if got, want := plan.Egress.Block, refreshBlock; !reflect.DeepEqual(got, want) {
				t.Errorf("Block = %+v, want %+v", got, want)
			}
			if len(plan.Egress.Allow) != 0 {
				t.Errorf("Allow = %v, want none", plan.Egress.Allow)
			}
			if got, want := plan.Env, map[string]string{"CODEX_HOME": "~/.codex"}; !reflect.DeepEqual(got, want) {
				t.Errorf("Env = %v, want %v", got, want)
			}

			auth := file(t, plan, CodexAuthFile)
			if auth.Mode != 0o600 {
				t.Errorf("%s mode = %v, want 0600", auth.Path, auth.Mode)
			}
			dummy := decodeAuth(t, auth.Data)
			if got, want := keys(plan.Egress.Slots), []string{"codex"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("Slots = %v, want %v", got, want)
			}
			if got, want := plan.Egress.Slots["codex"].Placeholder, dummy.Tokens.AccessToken; got != want {
				t.Errorf("Slots[codex].Placeholder = %q, want the dummy access token %q", got, want)
			}
			cfg := file(t, plan, CodexConfigFile)
			if got, want := string(cfg.Data), "cli_auth_credentials_store = \"file\"\n"; got != want {
				t.Errorf("%s = %q, want %q", cfg.Path, got, want)
			}
			if len(plan.Files) != 2 {
				t.Errorf("Files = %v, want auth.json and config.toml", plan)
			}

			wantPath := filepath.Join(opts.HostEnv["CODEX_HOME"], "auth.json")
			if len(plan.Sources) != 1 || plan.Sources[0].Path != wantPath {
				t.Fatalf("Sources = %v, want [%s]", plan, wantPath)
			}
			got, err := plan.Sources[0].Read()
			if err != nil {
				t.Fatalf("Sources[0].Read() error = %v", err)
			}
			if !reflect.DeepEqual(got, plan.ProvisionedEnv) {
				t.Errorf("Sources[0].Read() keys = %v, want the provisioned env", keys(got))
			}
		})
	}
}

func TestCodexDummyAuthJSON(t *testing.T) {
	host := readHostAuth(t, "chatgpt")
	plan := mustBuild(t, forwardOpts(t, "chatgpt"))
	data := file(t, plan, CodexAuthFile).Data
	if !json.Valid(data) {
		t.Fatalf("dummy auth.json is not valid JSON:\n%s", data)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(raw), []string{"OPENAI_API_KEY", "auth_mode", "last_refresh", "tokens"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dummy auth.json keys = %v, want %v", got, want)
	}
	if got := string(raw["OPENAI_API_KEY"]); got != "null" {
		t.Errorf("dummy OPENAI_API_KEY = %s, want null", got)
	}
	d := decodeAuth(t, data)
	if d.AuthMode != "chatgpt" {
		t.Errorf("dummy auth_mode = %q, want chatgpt", d.AuthMode)
	}
	if d.LastRefresh == nil {
		t.Fatal("dummy last_refresh missing")
	}
	if got, want := *d.LastRefresh, testNow.Format(time.RFC3339); got != want {
		t.Errorf("dummy last_refresh = %q, want %q", got, want)
	}
	if d.Tokens.AccountID == nil || *d.Tokens.AccountID != *host.Tokens.AccountID {
		t.Errorf("dummy account_id = %v, want the real one %q", d.Tokens.AccountID, *host.Tokens.AccountID)
	}

	// id_token: only the copied non-secret claims, plus iat and exp.
	idc := jwtClaims(t, d.Tokens.IDToken)
	if got, want := keys(idc), []string{"email", "exp", "https://api.openai.com/auth", "iat"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dummy id_token claims = %v, want %v", got, want)
	}
	if got, want := idc["email"], "alice@example.com"; got != want {
		t.Errorf("dummy id_token email = %v, want %v", got, want)
	}
	wantAuth := map[string]any{
		"chatgpt_plan_type":  "plus",
		"chatgpt_user_id":    "user-AliceExampleUser01",
		"chatgpt_account_id": "7f1c2e4a-5b6d-4e8f-9a0b-1c2d3e4f5a6b",
	}
	if got := idc["https://api.openai.com/auth"]; !reflect.DeepEqual(got, wantAuth) {
		t.Errorf("dummy id_token auth claim = %v, want %v", got, wantAuth)
	}
	if exp := claimTime(t, idc, "exp"); exp.Before(testNow.AddDate(5, 0, 0)) {
		t.Errorf("dummy id_token exp = %v, want > 5 years after %v", exp, testNow)
	}

	// access_token: far-future exp, random jti.
	ac := jwtClaims(t, d.Tokens.AccessToken)
	if exp := claimTime(t, ac, "exp"); exp.Before(testNow.AddDate(5, 0, 0)) {
		t.Errorf("dummy access_token exp = %v, want > 5 years after %v", exp, testNow)
	}
	if jti, _ := ac["jti"].(string); len(jti) != 36 {
		t.Errorf("dummy access_token jti = %v, want a UUID", ac["jti"])
	}

	// refresh_token: shaped like the real one, not it.
	if d.Tokens.RefreshToken == host.Tokens.RefreshToken {
		t.Error("dummy refresh_token equals the real one")
	}
	if !strings.HasPrefix(d.Tokens.RefreshToken, "rt_") || len(d.Tokens.RefreshToken) != len(host.Tokens.RefreshToken) {
		t.Errorf("dummy refresh_token = %q, want rt_ and %d characters", d.Tokens.RefreshToken, len(host.Tokens.RefreshToken))
	}
	if d.Tokens.IDToken == host.Tokens.IDToken || d.Tokens.AccessToken == host.Tokens.AccessToken {
		t.Error("dummy tokens equal the real ones")
	}
}

func claimTime(t *testing.T, claims map[string]any, name string) time.Time {
	t.Helper()
	n, ok := claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %s = %v, want a number", name, claims[name])
	}
	s, err := n.Int64()
	if err != nil {
		t.Fatalf("claim %s = %v: %v", name, n, err)
	}
	return time.Unix(s, 0)
}

func TestCodexNoRealSecretsInSandbox(t *testing.T) {
	for _, fixture := range []string{"chatgpt", "chatgpt-noauthmode", "apikey"} {
		t.Run(fixture, func(t *testing.T) {
			plan := mustBuild(t, forwardOpts(t, fixture))
			view := sandboxView(t, plan)
			printed := fmt.Sprintf("%v %+v %#v", plan, plan, plan)
			js, err := json.Marshal(plan)
			if err != nil {
				t.Fatalf("json.Marshal(plan) error = %v", err)
			}
			for _, s := range secrets(t, fixture) {
				if strings.Contains(view, s) {
					t.Errorf("sandbox files, env or policy contain real secret %.24q...", s)
				}
				if strings.Contains(printed, s) || strings.Contains(string(js), s) {
					t.Errorf("printed or JSON plan contains real secret %.24q...", s)
				}
			}
		})
	}
}

func TestCodexAPIKey(t *testing.T) {
	host := readHostAuth(t, "apikey")
	real := *host.OpenAIAPIKey
	plan := mustBuild(t, forwardOpts(t, "apikey"))

	if got, want := revealed(plan.ProvisionedEnv), map[string]string{"OPENAI_API_KEY": real}; !reflect.DeepEqual(got, want) {
		t.Errorf("ProvisionedEnv keys = %v, want exactly [OPENAI_API_KEY] holding the host key", keys(got))
	}
	if got, want := plan.Egress.TokenEnvMap, map[string]string{"openai": "OPENAI_API_KEY"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TokenEnvMap = %v, want %v", got, want)
	}
	wantRoutes := []policy.Route{{Host: "api.openai.com", Slot: "openai", Header: "Authorization", Scheme: "bearer"}}
	if got := plan.Egress.Routes; !reflect.DeepEqual(got, wantRoutes) {
		t.Errorf("Routes = %+v, want %+v", got, wantRoutes)
	}
	if len(plan.Egress.Block) != 0 {
		t.Errorf("Block = %+v, want none", plan.Egress.Block)
	}
	ph := plan.Egress.Slots["openai"].Placeholder
	if !strings.HasPrefix(ph, "sk-proj-") || len(ph) != len(real) || ph == real {
		t.Errorf("Slots[openai].Placeholder = %q, want sk-proj- and %d characters, not the real key", ph, len(real))
	}
	if got := plan.Env["OPENAI_API_KEY"]; got != ph {
		t.Errorf("Env[OPENAI_API_KEY] = %q, want the placeholder %q", got, ph)
	}
	d := decodeAuth(t, file(t, plan, CodexAuthFile).Data)
	if d.AuthMode != "apikey" || d.OpenAIAPIKey == nil || *d.OpenAIAPIKey != ph || d.Tokens != nil {
		t.Errorf("dummy auth.json = %+v, want apikey mode with the placeholder and no tokens", d)
	}
	if len(plan.Sources) != 1 {
		t.Fatalf("Sources = %v, want the host auth.json", plan)
	}
	if got, err := plan.Sources[0].Read(); err != nil || !reflect.DeepEqual(got, plan.ProvisionedEnv) {
		t.Errorf("Sources[0].Read() = keys %v, %v; want the provisioned env", keys(got), err)
	}
}

func TestCodexAPIKeyFromHostEnv(t *testing.T) {
	const real = "sk-REALENVKEY0123456789abcdefghijklmnopqrstuvwxyzAB"
	opts := forwardOpts(t, "chatgpt")
	opts.HostEnv = map[string]string{"CODEX_HOME": t.TempDir(), "OPENAI_API_KEY": real}
	plan := mustBuild(t, opts)
	if len(plan.ProvisionedEnv) != 0 {
		t.Errorf("ProvisionedEnv keys = %v, want none: the key is in the host env", keys(plan.ProvisionedEnv))
	}
	if got, want := plan.Egress.TokenEnvMap, map[string]string{"openai": "OPENAI_API_KEY"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TokenEnvMap = %v, want %v", got, want)
	}
	ph := plan.Env["OPENAI_API_KEY"]
	if !strings.HasPrefix(ph, "sk-") || strings.HasPrefix(ph, "sk-proj-") || len(ph) != len(real) || ph == real {
		t.Errorf("Env[OPENAI_API_KEY] = %q, want sk- and %d characters", ph, len(real))
	}
	if strings.Contains(sandboxView(t, plan), real) {
		t.Error("sandbox holds the real key")
	}
	if len(plan.Sources) != 0 {
		t.Errorf("Sources = %v, want none", plan)
	}
}

func TestCodexHonoursCodexHome(t *testing.T) {
	// The default is <HostHome>/.codex: put the ChatGPT fixture there.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".codex"), 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(fixtureDir, "chatgpt", "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".codex", "auth.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{HostHome: home, ForwardHostCredentials: true}

	plan := mustBuild(t, opts)
	if _, ok := plan.Egress.Slots["codex"]; !ok {
		t.Errorf("without CODEX_HOME: slots = %v, want codex from ~/.codex", keys(plan.Egress.Slots))
	}

	opts.HostEnv = map[string]string{"CODEX_HOME": codexHome(t, "apikey")}
	plan = mustBuild(t, opts)
	if _, ok := plan.Egress.Slots["openai"]; !ok {
		t.Errorf("with CODEX_HOME: slots = %v, want openai from $CODEX_HOME", keys(plan.Egress.Slots))
	}
	if got, want := plan.Sources[0].Path, filepath.Join(opts.HostEnv["CODEX_HOME"], "auth.json"); got != want {
		t.Errorf("Sources[0].Path = %q, want %q", got, want)
	}
}

func TestCodexMalformed(t *testing.T) {
	tests := []struct {
		fixture string
		want    string // after "read <path>: "
	}{
		{"bad/badjson", "invalid JSON at byte"},
		{"bad/notokens", "tokens: missing"},
		{"bad/noaccess", "tokens.access_token: missing or empty"},
		{"bad/idpadding", "tokens.id_token: malformed JWT: payload: base64url padding is not allowed"},
		{"bad/idtwoparts", "tokens.id_token: malformed JWT: want 3 parts, got 2"},
		{"bad/accessnotjwt", "tokens.access_token: malformed JWT: want 3 parts, got 1"},
		{"bad/nolastrefresh", "last_refresh: missing or empty"},
		{"bad/badlastrefresh", "last_refresh: want an RFC 3339 time"},
		{"bad/apikeynull", "OPENAI_API_KEY: missing or empty"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			opts := forwardOpts(t, tt.fixture)
			path := filepath.Join(opts.HostEnv["CODEX_HOME"], "auth.json")
			_, err := Build(opts, Codex{})
			checkReadError(t, "codex", path, err, tt.want, secrets(t, "chatgpt"))
		})
	}
}

func TestCodexUnreadable(t *testing.T) {
	testUnreadable(t, Codex{}, "CODEX_HOME", "auth.json", "sign in on the host with `codex login`")
}

func TestCodexForwardOff(t *testing.T) {
	opts := Options{
		HostHome: "/nonexistent/home",
		HostEnv:  map[string]string{"CODEX_HOME": "/nonexistent/codex", "OPENAI_API_KEY": "sk-REALHOSTKEYthatmustnotbeused000000"},
		ReadFile: func(name string) ([]byte, error) {
			t.Errorf("ReadFile(%q) called with forwarding off", name)
			return nil, os.ErrPermission
		},
		Now: func() time.Time { return testNow },
	}
	plan := mustBuild(t, opts)
	if len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
		t.Errorf("ProvisionedEnv keys = %v, Sources = %v; want none", keys(plan.ProvisionedEnv), plan)
	}
	if got, want := plan.Egress.TokenEnvMap, map[string]string{"codex": "CORK_CODEX_ACCESS_TOKEN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TokenEnvMap = %v, want %v", got, want)
	}
	if got := plan.Egress.Routes; !reflect.DeepEqual(got, chatGPTRoutes) {
		t.Errorf("Routes = %+v, want %+v", got, chatGPTRoutes)
	}
	d := decodeAuth(t, file(t, plan, CodexAuthFile).Data)
	if d.AuthMode != "chatgpt" || d.Tokens == nil || d.Tokens.AccountID != nil || d.LastRefresh == nil {
		t.Fatalf("dummy auth.json = %+v, want chatgpt mode, null account_id, last_refresh", d)
	}
	if got, want := keys(jwtClaims(t, d.Tokens.IDToken)), []string{"exp", "iat"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dummy id_token claims = %v, want neutral %v", got, want)
	}
	if got := plan.Egress.Slots["codex"].Placeholder; got != d.Tokens.AccessToken {
		t.Errorf("Slots[codex].Placeholder = %q, want the dummy access token", got)
	}
	if exp := claimTime(t, jwtClaims(t, d.Tokens.AccessToken), "exp"); exp.Before(testNow.AddDate(5, 0, 0)) {
		t.Errorf("dummy access_token exp = %v, want > 5 years ahead", exp)
	}
	if !strings.HasPrefix(d.Tokens.RefreshToken, "rt_") {
		t.Errorf("dummy refresh_token = %q, want rt_ prefix", d.Tokens.RefreshToken)
	}
	if strings.Contains(sandboxView(t, plan), "REALHOSTKEY") {
		t.Error("sandbox holds the host's OPENAI_API_KEY")
	}
}

func TestCodexPlaceholdersRandom(t *testing.T) {
	for _, fixture := range []string{"chatgpt", "apikey"} {
		t.Run(fixture, func(t *testing.T) {
			a := mustBuild(t, forwardOpts(t, fixture))
			b := mustBuild(t, forwardOpts(t, fixture))
			for slot, s := range a.Egress.Slots {
				if s.Placeholder == b.Egress.Slots[slot].Placeholder {
					t.Errorf("two Builds: slot %s placeholder %q both times, want random", slot, s.Placeholder)
				}
			}
			da := decodeAuth(t, file(t, a, CodexAuthFile).Data)
			db := decodeAuth(t, file(t, b, CodexAuthFile).Data)
			if da.Tokens != nil && (da.Tokens.RefreshToken == db.Tokens.RefreshToken || da.Tokens.IDToken == db.Tokens.IDToken) {
				t.Error("two Builds: same dummy refresh or id token, want random")
			}
			if fixture == "apikey" {
				real := *readHostAuth(t, fixture).OpenAIAPIKey
				for _, p := range []Plan{a, b} {
					ph := p.Egress.Slots["openai"].Placeholder
					if len(ph) != len(real) || !strings.HasPrefix(ph, "sk-proj-") {
						t.Errorf("placeholder %q: want %d characters and prefix sk-proj-", ph, len(real))
					}
				}
			}
		})
	}
}

func TestCodexSourceModeChange(t *testing.T) {
	dir := t.TempDir()
	copyFixture := func(name string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(fixtureDir, name, "auth.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "auth.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFixture("chatgpt")
	plan := mustBuild(t, Options{HostEnv: map[string]string{"CODEX_HOME": dir}, ForwardHostCredentials: true})
	copyFixture("apikey")
	if _, err := plan.Sources[0].Read(); err == nil || !strings.Contains(err.Error(), "sign-in mode changed") {
		t.Errorf("Sources[0].Read() after a mode change error = %v, want sign-in mode changed", err)
	}
	copyFixture("bad/idtwoparts")
	if _, err := plan.Sources[0].Read(); err == nil || !strings.Contains(err.Error(), "tokens.id_token: malformed JWT") {
		t.Errorf("Sources[0].Read() of a broken file error = %v, want tokens.id_token", err)
	}
}
