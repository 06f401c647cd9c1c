package provision

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
)

func buildCopilot(t *testing.T, env map[string]string, forward bool, profiles ...Profile) (Plan, error) {
	t.Helper()
	return Build(Options{HostHome: t.TempDir(), HostEnv: env, ForwardHostCredentials: forward, ReadFile: noReads(t)}, profiles...)
}

func TestCopilot(t *testing.T) {
	tok := gitHubTokens(t)
	tests := []struct {
		name     string
		env      map[string]string
		forward  bool
		tokenEnv string
		real     string
		prefix   string
	}{
		{"oauth COPILOT_GITHUB_TOKEN", map[string]string{"COPILOT_GITHUB_TOKEN": tok["oauth"]}, true, "COPILOT_GITHUB_TOKEN", tok["oauth"], "gho_"},
		{"fine-grained GH_TOKEN", map[string]string{"GH_TOKEN": tok["fine_grained"]}, true, "GH_TOKEN", tok["fine_grained"], "github_pat_"},
		{"user-to-server GITHUB_TOKEN", map[string]string{"GITHUB_TOKEN": tok["user_to_server"]}, true, "GITHUB_TOKEN", tok["user_to_server"], "ghu_"},
		{"app token, forwarding off", map[string]string{"GH_TOKEN": tok["app_installation"]}, false, "GH_TOKEN", tok["app_installation"], "ghs_"},
		{"COPILOT_GITHUB_TOKEN wins", map[string]string{"COPILOT_GITHUB_TOKEN": tok["oauth"], "GH_TOKEN": tok["classic"], "GITHUB_TOKEN": tok["classic"]}, true, "COPILOT_GITHUB_TOKEN", tok["oauth"], "gho_"},
		{"GH_TOKEN before GITHUB_TOKEN", map[string]string{"GH_TOKEN": tok["user_to_server"], "GITHUB_TOKEN": tok["classic"]}, true, "GH_TOKEN", tok["user_to_server"], "ghu_"},
		{"empty COPILOT_GITHUB_TOKEN", map[string]string{"COPILOT_GITHUB_TOKEN": "", "GITHUB_TOKEN": tok["oauth"]}, true, "GITHUB_TOKEN", tok["oauth"], "gho_"},
		{"none, forwarding off", nil, false, "COPILOT_GITHUB_TOKEN", "", "gho_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := buildCopilot(t, tt.env, tt.forward, Copilot{})
			if err != nil {
				t.Fatalf("Build(copilot) error = %v", err)
			}
			if got, want := plan.Egress.TokenEnvMap, map[string]string{CopilotSlot: tt.tokenEnv}; !reflect.DeepEqual(got, want) {
				t.Errorf("TokenEnvMap = %v, want %v", got, want)
			}
			ph := plan.Egress.Slots[CopilotSlot].Placeholder
			wantLen := copilotTokenLen
			if tt.real != "" {
				wantLen = len(tt.real)
			}
			if !strings.HasPrefix(ph, tt.prefix) || len(ph) != wantLen || ph == tt.real {
				t.Errorf("placeholder = %q, want prefix %q and %d characters", ph, tt.prefix, wantLen)
			}
			wantEnv := map[string]string{CopilotTokenEnv: ph, CopilotAutoUpdateEnv: "false"}
			if !reflect.DeepEqual(plan.Env, wantEnv) {
				t.Errorf("sandbox env = %v, want %v", plan.Env, wantEnv)
			}
			if len(plan.Files) != 0 || len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
				t.Errorf("files %v, provisioned env %v, sources %v: want none", plan.Files, plan.ProvisionedEnv, plan.Sources)
			}
			var hosts []string
			for _, r := range plan.Egress.Routes {
				hosts = append(hosts, r.Host)
				if r.Slot != CopilotSlot || r.Header != "Authorization" || r.AddIfMissing {
					t.Errorf("route %+v, want slot copilot on Authorization, swapped in place", r)
				}
			}
			wantHosts := append([]string{"api.github.com"}, copilotAPIHosts...)
			if !reflect.DeepEqual(hosts, wantHosts) {
				t.Errorf("routes on %v, want %v", hosts, wantHosts)
			}
			if !reflect.DeepEqual(plan.Egress.Block, copilotBlocks) {
				t.Errorf("blocks = %+v, want %+v", plan.Egress.Block, copilotBlocks)
			}
			if len(plan.Egress.Allow) != 0 {
				t.Errorf("allow = %v, want none (telemetry stays refused)", plan.Egress.Allow)
			}
			if tt.real != "" && strings.Contains(sandboxView(t, plan), tt.real) {
				t.Error("the real token is in the sandbox's view (files, env, policy)")
			}
		})
	}
}

