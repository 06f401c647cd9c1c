package provision

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
)

// geminiFixture is the signed-in host directory (the GEMINI_CLI_HOME that
// holds .gemini/); see testdata/gemini/README.md.
var geminiFixture = filepath.Join("..", "testdata", "gemini", "oauth")

// Host API keys of these tests: fake, with markers to grep for.
const (
	geminiEnvKey = "AIzaSyREALGEMINIKEY0123456789abcdefghi"
	googleEnvKey = "AIzaSyREALGOOGLEKEY0123456789abcdefghi"
)

// geminiSecretMarkers are parts of the host files that must never reach a
// plan.
var geminiSecretMarkers = []string{"ya29.a0REALACCESS", "1//0gREALREFRESH", "REALIDSIG", "REALGEMINIKEY", "REALGOOGLEKEY"}

var geminiSignInRoutes = []policy.Route{
	{Host: "cloudcode-pa.googleapis.com", Slot: GeminiOAuthSlot, Header: "Authorization", Scheme: policy.SchemeBearer},
	{Host: "oauth2.googleapis.com", Slot: GeminiOAuthSlot, Header: "Authorization", Scheme: policy.SchemeBearer},
}

var geminiWantBlocks = []policy.Block{
	{Host: "oauth2.googleapis.com", Path: "/token", Reason: "Google token refresh happens on the host; cork keeps the sandbox's token fresh"},
	{Host: "oauth2.googleapis.com", Path: "/revoke", Reason: "Google token refresh happens on the host; cork keeps the sandbox's token fresh"},
}

// geminiHostCreds is a host oauth_creds.json, decoded loosely.
type geminiHostCreds struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Scope        string `json:"scope"`
}

