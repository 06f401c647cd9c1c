package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// gitHubTokens are the fake tokens of testdata/github/tokens.json by shape.
func gitHubTokens(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "github", "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var gitHubRoutes = []policy.Route{
	{Host: "api.github.com", Slot: "github", Header: "Authorization", Scheme: "token"},
	{Host: "uploads.github.com", Slot: "github", Header: "Authorization", Scheme: "token"},
	{Host: "github.com", Slot: "github", Header: "Authorization", Scheme: "basic", BasicUser: "x-access-token"},
}

func buildGitHub(t *testing.T, env map[string]string, forward bool) Plan {
	t.Helper()
	plan, err := Build(Options{HostHome: t.TempDir(), HostEnv: env, ForwardHostCredentials: forward, ReadFile: noReads(t)}, GitHub{})
	if err != nil {
		t.Fatalf("Build(github) error = %v", err)
	}
	return plan
}

func TestGitHub(t *testing.T) {
	tok := gitHubTokens(t)
	tests := []struct {
		name     string
		env      map[string]string
		forward  bool
		tokenEnv string
		real     string
		prefix   string
	}{
		{"classic GH_TOKEN", map[string]string{"GH_TOKEN": tok["classic"]}, true, "GH_TOKEN", tok["classic"], "ghp_"},
		{"fine-grained GH_TOKEN", map[string]string{"GH_TOKEN": tok["fine_grained"]}, true, "GH_TOKEN", tok["fine_grained"], "github_pat_"},
		{"oauth GITHUB_TOKEN", map[string]string{"GITHUB_TOKEN": tok["oauth"]}, true, "GITHUB_TOKEN", tok["oauth"], "gho_"},
		{"app token, forwarding off", map[string]string{"GH_TOKEN": tok["app_installation"]}, false, "GH_TOKEN", tok["app_installation"], "ghs_"},
		{"GH_TOKEN wins", map[string]string{"GH_TOKEN": tok["user_to_server"], "GITHUB_TOKEN": tok["classic"]}, true, "GH_TOKEN", tok["user_to_server"], "ghu_"},
		{"empty GH_TOKEN", map[string]string{"GH_TOKEN": "", "GITHUB_TOKEN": tok["classic"]}, true, "GITHUB_TOKEN", tok["classic"], "ghp_"},
		{"neither, forwarding off", nil, false, "GH_TOKEN", "", "ghp_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := buildGitHub(t, tt.env, tt.forward)
			if got, want := plan.Egress.TokenEnvMap, map[string]string{"github": tt.tokenEnv}; !reflect.DeepEqual(got, want) {
				t.Errorf("TokenEnvMap = %v, want %v", got, want)
			}
			ph := plan.Egress.Slots["github"].Placeholder
			wantLen := 40
			if tt.real != "" {
				wantLen = len(tt.real)
			}
			if !strings.HasPrefix(ph, tt.prefix) || len(ph) != wantLen || ph == tt.real {
				t.Errorf("placeholder = %q, want prefix %q and %d characters", ph, tt.prefix, wantLen)
			}
			if strings.Trim(strings.TrimPrefix(ph, tt.prefix), alnum) != "" {
				t.Errorf("placeholder = %q, want alphanumerics after the prefix (it goes into a shell helper)", ph)
			}
			wantEnv := map[string]string{
				"GH_TOKEN":           ph,
				"GITHUB_TOKEN":       ph,
				"GIT_CONFIG_COUNT":   "2",
				"GIT_CONFIG_KEY_0":   "credential.https://github.com.helper",
				"GIT_CONFIG_VALUE_0": "",
				"GIT_CONFIG_KEY_1":   "credential.https://github.com.helper",
				"GIT_CONFIG_VALUE_1": `!f() { test "$1" = get || return 0; echo username=x-access-token; echo password=` + ph + `; }; f`,
			}
			if got := plan.Env; !reflect.DeepEqual(got, wantEnv) {
				t.Errorf("Env = %v, want %v", got, wantEnv)
			}
			if got := plan.Egress.Routes; !reflect.DeepEqual(got, gitHubRoutes) {
				t.Errorf("Routes = %+v, want %+v", got, gitHubRoutes)
			}
			if got, want := plan.Egress.Allow, policy.AllowHosts("codeload.github.com", "*.githubusercontent.com"); !reflect.DeepEqual(got, want) {
				t.Errorf("Allow = %v, want %v", got, want)
			}
			wantBlock := []policy.Block{
				{Host: "github.com", Path: "/login/oauth/access_token", Reason: "GitHub OAuth token exchange happens on the host, not in the sandbox"},
				{Host: "api.github.com", Path: "/copilot_internal/v2/token", Reason: copilotTokenReason},
			}
			if got := plan.Egress.Block; !reflect.DeepEqual(got, wantBlock) {
				t.Errorf("Block = %+v, want %+v", got, wantBlock)
			}
			if len(plan.Files) != 0 || len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
				t.Errorf("plan = %v, want no files, provisioned env or sources", plan)
			}
			view := sandboxView(t, plan) + fmt.Sprintf("%v %+v %#v", plan, plan, plan)
			for _, real := range tok {
				if strings.Contains(view, real) {
					t.Errorf("sandbox or printed plan contains real token %.12q...", real)
				}
			}
			if strings.Contains(view, "REAL") {
				t.Error("sandbox or printed plan contains a REAL marker")
			}
		})
	}
}

