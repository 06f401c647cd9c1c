package provision

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
)

func TestParseBinding(t *testing.T) {
	tests := []struct {
		spec string
		want Binding
	}{
		{"api.example.com=EXAMPLE_TOKEN", Binding{Host: "api.example.com", Env: "EXAMPLE_TOKEN"}},
		{" api.example.com = EXAMPLE_TOKEN ", Binding{Host: "api.example.com", Env: "EXAMPLE_TOKEN"}},
		{"api.example.com=EXAMPLE_KEY,header=X-Api-Key", Binding{Host: "api.example.com", Env: "EXAMPLE_KEY", Header: "X-Api-Key"}},
		{"*.example.com=K2,header=x-key,scheme=RAW", Binding{Host: "*.example.com", Env: "K2", Header: "x-key", Scheme: "raw"}},
		{"api.test:8443=T,scheme=token", Binding{Host: "api.test:8443", Env: "T", Scheme: "token"}},
		{"git.example.com=GIT_PW,scheme=basic,basic_user=oauth2", Binding{Host: "git.example.com", Env: "GIT_PW", Scheme: "basic", BasicUser: "oauth2"}},
		{"api.example.com=T,add_if_missing", Binding{Host: "api.example.com", Env: "T", AddIfMissing: true}},
		{"api.example.com=T,add_if_missing=true", Binding{Host: "api.example.com", Env: "T", AddIfMissing: true}},
	}
	for _, tt := range tests {
		got, err := ParseBinding(tt.spec)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseBinding(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
	}
}

func TestParseBindingErrors(t *testing.T) {
	tests := []struct {
		spec, want string
	}{
		{"", `"": want HOST=VAR`},
		{"api.example.com", `"api.example.com": want HOST=VAR[,header=NAME][,scheme=S][,basic_user=U][,add_if_missing], e.g. api.example.com=EXAMPLE_TOKEN`},
		{"=TOKEN", `"=TOKEN": want HOST=VAR`},
		{"api.example.com=", `"api.example.com=": want HOST=VAR`},
		{"https://api.example.com=T", `host: invalid host pattern "https://api.example.com": a host, not a URL`},
		{"api.example.com/v1=T", `host: invalid host pattern "api.example.com/v1": a host, not a URL or path`},
		{"a*.example.com=T", `* only as the first label, as in *.example.com`},
		{"api.example.com=T,header=X Key", `header: invalid header name "X Key"`},
		{"api.example.com=T,scheme=digest", `scheme: unknown scheme "digest" (want bearer, token, basic, raw)`},
		{"api.example.com=T,basic_user=u", "basic_user: only with scheme basic"},
		{"api.example.com=T,scheme=basic,basic_user=a:b", "basic_user: want printable ASCII without ':' or spaces"},
		{"api.example.com=T,header=", `"api.example.com=T,header=": option header needs a value (header=...)`},
		{"api.example.com=T,scheme=raw,scheme=bearer", "option scheme given twice"},
		{"api.example.com=T,slot=x", `unknown option "slot" (want header=, scheme=, basic_user=, add_if_missing)`},
		{"api.example.com=T,add_if_missing=false", "add_if_missing takes no value"},
		{"api.example.com=T,", "empty option (a stray comma?)"},
		{"api.example.com=T,,header=X", "empty option"},
		{"api.example.com=PATH", `binding for host "api.example.com": VAR: PATH is not a credential variable`},
		{"api.example.com=HTTPS_PROXY", "HTTPS_PROXY is not a credential variable"},
		{"api.example.com=CORK_CODEX_ACCESS_TOKEN", "CORK_CODEX_ACCESS_TOKEN: CORK_ variables are cork's own"},
		{"api.example.com=1TOKEN", `binding for host "api.example.com": VAR: want the name of the host variable`},
	}
	for _, tt := range tests {
		_, err := ParseBinding(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseBinding(%q) error = %v, want it to contain %q", tt.spec, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseBinding(%q) error = %q, want one line", tt.spec, err)
		}
	}
}