// The Copilot CLI refuses classic tokens: a ghp_ token from any variable is
// an error naming the variable and the way out, never the value.
func TestCopilotClassicToken(t *testing.T) {
	classic := gitHubTokens(t)["classic"]
	for _, v := range []string{"COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"} {
		t.Run(v, func(t *testing.T) {
			_, err := buildCopilot(t, map[string]string{v: classic}, true, Copilot{})
			want := "copilot: " + v + " is a classic personal access token (ghp_), which the Copilot CLI refuses: set COPILOT_GITHUB_TOKEN"
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Build(copilot) error = %v, want prefix %q", err, want)
			}
			if strings.Contains(err.Error(), classic[4:]) {
				t.Errorf("Build(copilot) error = %q, contains the token", err)
			}
		})
	}
}

// Placeholders are random per Build.
func TestCopilotPlaceholderRandom(t *testing.T) {
	env := map[string]string{"COPILOT_GITHUB_TOKEN": gitHubTokens(t)["oauth"]}
	a, err := buildCopilot(t, env, true, Copilot{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildCopilot(t, env, true, Copilot{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Egress.Slots[CopilotSlot] == b.Egress.Slots[CopilotSlot] {
		t.Errorf("two Builds gave the same placeholder %q", a.Egress.Slots[CopilotSlot].Placeholder)
	}
}

// With --agent github, a token from the same variable is one credential:
// one slot, one placeholder in COPILOT_GITHUB_TOKEN, GH_TOKEN and
// GITHUB_TOKEN, and api.github.com routed once, in either order.
func TestCopilotWithGitHubShared(t *testing.T) {
	tok := gitHubTokens(t)
	for _, env := range []map[string]string{
		{"GH_TOKEN": tok["oauth"]},
		{"GITHUB_TOKEN": tok["fine_grained"]},
	} {
		for _, order := range [][]Profile{{Copilot{}, GitHub{}}, {GitHub{}, Copilot{}}} {
			first := order[0].Name()
			t.Run(first+" first, "+keys(env)[0], func(t *testing.T) {
				plan, err := buildCopilot(t, env, true, order...)
				if err != nil {
					t.Fatalf("Build(%s, %s) error = %v", order[0].Name(), order[1].Name(), err)
				}
				slot := map[string]string{"copilot": CopilotSlot, "github": GitHubSlot}[first]
				if got := keys(plan.Egress.Slots); !reflect.DeepEqual(got, []string{slot}) {
					t.Fatalf("slots = %v, want only %s (the first profile's name)", got, slot)
				}
				if got, want := plan.Egress.TokenEnvMap[slot], keys(env)[0]; got != want {
					t.Errorf("slot %s from %s, want %s", slot, got, want)
				}
				ph := plan.Egress.Slots[slot].Placeholder
				for _, v := range []string{CopilotTokenEnv, GHTokenEnv, GitHubTokenEnv} {
					if plan.Env[v] != ph {
						t.Errorf("sandbox %s = %q, want the shared placeholder %q", v, plan.Env[v], ph)
					}
				}
				if !strings.Contains(plan.Env["GIT_CONFIG_VALUE_1"], "password="+ph+";") {
					t.Errorf("git credential helper %q does not answer the shared placeholder", plan.Env["GIT_CONFIG_VALUE_1"])
				}
				seen := map[string]int{}
				for _, r := range plan.Egress.Routes {
					seen[r.Host]++
					if r.Slot != slot {
						t.Errorf("route for %s has slot %s, want %s", r.Host, r.Slot, slot)
					}
				}
				for _, h := range append([]string{"api.github.com", "uploads.github.com", "github.com"}, copilotAPIHosts...) {
					if seen[h] != 1 {
						t.Errorf("%d routes for %s, want 1", seen[h], h)
					}
				}
				blocks := map[policy.Block]int{}
				for _, b := range plan.Egress.Block {
					blocks[b]++
				}
				for b, n := range blocks {
					if n != 1 {
						t.Errorf("block %+v appears %d times", b, n)
					}
				}
				if !slices.ContainsFunc(plan.Egress.Block, func(b policy.Block) bool { return b.Path == "/copilot_internal/v2/token" }) {
					t.Error("the Copilot token exchange is not blocked")
				}
				if _, err := plan.Egress.Policy(); err != nil {
					t.Errorf("Egress.Policy() error = %v", err)
				}
				if real := env[keys(env)[0]]; strings.Contains(sandboxView(t, plan), real) {
					t.Error("the real token is in the sandbox's view (files, env, policy)")
				}
			})
		}
	}
}

// Two different tokens cannot share api.github.com: one header of one host
// carries one credential. The error names both variables, no values.
func TestCopilotWithGitHubConflict(t *testing.T) {
	tok := gitHubTokens(t)
	env := map[string]string{"COPILOT_GITHUB_TOKEN": tok["oauth"], "GH_TOKEN": tok["classic"]}
	_, err := buildCopilot(t, env, true, GitHub{}, Copilot{})
	want := "copilot: conflict with profile github: both provide a route for api.github.com bound to different credentials (slot github from GH_TOKEN, slot copilot from COPILOT_GITHUB_TOKEN)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Build(github, copilot) error = %v, want %q", err, want)
	}
	for _, v := range env {
		if strings.Contains(err.Error(), v[4:]) {
			t.Errorf("Build error = %q, contains a token", err)
		}
	}
}

// Sharing is by host variable: it leaves every other slot alone.
func TestShareSlotsKeepsOthers(t *testing.T) {
	tok := gitHubTokens(t)
	env := map[string]string{"GH_TOKEN": tok["oauth"], "ANTHROPIC_API_KEY": "sk-ant-api03-" + strings.Repeat("A", 95)}
	plan, err := buildCopilot(t, env, false, Claude{}, GitHub{}, Copilot{})
	if err != nil {
		t.Fatalf("Build(claude, github, copilot) error = %v", err)
	}
	if got, want := keys(plan.Egress.Slots), []string{AnthropicSlot, GitHubSlot}; !reflect.DeepEqual(got, want) {
		t.Errorf("slots = %v, want %v", got, want)
	}
	if got := slices.Sorted(maps.Values(plan.Egress.TokenEnvMap)); !reflect.DeepEqual(got, []string{"ANTHROPIC_API_KEY", "GH_TOKEN"}) {
		t.Errorf("token env map = %v", plan.Egress.TokenEnvMap)
	}
	if plan.Env[AnthropicAPIKeyEnv] == plan.Env[CopilotTokenEnv] {
		t.Error("two credentials got one placeholder")
	}
}

// stubProfile binds host variable env to host with a fresh placeholder,
// which it also writes into a file and a variable.
type stubProfile struct{ name, slot, env, host string }

func (s stubProfile) Name() string { return s.name }

func (s stubProfile) Provision(opts Options, plan *Plan) error {
	ph, err := placeholderOr(opts.Rand, "", nil, "stub_", 30)
	if err != nil {
		return err
	}
	plan.Env[strings.ToUpper(s.name)+"_TOKEN"] = ph
	plan.Files = append(plan.Files, File{Path: s.name + ".json", Mode: 0o600, Data: []byte(`{"token":"` + ph + `"}`)})
	plan.Egress.TokenEnvMap[s.slot] = s.env
	plan.Egress.Slots[s.slot] = policy.Slot{Placeholder: ph}
	plan.Egress.Routes = append(plan.Egress.Routes, policy.Route{Host: s.host, Slot: s.slot, Header: "Authorization", Scheme: policy.SchemeBearer})
	return nil
}

func TestShareSlotsRewritesPlaceholder(t *testing.T) {
	a := stubProfile{"a", "one", "SHARED", "a.example.com"}
	b := stubProfile{"b", "two", "SHARED", "b.example.com"}
	plan, err := Build(Options{}, a, b)
	if err != nil {
		t.Fatalf("Build(a, b) error = %v", err)
	}
	ph := plan.Egress.Slots["one"].Placeholder
	if got := keys(plan.Egress.Slots); !reflect.DeepEqual(got, []string{"one"}) {
		t.Fatalf("slots = %v, want [one]", got)
	}
	if plan.Env["A_TOKEN"] != ph || plan.Env["B_TOKEN"] != ph {
		t.Errorf("env = %v, want both variables %q", plan.Env, ph)
	}
	for _, f := range plan.Files {
		if want := `{"token":"` + ph + `"}`; string(f.Data) != want {
			t.Errorf("file %s = %s, want %s", f.Path, f.Data, want)
		}
	}
	for _, r := range plan.Egress.Routes {
		if r.Slot != "one" {
			t.Errorf("route for %s has slot %s, want one", r.Host, r.Slot)
		}
	}

	// Different variables stay apart, and the same host is then a conflict.
	c := stubProfile{"c", "three", "OTHER", "a.example.com"}
	_, err = Build(Options{}, a, c)
	want := "c: conflict with profile a: both provide a route for a.example.com bound to different credentials (slot one from SHARED, slot three from OTHER)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Build(a, c) error = %v, want %q", err, want)
	}
}

