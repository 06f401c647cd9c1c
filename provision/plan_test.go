package provision

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The plan's policy, rendered by policy.Marshal (what a sidecar proxy
// reads), is the golden file, parses back, and holds no token env map.
func TestPolicyGolden(t *testing.T) {
	opts := forwardOpts(t, "chatgpt")
	opts.Rand = seeded(1)
	plan := mustBuild(t, opts)
	plan.Egress.Allow = policy.AllowHosts("*.githubusercontent.com")
	plan.Egress.Routes = append(plan.Egress.Routes, policy.Route{Host: "github.com", Slot: "codex", Scheme: policy.SchemeBasic, BasicUser: "x-access-token", AddIfMissing: true, InsecureHTTP: true})
	pol, err := plan.Egress.Policy()
	if err != nil {
		t.Fatalf("Egress.Policy() error = %v", err)
	}
	got, err := policy.Marshal(*pol)
	if err != nil {
		t.Fatalf("policy.Marshal() error = %v", err)
	}
	golden := filepath.Join("testdata", "codex-policy.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("policy.Marshal() =\n%s\nwant (%s)\n%s", got, golden, want)
	}

	p, err := policy.Parse(got)
	if err != nil {
		t.Fatalf("policy.Marshal() is not a policy file: %v", err)
	}
	if len(p.Slots) != 1 || p.Slots["codex"].Placeholder != plan.Egress.Slots["codex"].Placeholder {
		t.Errorf("policy.Marshal() slots = %v, want codex with its placeholder", p.Slots)
	}
	if len(p.Routes) != 4 || p.Routes[3].BasicUser != "x-access-token" || !p.Routes[3].AddIfMissing || !p.Routes[3].InsecureHTTP {
		t.Errorf("policy.Marshal() routes = %+v", p.Routes)
	}
	if len(p.Block) != 1 || p.Block[0].Path != "/oauth/token" {
		t.Errorf("policy.Marshal() block = %+v", p.Block)
	}
	for _, s := range []string{"token_env_map", CodexAccessTokenEnv, "TokenEnvMap"} {
		if bytes.Contains(got, []byte(s)) {
			t.Errorf("policy.Marshal() contains %q; the token env map is not part of the policy", s)
		}
	}
}

func TestPlanDeterministicWithSeededRand(t *testing.T) {
	build := func() Plan {
		opts := forwardOpts(t, "chatgpt")
		opts.Rand = seeded(7)
		return mustBuild(t, opts)
	}
	a, b := build(), build()
	if !reflect.DeepEqual(a.Files, b.Files) || !reflect.DeepEqual(a.Egress, b.Egress) {
		t.Error("two Builds with the same seed differ; want Options.Rand to be the only source of randomness")
	}
}

func TestPlanFormatRedacts(t *testing.T) {
	const secret = "REALPROVISIONEDSECRET"
	p := newPlan()
	p.ProvisionedEnv["CORK_X"] = resolve.NewSecret(secret)
	p.Files = []File{{Path: ".x/y", Mode: 0o600, Data: []byte("dummy")}}
	p.Sources = []Source{{Path: "/h/.x/auth.json", Read: func() (resolve.Env, error) { return nil, nil }}}
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("json.Marshal(plan) error = %v", err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		got := fmt.Sprintf(verb, p)
		if strings.Contains(got, secret) {
			t.Errorf("Sprintf(%q, plan) = %q, contains the provisioned value", verb, got)
		}
		if !strings.Contains(got, "CORK_X") && verb != "%q" && verb != "%x" {
			t.Errorf("Sprintf(%q, plan) = %q, want the provisioned env name", verb, got)
		}
	}
	if bytes.Contains(js, []byte(secret)) {
		t.Errorf("json.Marshal(plan) = %s, contains the provisioned value", js)
	}
	if got := fmt.Sprintf("%+v", struct{ P Plan }{p}); strings.Contains(got, secret) {
		t.Errorf("Sprintf(%%+v, struct{Plan}) = %q, contains the provisioned value", got)
	}
}

// fakeProfile contributes a fixed plan.
type fakeProfile struct {
	name string
	add  func(*Plan)
	err  error
}

func (f fakeProfile) Name() string { return f.name }

func (f fakeProfile) Provision(_ Options, plan *Plan) error {
	if f.err != nil {
		return f.err
	}
	f.add(plan)
	return nil
}

func slotProfile(name, slot, env, host, file string) fakeProfile {
	return fakeProfile{name: name, add: func(p *Plan) {
		p.Egress.Slots[slot] = policy.Slot{Placeholder: "placeholder-" + name}
		p.Egress.TokenEnvMap[slot] = env
		p.Egress.Routes = append(p.Egress.Routes, policy.Route{Host: host, Slot: slot})
		p.Egress.Allow = append(p.Egress.Allow, policy.Allow{Host: "shared.example.com"})
		p.Egress.Block = append(p.Egress.Block, policy.Block{Host: "blocked.example.com"})
		p.Files = append(p.Files, File{Path: file, Mode: 0o600})
		p.Env["SHARED"] = "same"
	}}
}