func readGeminiHost(t *testing.T, dir string) geminiHostCreds {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".gemini", "oauth_creds.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c geminiHostCreds
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// geminiHome copies the fixture's .gemini/ into a new directory, for
// tests that change it, and returns that directory.
func geminiHome(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(geminiFixture)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func geminiForward(home string, env map[string]string) Options {
	e := map[string]string{"GEMINI_CLI_HOME": home}
	for k, v := range env {
		e[k] = v
	}
	return Options{HostEnv: e, ForwardHostCredentials: true, Now: func() time.Time { return testNow }}
}

func buildGemini(t *testing.T, opts Options) Plan {
	t.Helper()
	plan, err := Build(opts, Gemini{})
	if err != nil {
		t.Fatalf("Build(gemini) error = %v", err)
	}
	return plan
}

func checkGeminiNoSecrets(t *testing.T, plan Plan, secrets ...string) {
	t.Helper()
	view := sandboxView(t, plan)
	for _, s := range append(secrets, geminiSecretMarkers...) {
		if s != "" && strings.Contains(view, s) {
			t.Errorf("the sandbox or policy holds host secret %.24q", s)
		}
	}
}

// geminiSettings decodes the dummy settings.json strictly.
func geminiSettings(t *testing.T, plan Plan) geminiSettingsJSON {
	t.Helper()
	f := file(t, plan, GeminiSettingsFile)
	var s geminiSettingsJSON
	d := json.NewDecoder(bytes.NewReader(f.Data))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		t.Fatalf("decode %s: %v\n%s", f.Path, err, f.Data)
	}
	if f.Mode != 0o600 {
		t.Errorf("%s mode = %v, want 0600", f.Path, f.Mode)
	}
	return s
}

func checkGeminiCommon(t *testing.T, plan Plan, authType string) {
	t.Helper()
	s := geminiSettings(t, plan)
	if s.Security.Auth.SelectedType != authType {
		t.Errorf("settings security.auth.selectedType = %q, want %q", s.Security.Auth.SelectedType, authType)
	}
	var want geminiSettingsJSON
	want.Security.Auth.SelectedType = authType
	if !reflect.DeepEqual(s, want) {
		t.Errorf("settings = %+v, want usage statistics, telemetry and updates off: %+v", s, want)
	}
	for k, v := range map[string]string{"GEMINI_CLI_HOME": "~/", "GEMINI_CLI_TRUST_WORKSPACE": "true", "NO_BROWSER": "true"} {
		if plan.Env[k] != v {
			t.Errorf("Env[%s] = %q, want %q", k, plan.Env[k], v)
		}
	}
}

func TestGeminiSignIn(t *testing.T) {
	host := readGeminiHost(t, geminiFixture)
	// A key in the env too: the sign-in file wins, as it does for Codex.
	plan := buildGemini(t, geminiForward(geminiFixture, map[string]string{GeminiAPIKeyEnv: geminiEnvKey}))

	if got, want := revealed(plan.ProvisionedEnv), map[string]string{GeminiAccessTokenEnv: host.AccessToken}; !reflect.DeepEqual(got, want) {
		t.Errorf("ProvisionedEnv keys = %v, want exactly [%s] holding the host access token", keys(got), GeminiAccessTokenEnv)
	}
	if got, want := plan.Egress.TokenEnvMap, map[string]string{"gemini-oauth": "CORK_GEMINI_ACCESS_TOKEN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TokenEnvMap = %v, want %v", got, want)
	}
	if got := plan.Egress.Routes; !reflect.DeepEqual(got, geminiSignInRoutes) {
		t.Errorf("Routes = %+v, want %+v", got, geminiSignInRoutes)
	}
	if got := plan.Egress.Block; !reflect.DeepEqual(got, geminiWantBlocks) {
		t.Errorf("Block = %+v, want %+v", got, geminiWantBlocks)
	}
	if got, want := plan.Egress.Allow, []policy.Allow{{Host: "oauth2.googleapis.com", Path: "/tokeninfo", Methods: []string{"POST"}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Allow = %v, want %v", got, want)
	}
	if _, ok := plan.Env[GeminiAPIKeyEnv]; ok {
		t.Errorf("Env has %s in sign-in mode", GeminiAPIKeyEnv)
	}
	if len(plan.Env) != 3 {
		t.Errorf("Env keys = %v, want GEMINI_CLI_HOME, GEMINI_CLI_TRUST_WORKSPACE, NO_BROWSER", keys(plan.Env))
	}
	checkGeminiCommon(t, plan, "oauth-personal")

	creds := file(t, plan, GeminiCredsFile)
	if creds.Mode != 0o600 {
		t.Errorf("%s mode = %v, want 0600", creds.Path, creds.Mode)
	}
	var dummy map[string]any
	d := json.NewDecoder(bytes.NewReader(creds.Data))
	d.UseNumber()
	if err := d.Decode(&dummy); err != nil {
		t.Fatalf("dummy oauth_creds.json: %v", err)
	}
	if got, want := keys(dummy), []string{"access_token", "expiry_date", "refresh_token", "scope", "token_type"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dummy oauth_creds.json keys = %v, want %v (no id_token)", got, want)
	}
	access, _ := dummy["access_token"].(string)
	if got := plan.Egress.Slots[GeminiOAuthSlot].Placeholder; got != access || len(plan.Egress.Slots) != 1 {
		t.Errorf("Slots = %v, want only %s with the dummy access token as placeholder", plan.Egress.Slots, GeminiOAuthSlot)
	}
	if !strings.HasPrefix(access, "ya29.") || len(access) != len(host.AccessToken) || access == host.AccessToken {
		t.Errorf("dummy access_token = %q, want ya29. and the real token's length (%d), not the real token", access, len(host.AccessToken))
	}
	refresh, _ := dummy["refresh_token"].(string)
	if !strings.HasPrefix(refresh, "1//0") || len(refresh) != 103 || refresh == host.RefreshToken {
		t.Errorf("dummy refresh_token = %q, want 1//0 and 99 random characters", refresh)
	}
	if dummy["scope"] != host.Scope || dummy["token_type"] != "Bearer" {
		t.Errorf("dummy scope, token_type = %v, %v; want the host's scope and Bearer", dummy["scope"], dummy["token_type"])
	}
	exp, err := dummy["expiry_date"].(json.Number).Int64()
	if want := testNow.Add(10 * 365 * 24 * time.Hour).UnixMilli(); err != nil || exp != want {
		t.Errorf("dummy expiry_date = %v, want %d (ten years after provisioning)", dummy["expiry_date"], want)
	}

	accounts := file(t, plan, GeminiAccountsFile)
	if got, want := string(accounts.Data), "{\n  \"active\": \"dev@example.com\",\n  \"old\": []\n}\n"; got != want {
		t.Errorf("%s = %q, want %q", accounts.Path, got, want)
	}
	if len(plan.Files) != 3 {
		t.Errorf("Files = %d, want settings.json, oauth_creds.json, google_accounts.json", len(plan.Files))
	}
	checkGeminiNoSecrets(t, plan, host.AccessToken, host.RefreshToken, host.IDToken)

	wantPath := filepath.Join(geminiFixture, ".gemini", "oauth_creds.json")
	if len(plan.Sources) != 1 || plan.Sources[0].Path != wantPath {
		t.Fatalf("Sources = %v, want [%s]", plan.Sources, wantPath)
	}
	got, err := plan.Sources[0].Read()
	if err != nil {
		t.Fatalf("Sources[0].Read() error = %v", err)
	}
	if !reflect.DeepEqual(got, plan.ProvisionedEnv) {
		t.Errorf("Sources[0].Read() keys = %v, want the provisioned env", keys(got))
	}
}

// TestGeminiPolicy checks the compiled policy: the token is bound to the
// two sign-in hosts only, /tokeninfo passes and /token and /revoke are
// refused however they are spelled.
func TestGeminiPolicy(t *testing.T) {
	plan := buildGemini(t, geminiForward(geminiFixture, nil))
	pol, err := plan.Egress.Policy()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"cloudcode-pa.googleapis.com", "oauth2.googleapis.com"} {
		if !pol.SlotBound(GeminiOAuthSlot, h, 443) {
			t.Errorf("SlotBound(%s, %s) = false, want true", GeminiOAuthSlot, h)
		}
	}
	for _, h := range []string{"www.googleapis.com", "generativelanguage.googleapis.com", "play.googleapis.com", "accounts.google.com"} {
		if r := pol.Lookup(h, 443); r.Intercept() || r.Allowed {
			t.Errorf("Lookup(%s) = %+v, want denied", h, r)
		}
	}
	rules := pol.Lookup("oauth2.googleapis.com", 443)
	for _, p := range []string{"/tokeninfo", "/tokeninfo/"} {
		if b := rules.BlockFor(p); b != nil {
			t.Errorf("BlockFor(%q) = %+v, want nil: the CLI checks its token there", p, b)
		}
	}
	for _, p := range []string{"/token", "/Token", "/token/", "/a/../token", "/revoke", "/o/../revoke"} {
		if b := rules.BlockFor(p); b == nil {
			t.Errorf("BlockFor(%q) = nil, want the refresh block", p)
		}
	}
	// The bearer serves only the CLI's token check there.
	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/tokeninfo", ""},
		{"GET", "/tokeninfo", policy.DenyMethod},
		{"POST", "/token", policy.DenyPath},
		{"POST", "/v1/userinfo", policy.DenyPath},
	} {
		if got := rules.Permits(tc.method, tc.path); got != tc.want {
			t.Errorf("Permits(%s %s) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestGeminiAPIKey(t *testing.T) {
	missing := t.TempDir()
	for _, tt := range []struct {
		name string
		opts Options
		env  string // the host variable the slot names
		real string
	}{
		{"GEMINI_API_KEY", Options{HostEnv: map[string]string{GeminiAPIKeyEnv: geminiEnvKey, GoogleAPIKeyEnv: googleEnvKey}}, GeminiAPIKeyEnv, geminiEnvKey},
		{"GOOGLE_API_KEY", Options{HostEnv: map[string]string{GoogleAPIKeyEnv: googleEnvKey}}, GoogleAPIKeyEnv, googleEnvKey},
		{"forwarding, not signed in", geminiForward(missing, map[string]string{GeminiAPIKeyEnv: geminiEnvKey}), GeminiAPIKeyEnv, geminiEnvKey},
		// Without forwarding, the host's sign-in is not read.
		{"not forwarding", Options{HostEnv: map[string]string{"GEMINI_CLI_HOME": geminiFixture, GeminiAPIKeyEnv: geminiEnvKey}}, GeminiAPIKeyEnv, geminiEnvKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := buildGemini(t, tt.opts)
			ph := plan.Env[GeminiAPIKeyEnv]
			if !strings.HasPrefix(ph, "AIza") || len(ph) != len(tt.real) || ph == tt.real {
				t.Errorf("sandbox %s = %q, want AIza and the real key's length", GeminiAPIKeyEnv, ph)
			}
			if _, ok := plan.Env[GoogleAPIKeyEnv]; ok {
				t.Errorf("sandbox has %s", GoogleAPIKeyEnv)
			}
			if got, want := plan.Egress.Slots, map[string]policy.Slot{GeminiSlot: {Placeholder: ph}}; !reflect.DeepEqual(got, want) {
				t.Errorf("Slots = %v, want %v", got, want)
			}
			if got, want := plan.Egress.TokenEnvMap, map[string]string{GeminiSlot: tt.env}; !reflect.DeepEqual(got, want) {
				t.Errorf("TokenEnvMap = %v, want %v", got, want)
			}
			want := []policy.Route{{Host: "generativelanguage.googleapis.com", Slot: GeminiSlot, Header: "X-Goog-Api-Key", Scheme: policy.SchemeRaw}}
			if got := plan.Egress.Routes; !reflect.DeepEqual(got, want) {
				t.Errorf("Routes = %+v, want %+v", got, want)
			}
			if len(plan.Egress.Block) != 0 || len(plan.Egress.Allow) != 0 {
				t.Errorf("Block, Allow = %v, %v; want none", plan.Egress.Block, plan.Egress.Allow)
			}
			if len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
				t.Errorf("ProvisionedEnv keys %v, Sources %v; want none (resolution reads the host env)", keys(plan.ProvisionedEnv), plan.Sources)
			}
			if len(plan.Files) != 1 {
				t.Errorf("Files = %d, want settings.json only", len(plan.Files))
			}
			checkGeminiCommon(t, plan, "gemini-api-key")
			checkGeminiNoSecrets(t, plan, tt.real)
		})
	}
	t.Run("short key", func(t *testing.T) {
		plan := buildGemini(t, Options{HostEnv: map[string]string{GeminiAPIKeyEnv: "k"}})
		if ph := plan.Env[GeminiAPIKeyEnv]; len(ph) < minRandom {
			t.Errorf("placeholder for a short key = %q, want at least %d random characters", ph, minRandom)
		}
	})
}

