package provision_test

// Black-box checks of the claude, github and generic profiles (and of all
// profiles together) against the policy that the proxy compiles from their
// plans: each slot is bound where the profile says, each allow entry
// tunnels, each block answers. launch's TestInjection runs the proxy on
// such a plan.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
)

var testNow = time.Date(2026, 11, 2, 8, 30, 0, 0, time.UTC)

func fixture(t *testing.T, parts ...string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(append([]string{"..", "testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// compile compiles plan's policy as the launcher does.
func compile(t *testing.T, plan provision.Plan) *policy.Policy {
	t.Helper()
	pol, err := plan.Egress.Policy()
	if err != nil {
		t.Fatalf("Egress.Policy() error = %v", err)
	}
	return pol
}

// checkPolicy asserts that every route binds its slot, every allow entry
// tunnels, and every block answers for its path.
func checkPolicy(t *testing.T, plan provision.Plan, pol *policy.Policy) {
	t.Helper()
	hostPort := func(h string) (string, int) {
		h = strings.Replace(h, "*.", "sub.", 1)
		if host, port, ok := strings.Cut(h, ":"); ok {
			var n int
			fmt.Sscan(port, &n)
			return host, n
		}
		return h, 443
	}
	for _, r := range plan.Egress.Routes {
		if h, port := hostPort(r.Host); !pol.SlotBound(r.Slot, h, port) {
			t.Errorf("policy: slot %s not bound to %s", r.Slot, r.Host)
		}
	}
	for _, a := range plan.Egress.Allow {
		if rules := pol.Lookup(hostPort(a.Host)); !rules.Allowed || rules.Intercept() {
			t.Errorf("policy: %s = %+v, want a blind tunnel", a, rules)
		}
	}
	for _, b := range plan.Egress.Block {
		rules := pol.Lookup(hostPort(b.Host))
		if !rules.Intercept() || rules.BlockFor(b.Path) == nil || (b.Reason != "" && rules.BlockFor(b.Path).Reason != b.Reason) {
			t.Errorf("policy: %s%s = %+v, want intercepted and blocked with %q", b.Host, b.Path, rules, b.Reason)
		}
	}
}

func TestProfilePoliciesParse(t *testing.T) {
	claudeDir := fixture(t, "claude", "oauth")
	tests := []struct {
		name     string
		opts     provision.Options
		profiles []provision.Profile
	}{
		{"claude file", provision.Options{HostEnv: map[string]string{"CLAUDE_CONFIG_DIR": claudeDir}, ForwardHostCredentials: true, Now: func() time.Time { return testNow }}, []provision.Profile{provision.Claude{}}},
		{"claude api key", provision.Options{HostEnv: map[string]string{"ANTHROPIC_API_KEY": "sk-ant-api03-REALKEY0123456789abcdefghijklmnop"}}, []provision.Profile{provision.Claude{}}},
		{"claude forwarding off", provision.Options{}, []provision.Profile{provision.Claude{}}},
		{"github", provision.Options{HostEnv: map[string]string{"GH_TOKEN": "ghp_REALZ2G8Kl5NHV9CZoEG1WBj3OwMqYkloCsY"}}, []provision.Profile{provision.GitHub{}}},
		{"generic", provision.Options{}, []provision.Profile{provision.Generic{
			Bindings: []provision.Binding{
				{Host: "api.example.com", Env: "EXAMPLE_TOKEN"},
				{Host: "*.acme.test", Env: "ACME_KEY", Header: "x-api-key"},
				{Host: "git.example.com:8443", Env: "EXAMPLE_TOKEN", Scheme: "basic"},
			},
			Allow: policy.AllowHosts("registry.npmjs.org"),
			Block: []policy.Block{{Host: "api.example.com", Path: "/admin"}},
		}}},
		{"codex, claude, github and generic together", provision.Options{
			HostEnv: map[string]string{
				"CODEX_HOME":        fixture(t, "codex", "chatgpt"),
				"CLAUDE_CONFIG_DIR": claudeDir,
				"GITHUB_TOKEN":      "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",
				"NPM_TOKEN":         "npm_REALNPMTOKEN0123456789abcdefghijklmn",
			},
			ForwardHostCredentials: true,
			Now:                    func() time.Time { return testNow },
		}, []provision.Profile{provision.Codex{}, provision.Claude{}, provision.GitHub{}, provision.Generic{
			Bindings: []provision.Binding{{Host: "registry.npmjs.org", Env: "NPM_TOKEN"}},
			Allow:    policy.AllowHosts("proxy.golang.org", "*.pythonhosted.org"),
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := provision.Build(tt.opts, tt.profiles...)
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			pol := compile(t, plan)
			checkPolicy(t, plan, pol)
			if got, want := len(pol.Slots), len(plan.Egress.Slots); got != want {
				t.Errorf("policy has %d slots, want %d", got, want)
			}
		})
	}
}

func TestCombinedPlan(t *testing.T) {
	opts := provision.Options{
		HostEnv: map[string]string{
			"CODEX_HOME":        fixture(t, "codex", "chatgpt"),
			"CLAUDE_CONFIG_DIR": fixture(t, "claude", "oauth"),
			"GH_TOKEN":          "ghp_REALZ2G8Kl5NHV9CZoEG1WBj3OwMqYkloCsY",
		},
		ForwardHostCredentials: true,
		Now:                    func() time.Time { return testNow },
	}
	plan, err := provision.Build(opts, provision.Codex{}, provision.Claude{}, provision.GitHub{})
	if err != nil {
		t.Fatalf("Build(codex, claude, github) error = %v", err)
	}
	pol := compile(t, plan)
	for _, want := range []string{"api.anthropic.com", "api.github.com", "chatgpt.com", "github.com", "platform.claude.com", "console.anthropic.com", "auth.openai.com"} {
		if !slices.Contains(pol.InterceptHosts(), want) {
			t.Errorf("InterceptHosts() = %v, want %s", pol.InterceptHosts(), want)
		}
	}
	if rules := pol.Lookup("objects.githubusercontent.com", 443); !rules.Allowed || rules.Intercept() {
		t.Errorf("objects.githubusercontent.com = %+v, want a blind tunnel", rules)
	}
	if got, want := len(plan.Sources), 2; got != want {
		t.Errorf("Sources = %v, want codex's auth.json and claude's .credentials.json", plan)
	}
	tokens, err := resolve.Values(plan.Egress.TokenEnvMap, resolve.Merge(opts.HostEnv, plan.ProvisionedEnv))
	if err != nil {
		t.Fatalf("resolve.Values() error = %v", err)
	}
	if got := len(tokens); got != 3 {
		t.Errorf("resolved %d tokens, want codex, claude and github", got)
	}
	if tok := tokens["github"]; tok.Reveal() != opts.HostEnv["GH_TOKEN"] {
		t.Error("slot github does not resolve to the host GH_TOKEN")
	}
	if tok := tokens["claude"]; !strings.HasPrefix(tok.Reveal(), "sk-ant-oat01-REALACCESS") {
		t.Error("slot claude does not resolve to the host .credentials.json access token")
	}
}

// TestGenericPolicyOptionsReachProxy: a route's unscrubbable and a block's
// case_sensitive, given in a cork run policy, mean the same to the proxy.
func TestGenericPolicyOptionsReachProxy(t *testing.T) {
	g, err := provision.ParseGenericPolicy([]byte(`
routes:
  - host: api.example.com
    env: EXAMPLE_TOKEN
    unscrubbable: pass
  - host: other.example.com
    env: EXAMPLE_TOKEN
block:
  - { host: api.example.com, path: /Internal, case_sensitive: true }
  - { host: api.example.com, path: /admin }
`))
	if err != nil {
		t.Fatalf("ParseGenericPolicy() error = %v", err)
	}
	plan, err := provision.Build(provision.Options{}, g)
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	pol := compile(t, plan)
	checkPolicy(t, plan, pol)
	api := pol.Lookup("api.example.com", 443)
	if !api.PassUnscrubbable() {
		t.Error("api.example.com: PassUnscrubbable() = false, want true (its only route says pass)")
	}
	if pol.Lookup("other.example.com", 443).PassUnscrubbable() {
		t.Error("other.example.com: PassUnscrubbable() = true, want false (the default is refuse)")
	}
	for path, blocked := range map[string]bool{
		"/Internal/x": true,
		"/internal":   false, // case_sensitive
		"/ADMIN;x=1":  true,
		"/admins":     false,
	} {
		if got := api.BlockFor(path) != nil; got != blocked {
			t.Errorf("api.example.com: BlockFor(%q) blocked = %v, want %v", path, got, blocked)
		}
	}
}