// With forwarding and no token in the env, the token is gh's login for
// github.com, in the github profile's variable, with hosts.yml as a Source;
// with --agent github too, the two share it.
func TestCopilotGHLogin(t *testing.T) {
	tok := gitHubTokens(t)
	tests := []struct {
		name     string
		env      map[string]string
		keyring  map[string]string
		profiles []Profile
		want     string
	}{
		{"gh 2.23 hosts.yml", map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23")}, nil, []Profile{Copilot{}}, tok["oauth"]},
		{"keyring", map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-keyring")}, map[string]string{"github.com": tok["user_to_server"]}, []Profile{Copilot{}}, tok["user_to_server"]},
		{"with github", map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23")}, nil, []Profile{Copilot{}, GitHub{}}, tok["oauth"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := &stubGH{tokens: tt.keyring}
			plan, err := Build(Options{HostHome: t.TempDir(), HostEnv: tt.env, ForwardHostCredentials: true, Command: gh.command}, tt.profiles...)
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			if got, want := plan.Egress.TokenEnvMap, map[string]string{CopilotSlot: GitHubLoginEnv}; !reflect.DeepEqual(got, want) {
				t.Errorf("TokenEnvMap = %v, want %v", got, want)
			}
			if got := revealed(plan.ProvisionedEnv); !reflect.DeepEqual(got, map[string]string{GitHubLoginEnv: tt.want}) {
				t.Errorf("provisioned env has %v, want only %s", keys(got), GitHubLoginEnv)
			}
			if len(plan.Sources) == 0 || plan.Sources[0].Path != filepath.Join(tt.env["GH_CONFIG_DIR"], "hosts.yml") {
				t.Errorf("sources = %v, want hosts.yml", plan.Sources)
			}
			ph := plan.Egress.Slots[CopilotSlot].Placeholder
			if ph == tt.want || len(ph) != len(tt.want) || ph[:4] != tt.want[:4] || plan.Env[CopilotTokenEnv] != ph {
				t.Errorf("placeholder %q: want the shape of the real token, in %s", ph, CopilotTokenEnv)
			}
			view := sandboxView(t, plan) + fmt.Sprintf("%v %+v %#v", plan, plan, plan)
			for _, real := range tok {
				if strings.Contains(view, real) {
					t.Errorf("sandbox or printed plan contains real token %.12q...", real)
				}
			}
		})
	}
}

// The missing-credential message names what was tried and how to fix it,
// one line, no token.
func TestCopilotMissing(t *testing.T) {
	home := t.TempDir()
	tok := gitHubTokens(t)
	classicDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(classicDir, "hosts.yml"), []byte("github.com:\n    oauth_token: "+tok["classic"]+"\n    user: monalisa\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		gh   *stubGH
		want string
	}{
		{"no hosts.yml", nil, &stubGH{},
			"copilot: no GitHub token: COPILOT_GITHUB_TOKEN, GH_TOKEN and GITHUB_TOKEN are unset and " + filepath.Join(home, ".config", "gh", "hosts.yml") + " does not exist (run `gh auth login` on the host, or set COPILOT_GITHUB_TOKEN)"},
		{"keyring fails", map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-keyring")}, &stubGH{err: errors.New("exit status 1")},
			"copilot: no GitHub token: COPILOT_GITHUB_TOKEN, GH_TOKEN and GITHUB_TOKEN are unset, and gh's login: " + filepath.Join(ghFixture(t, "gh-keyring"), "hosts.yml") + ": the github.com login of monalisa is in the system keyring: gh auth token --hostname github.com: exit status 1"},
		{"classic gh login", map[string]string{"GH_CONFIG_DIR": classicDir}, &stubGH{},
			"copilot: gh's login in " + filepath.Join(classicDir, "hosts.yml") + " is a classic personal access token (ghp_), which the Copilot CLI refuses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Options{HostHome: home, HostEnv: tt.env, ForwardHostCredentials: true, Command: tt.gh.command}, Copilot{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Build() error =\n%v\nwant it to start with\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "REAL") || strings.Contains(err.Error(), "\n") {
				t.Errorf("Build() error = %q: want one line without a token", err)
			}
		})
	}
}