// TestGeminiOperatorToken: without forwarding and without a key, sign-in
// mode with the token from the operator's CORK_GEMINI_ACCESS_TOKEN.
func TestGeminiOperatorToken(t *testing.T) {
	plan := buildGemini(t, Options{HostEnv: map[string]string{"GEMINI_CLI_HOME": geminiFixture}, Rand: seeded(1), Now: func() time.Time { return testNow }})
	if len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
		t.Errorf("ProvisionedEnv keys %v, Sources %v; want none: no host file is read", keys(plan.ProvisionedEnv), plan.Sources)
	}
	if got, want := plan.Egress.TokenEnvMap, map[string]string{GeminiOAuthSlot: GeminiAccessTokenEnv}; !reflect.DeepEqual(got, want) {
		t.Errorf("TokenEnvMap = %v, want %v", got, want)
	}
	if got := plan.Egress.Routes; !reflect.DeepEqual(got, geminiSignInRoutes) {
		t.Errorf("Routes = %+v, want %+v", got, geminiSignInRoutes)
	}
	ph := plan.Egress.Slots[GeminiOAuthSlot].Placeholder
	if !strings.HasPrefix(ph, "ya29.") || len(ph) != 250 {
		t.Errorf("placeholder = %q, want ya29. and 245 characters", ph)
	}
	var dummy geminiCredsJSON
	if err := json.Unmarshal(file(t, plan, GeminiCredsFile).Data, &dummy); err != nil {
		t.Fatal(err)
	}
	if dummy.AccessToken != ph || dummy.Scope != geminiDefaultScope {
		t.Errorf("dummy = %+v, want the placeholder and the CLI's default scope", dummy)
	}
	for _, f := range plan.Files {
		if f.Path == GeminiAccountsFile {
			t.Errorf("plan has %s, want none without forwarding", f.Path)
		}
	}
	checkGeminiCommon(t, plan, "oauth-personal")
}