func TestParseBindingNeverEchoesAValue(t *testing.T) {
	// A credential pasted where the variable name goes.
	for _, spec := range []string{
		"api.example.com=sk-ant-api03-REALPASTEDKEYabcdefghijklmnop",
		"api.example.com=ghp_REALPASTEDTOKEN0123456789abcdefghijkl,header=X-Token",
		"api.example.com=REAL-PASTED-UPPER",
	} {
		_, err := ParseBinding(spec)
		if err == nil {
			t.Errorf("ParseBinding(%q) error = nil, want an error", spec)
			continue
		}
		if strings.Contains(err.Error(), "REAL") {
			t.Errorf("ParseBinding(%q) error = %q, echoes the value", spec, err)
		}
		if !strings.Contains(err.Error(), "not a value") {
			t.Errorf("ParseBinding(%q) error = %q, want it to explain that VAR is a variable name", spec, err)
		}
	}
}

func TestGeneric(t *testing.T) {
	const realKey = "acme_REALACMEKEY0123456789abcdefghijklmn" // a shape cork does not know
	g := Generic{
		Bindings: []Binding{
			{Host: "api.example.com", Env: "EXAMPLE_TOKEN"},
			{Host: "uploads.example.com", Env: "EXAMPLE_TOKEN", Scheme: "token"},
			{Host: "api.acme.test", Env: "ACME_KEY", Header: "X-Api-Key"},
			{Host: "git.acme.test", Env: "ACME_GIT", Scheme: "basic", BasicUser: "oauth2", AddIfMissing: true},
		},
		Allow: policy.AllowHosts("registry.npmjs.org"),
		Block: []policy.Block{{Host: "api.example.com", Path: "/admin", Reason: "not for agents"}},
	}
	opts := Options{HostEnv: map[string]string{"ACME_KEY": realKey, "ACME_GIT": "opaqueREALGITPASSWORD0123456789"}, ReadFile: noReads(t)}
	plan, err := Build(opts, g)
	if err != nil {
		t.Fatalf("Build(generic) error = %v", err)
	}
	wantTEM := map[string]string{"example_token": "EXAMPLE_TOKEN", "acme_key": "ACME_KEY", "acme_git": "ACME_GIT"}
	if got := plan.Egress.TokenEnvMap; !reflect.DeepEqual(got, wantTEM) {
		t.Errorf("TokenEnvMap = %v, want %v", got, wantTEM)
	}
	wantRoutes := []policy.Route{
		{Host: "api.example.com", Slot: "example_token", Header: "Authorization", Scheme: "bearer"},
		{Host: "uploads.example.com", Slot: "example_token", Header: "Authorization", Scheme: "token"},
		{Host: "api.acme.test", Slot: "acme_key", Header: "X-Api-Key", Scheme: "raw"},
		{Host: "git.acme.test", Slot: "acme_git", Header: "Authorization", Scheme: "basic", BasicUser: "oauth2", AddIfMissing: true},
	}
	if got := plan.Egress.Routes; !reflect.DeepEqual(got, wantRoutes) {
		t.Errorf("Routes = %+v, want %+v", got, wantRoutes)
	}
	if got, want := plan.Egress.Allow, g.Allow; !reflect.DeepEqual(got, want) {
		t.Errorf("Allow = %v, want %v", got, want)
	}
	if got, want := plan.Egress.Block, g.Block; !reflect.DeepEqual(got, want) {
		t.Errorf("Block = %v, want %v", got, want)
	}
	if len(plan.Files) != 0 || len(plan.ProvisionedEnv) != 0 || len(plan.Sources) != 0 {
		t.Errorf("plan = %v, want no files, provisioned env or sources", plan)
	}
	if got, want := keys(plan.Env), []string{"ACME_GIT", "ACME_KEY", "EXAMPLE_TOKEN"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Env keys = %v, want %v", got, want)
	}
	for slot, env := range wantTEM {
		if plan.Env[env] != plan.Egress.Slots[slot].Placeholder {
			t.Errorf("Env[%s] = %q, want slot %s's placeholder %q", env, plan.Env[env], slot, plan.Egress.Slots[slot].Placeholder)
		}
	}
	shapes := []struct {
		env, prefix string
		n           int
	}{
		{"EXAMPLE_TOKEN", "cork_", 5 + 32}, // not set on the host
		{"ACME_KEY", "acme_", len(realKey)},
		{"ACME_GIT", "", len(opts.HostEnv["ACME_GIT"])},
	}
	for _, s := range shapes {
		ph := plan.Env[s.env]
		if !strings.HasPrefix(ph, s.prefix) || len(ph) != s.n || strings.Trim(ph[len(s.prefix):], alnum) != "" {
			t.Errorf("Env[%s] = %q, want %q and %d characters in all", s.env, ph, s.prefix, s.n)
		}
	}
	if strings.Contains(sandboxView(t, plan), "REAL") {
		t.Error("sandbox holds a real value")
	}

	again, err := Build(opts, g)
	if err != nil {
		t.Fatal(err)
	}
	for slot, s := range plan.Egress.Slots {
		if again.Egress.Slots[slot] == s {
			t.Errorf("two Builds: slot %s placeholder %q both times, want random", slot, s.Placeholder)
		}
	}
}