func TestGitHubPlaceholdersRandom(t *testing.T) {
	env := map[string]string{"GH_TOKEN": gitHubTokens(t)["classic"]}
	a, b := buildGitHub(t, env, true), buildGitHub(t, env, true)
	if pa, pb := a.Egress.Slots["github"].Placeholder, b.Egress.Slots["github"].Placeholder; pa == pb {
		t.Errorf("two Builds: placeholder %q both times, want random", pa)
	}
}

// TestGitHubCredentialHelper runs git with the plan's env: it must offer the
// placeholder for github.com, override a helper configured before it, and
// leave other hosts alone.
func TestGitHubCredentialHelper(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		testenv.Missing(t, "git not installed")
	}
	plan := buildGitHub(t, map[string]string{"GH_TOKEN": gitHubTokens(t)["classic"]}, true)
	ph := plan.Env["GH_TOKEN"]
	home := t.TempDir()
	// A helper the sandbox image might carry, standing for a keychain.
	global := "[credential]\n\thelper = \"!f() { echo username=someone; echo password=ghp_REALFROMKEYCHAIN; }; f\"\n"
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(global), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	for k, v := range plan.Env {
		env = append(env, k+"="+v)
	}
	fill := func(host string) string {
		t.Helper()
		cmd := exec.Command(gitPath, "credential", "fill")
		cmd.Env = env
		cmd.Dir = home
		cmd.Stdin = strings.NewReader("protocol=https\nhost=" + host + "\npath=cli/cli.git\n\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git credential fill for %s: %v", host, err)
		}
		return string(out)
	}
	if got := fill("github.com"); !strings.Contains(got, "username=x-access-token\npassword="+ph+"\n") || strings.Contains(got, "REAL") {
		t.Errorf("git credential fill for github.com =\n%s\nwant x-access-token and the placeholder", got)
	}
	if got := fill("gitlab.com"); !strings.Contains(got, "username=someone") {
		t.Errorf("git credential fill for gitlab.com =\n%s\nwant the other helper: the profile only answers for github.com", got)
	}
	for _, action := range []string{"approve", "reject"} {
		cmd := exec.Command(gitPath, "credential", action)
		cmd.Env = env
		cmd.Stdin = strings.NewReader("protocol=https\nhost=github.com\nusername=x-access-token\npassword=" + ph + "\n\n")
		if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("git credential %s = %q, %v; want silence", action, out, err)
		}
	}
}