func TestGeminiPlaceholdersRandom(t *testing.T) {
	a := buildGemini(t, geminiForward(geminiFixture, nil))
	b := buildGemini(t, geminiForward(geminiFixture, nil))
	if a.Egress.Slots[GeminiOAuthSlot] == b.Egress.Slots[GeminiOAuthSlot] {
		t.Errorf("two builds share the placeholder %q", a.Egress.Slots[GeminiOAuthSlot].Placeholder)
	}
}

func TestGeminiSourceFollowsRefresh(t *testing.T) {
	home := geminiHome(t)
	path := filepath.Join(home, ".gemini", "oauth_creds.json")
	plan := buildGemini(t, geminiForward(home, nil))
	src := plan.Sources[0]

	const refreshed = "ya29.a0REALREFRESHEDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	// An expired token is passed on: the host's CLI refreshes it when next
	// used.
	write := func(data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"access_token": "` + refreshed + `", "expiry_date": 1000, "refresh_token": "1//0gREALREFRESH"}`)
	got, err := src.Read()
	if err != nil {
		t.Fatalf("Read() error = %v", err)
	}
	if got, want := revealed(got), map[string]string{GeminiAccessTokenEnv: refreshed}; !reflect.DeepEqual(got, want) {
		t.Errorf("Read() keys = %v, want the refreshed token in %s", keys(got), GeminiAccessTokenEnv)
	}

	write(`{"access_token": 7}`)
	_, err = src.Read()
	if want := "read " + path + ": access_token: want a string"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Read() of a malformed file error = %v, want prefix %q", err, want)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Read(); err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "read "+path+": ") {
		t.Errorf("Read() of a removed file error = %v, want a not-exist error naming the file", err)
	}
}

func TestGeminiErrors(t *testing.T) {
	hint := " (sign in on the host with `gemini`, set GEMINI_API_KEY or GOOGLE_API_KEY, or don't forward host credentials)"
	t.Run("not signed in, no key", func(t *testing.T) {
		home := t.TempDir()
		_, err := Build(geminiForward(home, nil), Gemini{})
		want := "gemini: read " + filepath.Join(home, ".gemini", "oauth_creds.json") + ": no such file or directory" + hint
		if err == nil || err.Error() != want {
			t.Errorf("Build() error = %v, want %q", err, want)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Build() error = %v, want errors.Is fs.ErrNotExist", err)
		}
	})
	t.Run("no home", func(t *testing.T) {
		_, err := Build(Options{ForwardHostCredentials: true}, Gemini{})
		if err == nil || !strings.Contains(err.Error(), "neither GEMINI_CLI_HOME nor the host home directory is set") || !strings.HasSuffix(err.Error(), hint) {
			t.Errorf("Build() error = %v, want it to say where oauth_creds.json would be, and the hint", err)
		}
	})
	t.Run("default home", func(t *testing.T) {
		home := t.TempDir()
		_, err := Build(Options{HostHome: home, ForwardHostCredentials: true}, Gemini{})
		if want := "gemini: read " + filepath.Join(home, ".gemini", "oauth_creds.json") + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Build() error = %v, want prefix %q", err, want)
		}
	})
	t.Run("directory", func(t *testing.T) {
		home := t.TempDir()
		if err := os.MkdirAll(filepath.Join(home, ".gemini", "oauth_creds.json"), 0o700); err != nil {
			t.Fatal(err)
		}
		// Not a missing file: the key in the env does not hide the problem.
		_, err := Build(geminiForward(home, map[string]string{GeminiAPIKeyEnv: geminiEnvKey}), Gemini{})
		want := "gemini: read " + filepath.Join(home, ".gemini", "oauth_creds.json") + ": is a directory"
		if err == nil || err.Error() != want {
			t.Errorf("Build() error = %v, want %q", err, want)
		}
	})

	for _, tt := range []struct{ name, data, want string }{
		{"bad JSON", `{"access_token": "ya29.a0REALACCESSxyz"`, "invalid JSON at byte"},
		{"null", `null`, "want a JSON object, got null"},
		{"array", `["ya29.a0REALACCESSxyz"]`, "want a JSON object"},
		{"no access token", `{"refresh_token": "1//0gREALREFRESHxyz"}`, "access_token: missing or empty (sign in again with `gemini` on the host)"},
		{"empty access token", `{"access_token": ""}`, "access_token: missing or empty"},
		{"access token not a string", `{"access_token": ["ya29.a0REALACCESSxyz"]}`, "access_token: want a string"},
		{"expiry a string", `{"access_token": "ya29.a0REALACCESSxyz", "expiry_date": "REALNOTATIME"}`, "expiry_date: want milliseconds since the epoch"},
		{"expiry fractional", `{"access_token": "ya29.a0REALACCESSxyz", "expiry_date": 1.5}`, "expiry_date: want milliseconds since the epoch"},
		{"scope not a string", `{"access_token": "ya29.a0REALACCESSxyz", "scope": ["REALSCOPE"]}`, "scope: want a string"},
		{"expired", `{"access_token": "ya29.a0REALACCESSxyz", "expiry_date": 1793608200000}`,
			"expiry_date: the access token expired at 2026-11-02T08:30:00Z; run `gemini` on the host to refresh it (Google access tokens last an hour), or set GEMINI_API_KEY and don't forward host credentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			path := filepath.Join(home, ".gemini", "oauth_creds.json")
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Build(geminiForward(home, map[string]string{GeminiAPIKeyEnv: geminiEnvKey}), Gemini{})
			checkReadError(t, "gemini", path, err, tt.want, geminiSecretMarkers)
		})
	}
}

// TestGeminiAccountFile: google_accounts.json is optional and read as
// forgivingly as the CLI reads it.
func TestGeminiAccountFile(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"none", "", ""},
		{"null active", `{"active": null, "old": ["a@example.com"]}`, ""},
		{"malformed", `{"active": 7}`, ""},
		{"not JSON", `REALGARBAGE`, ""},
		{"address", `{"active": "b@example.com"}`, "b@example.com"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			home := geminiHome(t)
			accounts := filepath.Join(home, ".gemini", "google_accounts.json")
			if tt.data == "" {
				if err := os.Remove(accounts); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(accounts, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			plan := buildGemini(t, geminiForward(home, nil))
			var got string
			for _, f := range plan.Files {
				if f.Path == GeminiAccountsFile {
					var a geminiAccountsJSON
					if err := json.Unmarshal(f.Data, &a); err != nil {
						t.Fatal(err)
					}
					got = a.Active
				}
			}
			if got != tt.want {
				t.Errorf("dummy google_accounts.json active = %q, want %q (no file when empty)", got, tt.want)
			}
		})
	}
}