// --github-read-only narrows the shared api.github.com route for both: the
// Copilot CLI only reads there.
func TestCopilotWithGitHubReadOnly(t *testing.T) {
	env := map[string]string{"GH_TOKEN": gitHubTokens(t)["oauth"]}
	for _, order := range [][]Profile{{Copilot{}, GitHub{ReadOnly: true}}, {GitHub{ReadOnly: true}, Copilot{}}} {
		plan, err := buildCopilot(t, env, true, order...)
		if err != nil {
			t.Fatalf("Build(%s, %s) error = %v", order[0].Name(), order[1].Name(), err)
		}
		n := 0
		for _, r := range plan.Egress.Routes {
			if r.Host == "api.github.com" {
				n++
				if !reflect.DeepEqual(r.Methods, []string{"GET", "HEAD"}) {
					t.Errorf("api.github.com route methods = %v, want [GET HEAD]", r.Methods)
				}
			}
			if strings.HasSuffix(r.Host, ".githubcopilot.com") && len(r.Methods) != 0 {
				t.Errorf("%s route methods = %v, want any", r.Host, r.Methods)
			}
		}
		if n != 1 {
			t.Errorf("%d routes for api.github.com, want 1", n)
		}
	}
}

func TestCommonMethods(t *testing.T) {
	tests := []struct {
		a, b, want []string
		ok         bool
	}{
		{nil, nil, nil, true},
		{nil, []string{"GET"}, []string{"GET"}, true},
		{[]string{"GET", "HEAD"}, nil, []string{"GET", "HEAD"}, true},
		{[]string{"GET", "HEAD"}, []string{"head", "POST"}, []string{"HEAD"}, true},
		{[]string{"GET"}, []string{"POST"}, nil, false},
	}
	for _, tt := range tests {
		got, ok := commonMethods(tt.a, tt.b)
		if !reflect.DeepEqual(got, tt.want) || ok != tt.ok {
			t.Errorf("commonMethods(%v, %v) = %v, %v; want %v, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

// The compiled policy answers the CLI's hosts as docs/AGENTS.md says:
// Copilot API hosts and api.github.com intercepted with the slot, the token
// exchange and the sign-in endpoints blocked, telemetry denied.
func TestCopilotPolicy(t *testing.T) {
	plan, err := buildCopilot(t, map[string]string{"COPILOT_GITHUB_TOKEN": gitHubTokens(t)["oauth"]}, true, Copilot{})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := plan.Egress.Policy()
	if err != nil {
		t.Fatalf("Egress.Policy() error = %v", err)
	}
	for _, h := range append([]string{"api.github.com"}, copilotAPIHosts...) {
		if !pol.SlotBound(CopilotSlot, h, 443) {
			t.Errorf("slot copilot is not bound to %s", h)
		}
	}
	for _, tt := range []struct{ host, path string }{
		{"api.github.com", "/copilot_internal/v2/token"},
		{"api.github.com", "/copilot_internal/v2/token.json"},
		{"api.github.com", "/Copilot_Internal//v2/%74oken"},
		{"github.com", "/login/device/code"},
		{"github.com", "/login/oauth/access_token"},
	} {
		if pol.Lookup(tt.host, 443).BlockFor(tt.path) == nil {
			t.Errorf("%s%s is not blocked", tt.host, tt.path)
		}
	}
	for _, p := range []string{"/copilot_internal/user", "/copilot_internal/managed_settings", "/repos/github/copilot-cli/releases"} {
		if b := pol.Lookup("api.github.com", 443).BlockFor(p); b != nil {
			t.Errorf("api.github.com%s is blocked (%s)", p, b.Reason)
		}
	}
	for _, h := range []string{"telemetry.individual.githubcopilot.com", "telemetry.business.githubcopilot.com", "origin-tracker.individual.githubcopilot.com"} {
		if r := pol.Lookup(h, 443); r.Allowed || r.Intercept() || r.HostBlock != nil {
			t.Errorf("%s: %+v, want denied by default", h, r)
		}
	}
}