// TestGitHubLogin: with forwarding and no token variable, the token is gh's
// stored login; a variable wins without reading the file.
func TestGitHubLogin(t *testing.T) {
	tok := gitHubTokens(t)
	tests := []struct {
		name        string
		profile     GitHub
		env         map[string]string
		keyring     map[string]string
		tokenEnv    string
		want        string // the token resolution finds
		provisioned bool   // from hosts.yml (or the keyring), with a Source
	}{
		{"gh 2.23 hosts.yml", GitHub{}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23")}, nil, "CORK_GITHUB_TOKEN", tok["oauth"], true},
		{"multi-account hosts.yml", GitHub{}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-multi")}, nil, "CORK_GITHUB_TOKEN", tok["oauth"], true},
		{"keyring", GitHub{}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-keyring")}, map[string]string{"github.com": tok["user_to_server"]}, "CORK_GITHUB_TOKEN", tok["user_to_server"], true},
		{"XDG_CONFIG_HOME", GitHub{}, map[string]string{"XDG_CONFIG_HOME": ghFixture(t, "xdg")}, nil, "CORK_GITHUB_TOKEN", tok["oauth"], true},
		{"GH_TOKEN wins", GitHub{}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23"), "GH_TOKEN": tok["classic"]}, nil, "GH_TOKEN", tok["classic"], false},
		{"GITHUB_TOKEN wins", GitHub{}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23"), "GITHUB_TOKEN": tok["classic"]}, nil, "GITHUB_TOKEN", tok["classic"], false},
		{"enterprise hosts.yml", GitHub{Host: "GHE.example.com"}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23"), "GH_TOKEN": tok["oauth"]}, nil, "CORK_GITHUB_ENTERPRISE_TOKEN", tok["classic"], true},
		{"enterprise keyring", GitHub{Host: "ghe.example.com"}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-keyring")}, map[string]string{"ghe.example.com": tok["app_installation"]}, "CORK_GITHUB_ENTERPRISE_TOKEN", tok["app_installation"], true},
		{"GH_ENTERPRISE_TOKEN wins", GitHub{Host: "ghe.example.com"}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23"), "GH_ENTERPRISE_TOKEN": tok["fine_grained"], "GITHUB_ENTERPRISE_TOKEN": tok["oauth"]}, nil, "GH_ENTERPRISE_TOKEN", tok["fine_grained"], false},
		{"GITHUB_ENTERPRISE_TOKEN", GitHub{Host: "ghe.example.com"}, map[string]string{"GITHUB_ENTERPRISE_TOKEN": tok["oauth"]}, nil, "GITHUB_ENTERPRISE_TOKEN", tok["oauth"], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := &stubGH{tokens: tt.keyring}
			opts := Options{HostHome: t.TempDir(), HostEnv: tt.env, ForwardHostCredentials: true, Command: gh.command}
			if !tt.provisioned {
				opts.ReadFile = noReads(t)
			}
			plan, err := Build(opts, tt.profile)
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			if got := plan.Egress.TokenEnvMap[GitHubSlot]; got != tt.tokenEnv {
				t.Errorf("TokenEnvMap[github] = %q, want %q", got, tt.tokenEnv)
			}
			toks, err := resolve.Values(plan.Egress.TokenEnvMap, resolve.Merge(tt.env, plan.ProvisionedEnv))
			if err != nil || toks[GitHubSlot].Reveal() != tt.want {
				t.Errorf("resolved token = %v, %v; want the %s one", toks, err, tt.tokenEnv)
			}
			if got := len(plan.Sources) == 1 && len(plan.ProvisionedEnv) == 1; got != tt.provisioned {
				t.Errorf("sources %v, provisioned env %v; want them %v", plan.Sources, plan.ProvisionedEnv, tt.provisioned)
			}
			ph := plan.Egress.Slots[GitHubSlot].Placeholder
			if ph == tt.want || len(ph) != len(tt.want) || ph[:4] != tt.want[:4] {
				t.Errorf("placeholder %q: want the shape of the real token", ph)
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

// TestGitHubMissing: the missing-credential message names what was tried
// and how to fix it, and never a token.
func TestGitHubMissing(t *testing.T) {
	home := t.TempDir()
	emptyDir := t.TempDir()
	tests := []struct {
		name    string
		profile GitHub
		env     map[string]string
		gh      *stubGH
		want    string
	}{
		{"no hosts.yml", GitHub{}, nil, &stubGH{},
			"github: no token for github.com: GH_TOKEN and GITHUB_TOKEN are unset and " + filepath.Join(home, ".config", "gh", "hosts.yml") + " does not exist (run `gh auth login --hostname github.com` on the host, or set GH_TOKEN)"},
		{"no login for the host", GitHub{Host: "other.example.com"}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-2.23")}, &stubGH{},
			"github: no token for other.example.com: GH_ENTERPRISE_TOKEN and GITHUB_ENTERPRISE_TOKEN are unset and " + filepath.Join(ghFixture(t, "gh-2.23"), "hosts.yml") + " has no login for other.example.com (run `gh auth login --hostname other.example.com` on the host, or set GH_ENTERPRISE_TOKEN)"},
		{"empty variables", GitHub{}, map[string]string{"GH_TOKEN": "", "GITHUB_TOKEN": "", "GH_CONFIG_DIR": emptyDir}, &stubGH{},
			"github: no token for github.com: GH_TOKEN and GITHUB_TOKEN are unset and " + filepath.Join(emptyDir, "hosts.yml") + " does not exist"},
		{"keyring fails", GitHub{}, map[string]string{"GH_CONFIG_DIR": ghFixture(t, "gh-keyring")}, &stubGH{err: errors.New("exit status 1")},
			"github: no token for github.com: GH_TOKEN and GITHUB_TOKEN are unset, and gh's login: " + filepath.Join(ghFixture(t, "gh-keyring"), "hosts.yml") + ": the github.com login of monalisa is in the system keyring: gh auth token --hostname github.com: exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Options{HostHome: home, HostEnv: tt.env, ForwardHostCredentials: true, Command: tt.gh.command}, tt.profile)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Build() error =\n%v\nwant it to start with\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "REAL") || strings.Contains(err.Error(), "\n") {
				t.Errorf("Build() error = %q: want one line without a token", err)
			}
		})
	}
}

func TestGitHubEnterprise(t *testing.T) {
	tok := gitHubTokens(t)
	plan, err := Build(Options{HostEnv: map[string]string{"GH_ENTERPRISE_TOKEN": tok["classic"]}, ReadFile: noReads(t)}, GitHub{Host: "GHE.Example.com"})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	ph := plan.Egress.Slots[GitHubSlot].Placeholder
	wantEnv := map[string]string{
		"GH_HOST":                 "ghe.example.com",
		"GH_ENTERPRISE_TOKEN":     ph,
		"GITHUB_ENTERPRISE_TOKEN": ph,
		"GIT_CONFIG_COUNT":        "2",
		"GIT_CONFIG_KEY_0":        "credential.https://ghe.example.com.helper",
		"GIT_CONFIG_VALUE_0":      "",
		"GIT_CONFIG_KEY_1":        "credential.https://ghe.example.com.helper",
		"GIT_CONFIG_VALUE_1":      `!f() { test "$1" = get || return 0; echo username=x-access-token; echo password=` + ph + `; }; f`,
	}
	if !reflect.DeepEqual(plan.Env, wantEnv) {
		t.Errorf("Env = %v, want %v", plan.Env, wantEnv)
	}
	wantRoutes := []policy.Route{{Host: "ghe.example.com", Slot: "github", Header: "Authorization", Scheme: "basic", BasicUser: "x-access-token"}}
	if !reflect.DeepEqual(plan.Egress.Routes, wantRoutes) {
		t.Errorf("Routes = %+v, want %+v", plan.Egress.Routes, wantRoutes)
	}
	if got, want := plan.Egress.Allow, policy.AllowHosts("*.ghe.example.com"); !reflect.DeepEqual(got, want) {
		t.Errorf("Allow = %v, want %v", got, want)
	}
	wantBlock := []policy.Block{
		{Host: "ghe.example.com", Path: "/login/oauth/access_token", Reason: gitHubRefreshReason},
		{Host: "ghe.example.com", Path: "/api/v3/copilot_internal/v2/token", Reason: copilotTokenReason},
	}
	if !reflect.DeepEqual(plan.Egress.Block, wantBlock) {
		t.Errorf("Block = %+v, want %+v", plan.Egress.Block, wantBlock)
	}
}

func TestGitHubBadHost(t *testing.T) {
	for _, h := range []string{"https://ghe.example.com", "ghe.example.com/api", "ghe.example.com:8443", "*.example.com", "ghe example", "api.github.com"} {
		_, err := Build(Options{HostEnv: map[string]string{"GH_ENTERPRISE_TOKEN": "x"}}, GitHub{Host: h})
		if err == nil || !strings.Contains(err.Error(), "github: host: ") {
			t.Errorf("Build(GitHub{Host: %q}) error = %v, want one naming the host", h, err)
		}
	}
}

func TestGitHubRestrictions(t *testing.T) {
	env := map[string]string{"GH_TOKEN": gitHubTokens(t)["classic"], "GH_ENTERPRISE_TOKEN": gitHubTokens(t)["oauth"]}
	readGit := func(host string, push *policy.Push) policy.Route {
		return policy.Route{Host: host, Slot: "github", Header: "Authorization", Scheme: "basic", BasicUser: "x-access-token", Push: push}
	}
	api := func(host string, methods ...string) policy.Route {
		return policy.Route{Host: host, Slot: "github", Header: "Authorization", Scheme: "token", Methods: methods}
	}
	tests := []struct {
		name    string
		profile GitHub
		want    []policy.Route
	}{
		{"read-only", GitHub{ReadOnly: true}, []policy.Route{
			api("api.github.com", "GET", "HEAD"), api("uploads.github.com", "GET", "HEAD"), readGit("github.com", &policy.Push{}),
		}},
		{"push branches", GitHub{PushBranches: []string{"agent/*", "cork-*"}}, []policy.Route{
			api("api.github.com"), api("uploads.github.com"), readGit("github.com", &policy.Push{Branches: []string{"agent/*", "cork-*"}}),
		}},
		{"enterprise push branches", GitHub{Host: "ghe.example.com", PushBranches: []string{"agent/*"}}, []policy.Route{
			readGit("ghe.example.com", &policy.Push{Branches: []string{"agent/*"}}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Build(Options{HostEnv: env, ReadFile: noReads(t)}, tt.profile)
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			if !reflect.DeepEqual(plan.Egress.Routes, tt.want) {
				t.Errorf("Routes = %+v, want %+v", plan.Egress.Routes, tt.want)
			}
			pol, err := plan.Egress.Policy()
			if err != nil {
				t.Fatalf("Policy() error = %v", err)
			}
			rules := pol.Lookup(tt.want[len(tt.want)-1].Host, 443)
			if len(rules.Routes) != 1 || rules.Routes[0].Push == nil || rules.Routes[0].Push.Allows("refs/heads/main", false) {
				t.Errorf("git route %+v: want a push policy that refuses main", rules.Routes)
			}
		})
	}
}

func TestGitHubRestrictionErrors(t *testing.T) {
	tests := []struct {
		name    string
		profile GitHub
		want    string
	}{
		{"both", GitHub{ReadOnly: true, PushBranches: []string{"a"}}, "github: read_only: not with push_branches"},
		{"read-only enterprise", GitHub{Host: "ghe.example.com", ReadOnly: true}, "github: read_only: not with an Enterprise host (ghe.example.com)"},
		{"bad pattern", GitHub{PushBranches: []string{"agent/["}}, `github: push_branches[0]: "agent/[" is not a branch pattern`},
		{"full ref", GitHub{PushBranches: []string{"x", "refs/heads/main"}}, `github: push_branches[1]: "refs/heads/main" is not a branch pattern`},
		{"empty", GitHub{PushBranches: []string{""}}, `github: push_branches[0]: "" is not a branch pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Options{HostEnv: map[string]string{"GH_TOKEN": "x", "GH_ENTERPRISE_TOKEN": "x"}}, tt.profile)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Build() error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestGitHubEnterpriseCredentialHelper: on an Enterprise host the helper
// answers for that host, and leaves github.com to whatever else is
// configured.
func TestGitHubEnterpriseCredentialHelper(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		testenv.Missing(t, "git not installed")
	}
	plan, err := Build(Options{HostEnv: map[string]string{"GH_ENTERPRISE_TOKEN": gitHubTokens(t)["classic"]}, ReadFile: noReads(t)}, GitHub{Host: "ghe.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ph := plan.Env["GH_ENTERPRISE_TOKEN"]
	home := t.TempDir()
	global := "[credential]\n\thelper = \"!f() { echo username=someone; echo password=ghp_REALFROMKEYCHAIN; }; f\"\n"
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(global), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	for k, v := range plan.Env {
		env = append(env, k+"="+v)
	}
	for host, want := range map[string]string{
		"ghe.example.com": "username=x-access-token\npassword=" + ph + "\n",
		"github.com":      "username=someone\n",
	} {
		cmd := exec.Command(gitPath, "credential", "fill")
		cmd.Env = env
		cmd.Dir = home
		cmd.Stdin = strings.NewReader("protocol=https\nhost=" + host + "\npath=o/r.git\n\n")
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("git credential fill for %s = %q, %v; want %q in it", host, out, err, want)
		}
	}
}
