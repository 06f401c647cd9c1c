package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
)

func writePolicy(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGenericProfileFromFlags(t *testing.T) {
	if g, err := genericProfile(nil, ""); g != nil || err != nil {
		t.Errorf("genericProfile(none) = %+v, %v; want nil, nil", g, err)
	}
	policyPath := writePolicy(t, "routes:\n  - host: api.acme.test\n    env: ACME_KEY\n    header: X-Api-Key\nallow: [registry.npmjs.org]\nblock:\n  - {host: api.acme.test, path: /admin}\n")
	g, err := genericProfile([]string{"api.example.com=EXAMPLE_TOKEN", "uploads.example.com=EXAMPLE_TOKEN,scheme=token"}, policyPath)
	if err != nil {
		t.Fatalf("genericProfile() error = %v", err)
	}
	want := &provision.Generic{
		Bindings: []provision.Binding{
			{Host: "api.example.com", Env: "EXAMPLE_TOKEN"},
			{Host: "uploads.example.com", Env: "EXAMPLE_TOKEN", Scheme: "token"},
			{Host: "api.acme.test", Env: "ACME_KEY", Header: "X-Api-Key"},
		},
		Allow: policy.AllowHosts("registry.npmjs.org"),
		Block: []policy.Block{{Host: "api.acme.test", Path: "/admin"}},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("genericProfile() = %+v, want %+v", g, want)
	}
}

func TestRunInjectErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	badShape := writePolicy(t, "slots: {}\nroute: []\n")
	bad := writePolicy(t, "routes:\n  - host: a.test\n    env: lower\n  - host: https://b.test\n    env: B\n")
	badPort := writePolicy(t, "routes:\n  - env: EXAMPLE_TOKEN\n    host: api.example.com:99999\n")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no profile", []string{"run", "--", "true"}, []string{"cork: --agent: give at least one of claude, codex, copilot, gemini, github, or --inject / --policy\n"}},
		{"agent generic", []string{"run", "--agent", "generic", "--", "true"}, []string{"cork: --agent generic: give its bindings with --inject HOST=VAR or --policy FILE instead\n"}},
		{"bad spec", []string{"run", "--inject", "api.example.com", "--", "true"}, []string{`cork: --inject "api.example.com": want HOST=VAR`}},
		{"bad option", []string{"run", "--inject", "api.example.com=T,scheme=digest", "--", "true"}, []string{`cork: --inject "api.example.com=T,scheme=digest": scheme: unknown scheme "digest"`}},
		{"pasted value", []string{"run", "--inject", "api.example.com=sk-ant-REALPASTED", "--", "true"}, []string{`cork: --inject binding for host "api.example.com": VAR: want the name of the host variable`}},
		{"missing policy", []string{"run", "--policy", missing, "--", "true"}, []string{"cork: --policy: " + missing + ": no such file or directory\n"}},
		{"bad policy shape", []string{"run", "--policy", badShape, "--", "true"}, []string{
			"cork: --policy " + badShape + ": slots: cork run makes the slots and placeholders; name each route's variable with env: VAR (line 1)\n",
			"cork: --policy " + badShape + `: policy: unknown field "route" (want routes, allow, block) (line 2)` + "\n",
		}},
		{"bad policy values", []string{"run", "--policy", bad, "--", "true"}, []string{
			"cork: --policy " + bad + ": routes[0].env: want the name of the host variable",
			"cork: --policy " + bad + `: routes[1].host: invalid host pattern "https://b.test": a host, not a URL (line 4)` + "\n",
		}},
		// The file's own index and line, checked before Build, not
		// an index into the plan merged with the github profile's routes.
		{"bad policy port", []string{"run", "--agent", "github", "--policy", badPort, "--", "true"}, []string{
			"cork: --policy " + badPort + `: routes[0].host: invalid host pattern "api.example.com:99999": port out of range (line 3)` + "\n",
		}},
		{"host bound twice", []string{"run", "--inject", "api.example.com=A", "--inject", "API.example.com=B", "--", "true"}, []string{
			"cork: generic: bindings[1]: host API.example.com is already bound (to A); one binding per host\n",
		}},
		{"conflict with a profile", []string{"run", "--agent", "github", "--inject", "api.github.com=MY_TOKEN", "--", "true"}, []string{
			"cork: generic: conflict with profile github: both provide a route for api.github.com bound to different credentials (slot github from GH_TOKEN, slot my_token from MY_TOKEN)\n",
		}},
		{"missing variable", []string{"run", "--inject", "api.example.com=UNSET_TOKEN", "--", "true"}, []string{
			"cork: missing credential: UNSET_TOKEN (slot unset_token) unset or empty",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HOME": t.TempDir(), "PATH": os.Getenv("PATH"), "GH_TOKEN": "ghp_REALZ2G8Kl5NHV9CZoEG1WBj3OwMqYkloCsY"}
			code, _, errOut := runCork(t, env, tt.args...)
			if code != 2 {
				t.Errorf("cork %v exit = %d, want 2 (stderr %q)", tt.args, code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("cork %v stderr = %q, want it to contain %q", tt.args, errOut, w)
				}
			}
			if strings.Contains(errOut, "REAL") {
				t.Errorf("cork %v stderr = %q, echoes a value", tt.args, errOut)
			}
		})
	}
}

// TestRunInjectLocal runs a command in a local sandbox provisioned only by
// --inject and --policy: it sees placeholders shaped like the host values.
func TestRunInjectLocal(t *testing.T) {
	sh := requireTool(t, "sh")
	const (
		realExample = "acme_REALEXAMPLE0123456789abcdefghijklmnop"
		realPolicy  = "REALPOLICYTOKEN0123456789abcdefghijk"
	)
	policyPath := writePolicy(t, "routes:\n  - host: api.acme.test\n    env: POLICY_TOKEN\n    header: X-Api-Key\n")
	env := map[string]string{
		"HOME": t.TempDir(), "PATH": os.Getenv("PATH"),
		"EXAMPLE_TOKEN": realExample, "POLICY_TOKEN": realPolicy,
	}
	code, out, errOut := runCork(t, env, "run", "--quiet", "--backend", "local",
		"--inject", "api.example.com=EXAMPLE_TOKEN", "--policy", policyPath,
		"--", sh, "-c", `printf '%s\n%s\n' "$EXAMPLE_TOKEN" "$POLICY_TOKEN"`)
	if code != 0 {
		t.Fatalf("cork run exit = %d, want 0 (stderr %q)", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("sandbox printed %q, want two placeholders", out)
	}
	if ph := lines[0]; !strings.HasPrefix(ph, "acme_") || len(ph) != len(realExample) || ph == realExample {
		t.Errorf("sandbox EXAMPLE_TOKEN = %q, want acme_ and %d characters, not the host value", ph, len(realExample))
	}
	if ph := lines[1]; len(ph) != len(realPolicy) || ph == realPolicy {
		t.Errorf("sandbox POLICY_TOKEN = %q, want %d characters, not the host value", ph, len(realPolicy))
	}
	if strings.Contains(out+errOut, "REAL") {
		t.Errorf("output %q %q holds a host value", out, errOut)
	}
}