func TestGenericErrors(t *testing.T) {
	tests := []struct {
		name string
		g    Generic
		want []string
	}{
		{"empty", Generic{}, []string{"generic: nothing to provision: give bindings (--inject HOST=VAR) or a --policy file"}},
		{"host twice", Generic{Bindings: []Binding{
			{Host: "api.example.com", Env: "A"},
			{Host: "API.example.com.", Env: "B", Header: "X-Key"},
		}}, []string{"generic: bindings[1]: host API.example.com. is already bound (to A); one binding per host"}},
		// Build judges a binding as the proxy will, so this fails
		// here and not later at launch.
		{"port out of range", Generic{Bindings: []Binding{{Host: "api.example.com:99999", Env: "A"}}}, []string{
			`generic: bindings[0].host: invalid host pattern "api.example.com:99999": port out of range`,
		}},
		{"invalid", Generic{
			Bindings: []Binding{{Host: "", Env: "lower", Scheme: "digest"}},
			Allow:    policy.AllowHosts("https://x.example.com"),
			Block:    []policy.Block{{Host: "x.example.com", Path: "admin"}},
		}, []string{
			"bindings[0].host: required",
			"bindings[0].env: want the name of the host variable",
			`bindings[0].scheme: unknown scheme "digest"`,
			`allow[0]: invalid host pattern "https://x.example.com": a host, not a URL`,
			`block[0].path: must start with "/"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Options{}, tt.g)
			if err == nil {
				t.Fatalf("Build() error = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Build() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestGenericConflictsWithProfiles(t *testing.T) {
	g := Generic{Bindings: []Binding{{Host: "api.github.com", Env: "MY_GH"}}}
	_, err := Build(Options{}, GitHub{}, g)
	if err == nil || !strings.Contains(err.Error(), "generic: conflict with profile github: both provide a route for api.github.com") {
		t.Errorf("Build(github, generic on api.github.com) error = %v, want a route conflict", err)
	}
	// The same host variable is the same credential: one slot, one
	// placeholder (share.go).
	g = Generic{Bindings: []Binding{{Host: "gh.example.com", Env: "GH_TOKEN"}}}
	plan, err := Build(Options{}, GitHub{}, g)
	if err != nil {
		t.Fatalf("Build(github, generic with GH_TOKEN) error = %v, want the slot shared", err)
	}
	if len(plan.Egress.Slots) != 1 || plan.Egress.TokenEnvMap[GitHubSlot] != GHTokenEnv {
		t.Errorf("Build(github, generic with GH_TOKEN) slots = %v, map = %v, want one slot github from GH_TOKEN", plan.Egress.Slots, plan.Egress.TokenEnvMap)
	}
	for _, r := range plan.Egress.Routes {
		if r.Host == "gh.example.com" && r.Slot != GitHubSlot {
			t.Errorf("route for gh.example.com has slot %q, want %q", r.Slot, GitHubSlot)
		}
	}
}

func TestGenericPrefix(t *testing.T) {
	long := strings.Repeat("x", minRandom)
	tests := []struct{ real, want string }{
		{"acme_" + long, "acme_"},
		{"lin-" + long, "lin-"},
		{"v2x_" + long, "v2x_"},
		{"abcdefgh_" + long, "abcdefgh_"},
		{"abcdefghi_" + long, ""}, // first segment too long to be a fixed prefix
		{"Acme_" + long, ""},      // upper case: likely random
		{"1234_" + long, ""},      // digits only: likely random
		{"3f2b8c1a-" + long, ""},  // hex: a UUID's first group, part of the secret
		{"cafe_" + long, ""},      // hex letters only: could be random too
		{"_" + long, ""},
		{"acme_short", ""}, // too little after it
		{"opaque" + long, ""},
	}
	for _, tt := range tests {
		if got := genericPrefix(tt.real); got != tt.want {
			t.Errorf("genericPrefix(%q) = %q, want %q", tt.real, got, tt.want)
		}
	}
}

func TestGenericPlaceholderKnownPrefixes(t *testing.T) {
	tests := []struct{ real, prefix string }{
		{"glpat-REALGITLAB0123456789ab", "glpat-"},
		{"xoxb-1234-REALSLACK0123456789abcdefgh", "xoxb-"},
		{"sk-ant-api03-REALKEY" + strings.Repeat("x", 88), "sk-ant-api03-"},
		{"github_pat_11REAL" + strings.Repeat("x", 76), "github_pat_"},
		{"sk_live_REALSTRIPE0123456789abcdef", "sk_live_"},
	}
	for _, tt := range tests {
		got, err := genericPlaceholder(Options{}.withDefaults(), tt.real)
		if err != nil || !strings.HasPrefix(got, tt.prefix) || len(got) != max(len(tt.real), len(tt.prefix)+minRandom) || strings.Contains(got, "REAL") {
			t.Errorf("genericPlaceholder(%q) = %q, %v; want prefix %q and the same length", tt.real, got, err, tt.prefix)
		}
	}
}

func TestParseGenericPolicy(t *testing.T) {
	const src = `# extra hosts for cork run
routes:
  - host: api.example.com
    env: EXAMPLE_TOKEN
  - host: api.acme.test
    env: ACME_KEY
    header: X-Api-Key
    scheme: RAW
  - host: git.acme.test
    env: ACME_GIT
    scheme: basic
    basic_user: oauth2
    add_if_missing: true
    unscrubbable: Pass
allow:
  - registry.npmjs.org
  - "*.example.org"
block:
  - { host: api.example.com, path: /admin, reason: "not for agents" }
  - { host: api.example.com, path: /Internal, case_sensitive: true }
`
	g, err := ParseGenericPolicy([]byte(src))
	if err != nil {
		t.Fatalf("ParseGenericPolicy() error = %v", err)
	}
	want := Generic{
		Bindings: []Binding{
			{Host: "api.example.com", Env: "EXAMPLE_TOKEN"},
			{Host: "api.acme.test", Env: "ACME_KEY", Header: "X-Api-Key", Scheme: "raw"},
			{Host: "git.acme.test", Env: "ACME_GIT", Scheme: "basic", BasicUser: "oauth2", AddIfMissing: true, Unscrubbable: "pass"},
		},
		Allow: policy.AllowHosts("registry.npmjs.org", "*.example.org"),
		Block: []policy.Block{
			{Host: "api.example.com", Path: "/admin", Reason: "not for agents"},
			{Host: "api.example.com", Path: "/Internal", CaseSensitive: true},
		},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("ParseGenericPolicy() = %+v, want %+v", g, want)
	}
	if _, err := Build(Options{}, g); err != nil {
		t.Errorf("Build(parsed policy) error = %v", err)
	}
	// YAML aliases and merge keys, as in the proxy's policy files.
	aliased, err := ParseGenericPolicy([]byte("routes:\n  - &r {host: api.acme.test, env: ACME_KEY, header: X-Api-Key}\n  - <<: *r\n    host: api2.acme.test\n"))
	if err != nil || len(aliased.Bindings) != 2 || !reflect.DeepEqual(aliased.Bindings[1], Binding{Host: "api2.acme.test", Env: "ACME_KEY", Header: "X-Api-Key"}) {
		t.Errorf("ParseGenericPolicy(aliases) = %+v, %v; want the second route to merge the first", aliased, err)
	}
	scoped, err := ParseGenericPolicy([]byte("routes:\n  - host: git.acme.test\n    env: ACME_KEY\n    methods: [get, POST]\n    push: {branches: [\"agent/*\"], tags: true}\n" +
		"allow:\n  - registry.npmjs.org\n  - {host: api.acme.test, path: /v1/public, methods: [GET]}\n"))
	wantAllow := []policy.Allow{{Host: "registry.npmjs.org"}, {Host: "api.acme.test", Path: "/v1/public", Methods: []string{"GET"}}}
	if err != nil || !reflect.DeepEqual(scoped.Allow, wantAllow) || !reflect.DeepEqual(scoped.Bindings[0].Methods, []string{"get", "POST"}) ||
		!reflect.DeepEqual(scoped.Bindings[0].Push, &policy.Push{Branches: []string{"agent/*"}, Tags: true}) {
		t.Errorf("ParseGenericPolicy(methods, push, scoped allow) = %+v, %v", scoped, err)
	} else if plan, err := Build(Options{}, &scoped); err != nil {
		t.Errorf("Build(scoped) error = %v", err)
	} else if r := plan.Egress.Routes[0]; !reflect.DeepEqual(r.Methods, []string{"get", "POST"}) || r.Push == nil {
		t.Errorf("Build(scoped) route = %+v, want its methods and push", r)
	} else if pol, err := plan.Egress.Policy(); err != nil {
		t.Errorf("Policy() error = %v", err)
	} else if got := pol.Lookup("git.acme.test", 443).Permits("DELETE", "/"); got != policy.DenyMethod {
		t.Errorf("Permits(DELETE) = %q, want %q", got, policy.DenyMethod)
	}
	if g, err := ParseGenericPolicy([]byte(`{"allow": ["registry.npmjs.org"]}`)); err != nil || len(g.Allow) != 1 {
		t.Errorf("ParseGenericPolicy(JSON allow only) = %+v, %v; want one allow entry", g, err)
	}
}

func TestParseGenericPolicyErrors(t *testing.T) {
	tests := []struct {
		name, policy string
		want         []string
	}{
		{"empty", "  \n", []string{"empty policy"}},
		{"null", "~\n", []string{"empty policy"}},
		{"not a mapping", "- a\n", []string{"policy: want a mapping with routes, allow and block (line 1)"}},
		{"syntax", "routes: [\n", []string{"line"}},
		{"two documents", "allow: [a.test]\n---\nallow: [b.test]\n", []string{"more than one YAML document"}},
		{"slots", "slots:\n  x: {placeholder: abcdefgh}\n", []string{"slots: cork run makes the slots and placeholders; name each route's variable with env: VAR (line 1)"}},
		{"unknown top", "route: []\n", []string{`policy: unknown field "route" (want routes, allow, block) (line 1)`}},
		{"route slot", "routes:\n  - host: a.test\n    slot: x\n", []string{`routes[0]: unknown field "slot" (want host, env, header, scheme, basic_user, add_if_missing, unscrubbable, methods, push) (line 3)`}},
		{"route shapes", "routes:\n  - host: [a.test]\n    env: A\n    add_if_missing: yes please\n  - just-a-string\n", []string{
			"routes[0].host: want a single value (line 2)",
			`routes[0].add_if_missing: want true or false, got "yes please" (line 4)`,
			"routes[1]: want a mapping with host, env, header, scheme, basic_user, add_if_missing, unscrubbable, methods and push (line 5)",
		}},
		{"routes not a list", "routes: {host: a.test}\n", []string{"routes: want a list (line 1)"}},
		{"allow entry", "allow:\n  - [a.test]\n", []string{"allow[0]: want a host pattern or a mapping with host, path and methods (line 2)"}},
		{"case_sensitive shape", "block:\n  - host: a.test\n    path: /x\n    case_sensitive: yes\n", []string{`block[0].case_sensitive: want true or false, got "yes" (line 4)`}},
		{"new keys", "routes:\n  - host: a.test\n    env: A\n    unscrubbable: sometimes\nblock:\n  - host: a.test\n    path: /x\n  - host: a.test\n    case_sensitive: true\n  - host: a.test\n    path: /x#y\n", []string{
			`routes[0].unscrubbable: unknown value "sometimes" (want refuse or pass)`,
			"block[1].case_sensitive: only with a path",
			"block[2].path: a path only, without query or fragment",
		}},
		// Judged as the proxy judges it, named by the file's own
		// index and line.
		{"port out of range", "allow: [registry.npmjs.org]\nroutes:\n  - host: api.example.com:99999\n    env: EXAMPLE_TOKEN\n", []string{
			`routes[0].host: invalid host pattern "api.example.com:99999": port out of range (line 3)`,
		}},
		{"host twice", "routes:\n  - host: a.test\n    env: A\n  - host: A.test.\n    env: B\n    header: X-Key\n", []string{
			"routes[1].host: A.test. is already bound by routes[0]; one route per host (line 4)",
		}},
		{"methods and push", "routes:\n  - host: a.test\n    env: A\n    methods: [GET, CONNECT]\n    push: {branches: [refs/heads/x]}\nallow:\n  - {host: b.test, path: rel, methods: [G@T]}\n", []string{
			"routes[0].methods[1]: CONNECT cannot be allowed: cork answers it itself (line 4)",
			`routes[0].push.branches[0]: write the branch name without refs/heads/ ("x") (line 5)`,
			`allow[0].path: must start with "/" (line 7)`,
			`allow[0].methods[0]: invalid HTTP method "G@T" (line 7)`,
		}},
		{"block key", "block:\n  - host: a.test\n    paths: /x\n", []string{`block[0]: unknown field "paths" (want host, path, case_sensitive, reason) (line 3)`}},
		{"values", "routes:\n  - host: https://a.test\n    env: sk-ant-REALPASTED\n  - env: B\nallow: [\"a b\"]\nblock:\n  - host: a.test\n    path: x\n", []string{
			`routes[0].host: invalid host pattern "https://a.test": a host, not a URL (line 2)`,
			"routes[0].env: want the name of the host variable that holds the credential (A-Z, 0-9, _), not a value",
			"routes[1].host: required (line 4)",
			`allow[0]: invalid host pattern "a b": contains whitespace (line 5)`,
			`block[0].path: must start with "/"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGenericPolicy([]byte(tt.policy))
			if err == nil {
				t.Fatalf("ParseGenericPolicy() error = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseGenericPolicy() error = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "REAL") {
				t.Errorf("ParseGenericPolicy() error = %q, echoes an env value", err)
			}
		})
	}
}