func TestBuildMerges(t *testing.T) {
	plan, err := Build(Options{},
		slotProfile("a", "sa", "ENV_A", "a.example.com", ".a"),
		slotProfile("b", "sb", "ENV_B", "b.example.com", ".b"))
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	if got, want := keys(plan.Egress.Slots), []string{"sa", "sb"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Slots = %v, want %v", got, want)
	}
	if got, want := plan.Egress.TokenEnvMap, map[string]string{"sa": "ENV_A", "sb": "ENV_B"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TokenEnvMap = %v, want %v", got, want)
	}
	if len(plan.Egress.Routes) != 2 || len(plan.Files) != 2 {
		t.Errorf("Routes = %v, Files = %v; want 2 each", plan.Egress.Routes, plan)
	}
	if got, want := plan.Egress.Allow, policy.AllowHosts("shared.example.com"); !reflect.DeepEqual(got, want) {
		t.Errorf("Allow = %v, want %v (deduplicated)", got, want)
	}
	if len(plan.Egress.Block) != 1 {
		t.Errorf("Block = %v, want one (deduplicated)", plan.Egress.Block)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name     string
		profiles []Profile
		want     []string
	}{
		{"none", nil, []string{"no agent profile selected"}},
		{"same file", []Profile{
			slotProfile("a", "sa", "ENV_A", "a.example.com", ".same"),
			slotProfile("b", "sb", "ENV_B", "b.example.com", ".same"),
		}, []string{"b: conflict with profile a: both provide file .same"}},
		{"same slot", []Profile{
			slotProfile("a", "s", "ENV_A", "a.example.com", ".a"),
			slotProfile("b", "s", "ENV_B", "b.example.com", ".b"),
		}, []string{"b: conflict with profile a: both provide slot s"}},
		{"same route host", []Profile{
			slotProfile("a", "sa", "ENV_A", "Host.example.com.", ".a"),
			slotProfile("b", "sb", "ENV_B", "host.example.com", ".b"),
		}, []string{"b: conflict with profile a: both provide a route for host.example.com"}},
		{"env differs", []Profile{
			slotProfile("a", "sa", "ENV_A", "a.example.com", ".a"),
			fakeProfile{name: "b", add: func(p *Plan) { p.Env["SHARED"] = "other" }},
		}, []string{"b: conflict with profile a: both provide different values for sandbox env SHARED"}},
		{"provisioned env differs", []Profile{
			fakeProfile{name: "a", add: func(p *Plan) { p.ProvisionedEnv["K"] = resolve.NewSecret("REALONE") }},
			fakeProfile{name: "b", add: func(p *Plan) { p.ProvisionedEnv["K"] = resolve.NewSecret("REALTWO") }},
		}, []string{"b: conflict with profile a: both provide different values for provisioned env K"}},
		{"twice", []Profile{Codex{}, Codex{}}, []string{"codex: profile selected twice"}},
		{"all failures", []Profile{
			fakeProfile{name: "a", err: errors.New("broken a")},
			fakeProfile{name: "b", err: errors.New("broken b")},
		}, []string{"a: broken a", "b: broken b"}},
		{"invalid", []Profile{fakeProfile{name: "a", add: func(p *Plan) {
			p.Files = append(p.Files, File{Path: "../escape"}, File{Path: "/abs"})
			p.Egress.Routes = append(p.Egress.Routes, policy.Route{Host: "x.example.com", Slot: "gh", Scheme: "digest"})
			p.Egress.Slots["lonely"] = policy.Slot{}
			p.Egress.Routes = append(p.Egress.Routes, policy.Route{Host: "y.example.com", Slot: "gh", Unscrubbable: "sometimes"})
			p.Egress.Block = append(p.Egress.Block, policy.Block{Host: "x.example.com", CaseSensitive: true}, policy.Block{Host: "x.example.com", Path: "/a?b"})
		}}}, []string{
			`files[0].path: "../escape" is not a clean relative path`,
			`files[1].path: "/abs" is not a clean relative path`,
			`routes[0].slot: unknown slot "gh"`,
			`routes[0].scheme: unknown scheme "digest"`,
			"slots.lonely.placeholder: empty",
			"slots.lonely: no env var in the token env map",
			`routes[1].unscrubbable: unknown value "sometimes" (want refuse or pass)`,
			"block[0].case_sensitive: only with a path",
			"block[1].path: a path only, without query or fragment",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Options{}, tt.profiles...)
			if err == nil {
				t.Fatalf("Build() error = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Build() error = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "REAL") {
				t.Errorf("Build() error = %q, contains a value", err)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	p, err := Lookup("codex")
	if err != nil || p.Name() != "codex" {
		t.Errorf("Lookup(%q) = %v, %v; want the codex profile", "codex", p, err)
	}
	_, err = Lookup("nosuch")
	if err == nil || !strings.Contains(err.Error(), `unknown agent profile "nosuch" (known: claude, codex, copilot, gemini, github`) {
		t.Errorf("Lookup(%q) error = %v, want it to list the known profiles", "nosuch", err)
	}
	for name, p := range Profiles() {
		if p.Name() != name {
			t.Errorf("Profiles()[%q].Name() = %q", name, p.Name())
		}
	}
}

func TestBuildDefaultsClockAndRand(t *testing.T) {
	opts := forwardOpts(t, "chatgpt")
	opts.Now = nil
	before := time.Now().Add(-time.Second)
	plan := mustBuild(t, opts)
	last, err := time.Parse(time.RFC3339, *decodeAuth(t, file(t, plan, CodexAuthFile).Data).LastRefresh)
	if err != nil || last.Before(before.Truncate(time.Second)) {
		t.Errorf("last_refresh = %v (%v), want about now", last, err)
	}
}
