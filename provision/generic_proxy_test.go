package provision_test

// Black-box checks of the claude, github and generic profiles (and of all
// profiles together) against the proxy that consumes their plans: the
// rendered policy must parse, bind each slot where the profile says, and the
// proxy must inject the real token the way the sandbox's clients send it.
// provision itself never imports proxy.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testcert"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/proxy"
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

// parsePolicy renders plan's policy and parses it as the proxy does.
func parsePolicy(t *testing.T, plan provision.Plan) *proxy.Policy {
	t.Helper()
	y, err := plan.Egress.PolicyYAML()
	if err != nil {
		t.Fatalf("PolicyYAML() error = %v", err)
	}
	pol, err := proxy.ParsePolicy(y)
	if err != nil {
		t.Fatalf("proxy.ParsePolicy(PolicyYAML()) error = %v\n%s", err, y)
	}
	return pol
}

// checkPolicy asserts that every route binds its slot, every allow entry
// tunnels, and every block answers for its path.
func checkPolicy(t *testing.T, plan provision.Plan, pol *proxy.Policy) {
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
		if rules := pol.Lookup(hostPort(a)); !rules.Allowed || rules.Intercept() {
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
			Allow: []string{"registry.npmjs.org"},
			Block: []provision.Block{{Host: "api.example.com", Path: "/admin"}},
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
			Allow:    []string{"proxy.golang.org", "*.pythonhosted.org"},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := provision.Build(tt.opts, tt.profiles...)
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			pol := parsePolicy(t, plan)
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
	pol := parsePolicy(t, plan)
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

// TestInjection runs the proxy on a plan's policy and checks what upstream
// receives for the headers the sandbox's clients send: gh's "token", curl's
// "Bearer", git's Basic, Claude Code's x-api-key, a generic raw header.
func TestInjection(t *testing.T) {
	const (
		realGH     = "ghp_REALZ2G8Kl5NHV9CZoEG1WBj3OwMqYkloCsY"
		realClaude = "sk-ant-api03-REALKEY0123456789abcdefghijklmnop"
		realAcme   = "acme_REALACMEKEY0123456789abcdefghijklmn"
	)
	hostEnv := map[string]string{"GH_TOKEN": realGH, "ANTHROPIC_API_KEY": realClaude, "ACME_KEY": realAcme}
	plan, err := provision.Build(provision.Options{HostEnv: hostEnv}, provision.GitHub{}, provision.Claude{},
		provision.Generic{Bindings: []provision.Binding{{Host: "api.acme.test", Env: "ACME_KEY", Header: "X-Acme-Key"}}})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	tokens, err := resolve.Values(plan.Egress.TokenEnvMap, resolve.Merge(hostEnv, plan.ProvisionedEnv))
	if err != nil {
		t.Fatal(err)
	}

	ca, err := testcert.NewCA("upstream")
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"api.github.com", "github.com", "api.anthropic.com", "api.acme.test"}
	got := make(chan http.Header, 1)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	if up.TLS, err = ca.ServerConfig(hosts...); err != nil {
		t.Fatal(err)
	}
	up.StartTLS()
	t.Cleanup(up.Close)
	resolveMap := map[string]string{}
	for _, h := range hosts {
		resolveMap[h+":443"] = up.Listener.Addr().String()
	}
	p, err := proxy.New(proxy.Config{
		Policy:          parsePolicy(t, plan),
		Tokens:          tokens,
		UpstreamRootCAs: ca.Pool(),
		AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolve:         resolveMap,
	})
	if err != nil {
		t.Fatalf("proxy.New() error = %v", err)
	}
	t.Cleanup(func() { p.Close() })
	ps := httptest.NewServer(p)
	t.Cleanup(ps.Close)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CACertPEM()) {
		t.Fatal("proxy CA: no certificate")
	}
	proxyURL, err := url.Parse(ps.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	gh := plan.Env["GH_TOKEN"]
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	tests := []struct {
		name, url, header, value, want string
	}{
		{"gh token", "https://api.github.com/user", "Authorization", "token " + gh, "token " + realGH},
		{"curl bearer", "https://api.github.com/user", "Authorization", "Bearer " + gh, "Bearer " + realGH},
		{"git basic", "https://github.com/cli/cli.git/info/refs", "Authorization", basic("x-access-token", gh), basic("x-access-token", realGH)},
		{"claude api key", "https://api.anthropic.com/v1/messages", "X-Api-Key", plan.Env["ANTHROPIC_API_KEY"], realClaude},
		{"generic raw", "https://api.acme.test/v1/things", "X-Acme-Key", plan.Env["ACME_KEY"], realAcme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(tt.header, tt.value)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.url, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %q (%s), want 200", tt.url, resp.StatusCode, body, resp.Header.Get("X-Cork-Deny-Reason"))
			}
			if v := (<-got).Get(tt.header); v != tt.want {
				t.Errorf("upstream %s = %q, want the real credential %s", tt.header, redact(v), redact(tt.want))
			}
		})
	}

	t.Run("placeholder to an unbound host", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, "https://api.anthropic.com/v1/messages", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+gh)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GitHub placeholder to api.anthropic.com = %d, want 403", resp.StatusCode)
		}
	})
}

// redact shortens a credential for a failure message.
func redact(s string) string {
	if len(s) > 12 {
		return fmt.Sprintf("%s…(%d)", s[:12], len(s))
	}
	return s
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
	pol := parsePolicy(t, plan)
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
