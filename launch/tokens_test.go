package launch_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
)

func codexPlan(provisioned map[string]string) provision.Plan {
	var env resolve.Env
	if provisioned != nil {
		env = resolve.Env{}
		for k, v := range provisioned {
			env[k] = resolve.NewSecret(v)
		}
	}
	return provision.Plan{
		ProvisionedEnv: env,
		Egress: provision.EgressPlan{
			TokenEnvMap: map[string]string{provision.CodexSlot: provision.CodexAccessTokenEnv},
			Slots:       map[string]policy.Slot{provision.CodexSlot: {Placeholder: "eyJ.dummy.sig"}},
		},
	}
}

func TestTokens(t *testing.T) {
	const env = provision.CodexAccessTokenEnv
	tests := []struct {
		name        string
		provisioned map[string]string
		host        map[string]string
		want        string
	}{
		{"provisioned only", map[string]string{env: "REAL-from-auth-json"}, nil, "REAL-from-auth-json"},
		{"provisioned wins over host", map[string]string{env: "REAL-from-auth-json"}, map[string]string{env: "REAL-stale-host", "OTHER": "x"}, "REAL-from-auth-json"},
		{"host only", nil, map[string]string{env: "REAL-operator-set"}, "REAL-operator-set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := codexPlan(tt.provisioned)
			hostBefore := clone(tt.host)
			got, err := launch.Tokens(plan, tt.host)
			if err != nil {
				t.Fatalf("Tokens() error = %v", err)
			}
			if got.Slots()[0] != provision.CodexSlot || len(got) != 1 {
				t.Errorf("Tokens() slots = %v, want [codex]", got.Slots())
			}
			if v := got[provision.CodexSlot].Reveal(); v != tt.want {
				t.Errorf("Tokens()[codex].Reveal() = %q, want %q", v, tt.want)
			}
			if !reflect.DeepEqual(tt.host, hostBefore) {
				t.Errorf("Tokens() modified the host env: %v, was %v", tt.host, hostBefore)
			}
		})
	}
}

func TestTokensMissing(t *testing.T) {
	plan := codexPlan(map[string]string{"UNRELATED": "REAL-unrelated"})
	plan.Egress.TokenEnvMap["github"] = "GH_TOKEN"
	_, err := launch.Tokens(plan, map[string]string{"GH_TOKEN": "", "HOME": "/h"})
	var me *resolve.MissingError
	if !errors.As(err, &me) {
		t.Fatalf("Tokens() error = %v, want *resolve.MissingError", err)
	}
	want := []resolve.Missing{{Slot: "codex", Env: "CORK_CODEX_ACCESS_TOKEN"}, {Slot: "github", Env: "GH_TOKEN"}}
	if !reflect.DeepEqual(me.Missing, want) {
		t.Errorf("Tokens() missing = %+v, want %+v", me.Missing, want)
	}
	if strings.Contains(err.Error(), "REAL") {
		t.Errorf("Tokens() error = %q, contains a value", err)
	}
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "codex", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTokensCodexFixture runs provisioning and resolution end to end: the
// token read from the host auth.json reaches the proxy's map, the
// placeholder reaches the sandbox, and they differ.
func TestTokensCodexFixture(t *testing.T) {
	dir := fixture(t, "chatgpt")
	plan, err := provision.Build(provision.Options{
		HostEnv:                map[string]string{"CODEX_HOME": dir},
		ForwardHostCredentials: true,
	}, provision.Codex{})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A stale token in the host env must lose to the one just read.
	tokens, err := launch.Tokens(plan, map[string]string{provision.CodexAccessTokenEnv: "REAL-stale"})
	if err != nil {
		t.Fatalf("Tokens() error = %v", err)
	}
	real := tokens[provision.CodexSlot].Reveal()
	if !strings.Contains(real, "REALACCESSSIG") || !strings.Contains(string(data), `"access_token": "`+real+`"`) {
		t.Errorf("Tokens()[codex] is not the fixture's access token")
	}
	if ph := plan.Egress.Slots[provision.CodexSlot].Placeholder; ph == real || ph == "" {
		t.Errorf("placeholder = %.20q..., want a dummy distinct from the real token", ph)
	}
}

func TestTokensForwardOff(t *testing.T) {
	plan, err := provision.Build(provision.Options{
		HostEnv: map[string]string{"CODEX_HOME": filepath.Join(t.TempDir(), "nonexistent")},
	}, provision.Codex{})
	if err != nil {
		t.Fatalf("Build() with forwarding off error = %v", err)
	}

	_, err = launch.Tokens(plan, map[string]string{"PATH": "/usr/bin"})
	var me *resolve.MissingError
	if !errors.As(err, &me) {
		t.Fatalf("Tokens() without %s error = %v, want *resolve.MissingError", provision.CodexAccessTokenEnv, err)
	}
	if want := "missing credential: CORK_CODEX_ACCESS_TOKEN (slot codex) unset or empty"; err.Error() != want {
		t.Errorf("Tokens() error = %q, want %q", err, want)
	}

	tokens, err := launch.Tokens(plan, map[string]string{provision.CodexAccessTokenEnv: "REAL-operator-token"})
	if err != nil {
		t.Fatalf("Tokens() with %s set error = %v", provision.CodexAccessTokenEnv, err)
	}
	if got := tokens[provision.CodexSlot].Reveal(); got != "REAL-operator-token" {
		t.Errorf("Tokens()[codex].Reveal() = %q, want the operator's token", got)
	}
}

func clone(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
