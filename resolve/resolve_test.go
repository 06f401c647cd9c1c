package resolve

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMerge(t *testing.T) {
	host := map[string]string{"A": "host-a", "B": "host-b"}
	prov := map[string]string{"B": "prov-b", "C": "prov-c"}
	hostCopy := map[string]string{"A": "host-a", "B": "host-b"}
	provCopy := map[string]string{"B": "prov-b", "C": "prov-c"}

	got := Merge(host, envOf(prov))
	want := map[string]string{"A": "host-a", "B": "prov-b", "C": "prov-c"}
	if !reflect.DeepEqual(plain(got), want) {
		t.Errorf("Merge(%v, %v) = %v, want %v", host, prov, got, want)
	}
	got["A"], got["D"] = NewSecret("changed"), NewSecret("new")
	if !reflect.DeepEqual(host, hostCopy) || !reflect.DeepEqual(prov, provCopy) {
		t.Errorf("Merge modified its inputs or shares a map with them: host = %v, provisioned = %v", host, prov)
	}

	tests := []struct {
		name       string
		host, prov map[string]string
		want       map[string]string
	}{
		{"both nil", nil, nil, map[string]string{}},
		{"host only", map[string]string{"A": "1"}, nil, map[string]string{"A": "1"}},
		{"provisioned only", nil, map[string]string{"A": "1"}, map[string]string{"A": "1"}},
		{"provisioned empty wins", map[string]string{"A": "1"}, map[string]string{"A": ""}, map[string]string{"A": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(tt.host, envOf(tt.prov))
			if got == nil || !reflect.DeepEqual(plain(got), tt.want) {
				t.Errorf("Merge(%v, %v) = %#v, want %v", tt.host, tt.prov, got, tt.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	env := map[string]string{"GH_TOKEN": "ghp_real", "CORK_CODEX_ACCESS_TOKEN": "eyJ.real.sig", "UNUSED": "x"}
	got, err := Values(map[string]string{"github": "GH_TOKEN", "codex": "CORK_CODEX_ACCESS_TOKEN"}, envOf(env))
	if err != nil {
		t.Fatalf("Values() error = %v", err)
	}
	if want := []string{"codex", "github"}; !reflect.DeepEqual(got.Slots(), want) {
		t.Errorf("Values() slots = %v, want %v", got.Slots(), want)
	}
	if got["github"].Reveal() != "ghp_real" || got["codex"].Reveal() != "eyJ.real.sig" {
		t.Errorf("Values() revealed wrong values")
	}

	empty, err := Values(nil, envOf(env))
	if err != nil || len(empty) != 0 {
		t.Errorf("Values(nil, env) = %v, %v; want empty, nil", empty, err)
	}
}

func TestValuesMissing(t *testing.T) {
	tests := []struct {
		name        string
		tokenEnvMap map[string]string
		env         map[string]string
		want        []Missing
		wantMsg     string
	}{
		{
			name:        "unset",
			tokenEnvMap: map[string]string{"github": "GH_TOKEN"},
			env:         map[string]string{},
			want:        []Missing{{Slot: "github", Env: "GH_TOKEN"}},
			wantMsg:     "missing credential: GH_TOKEN (slot github) unset or empty",
		},
		{
			name:        "empty counts as missing",
			tokenEnvMap: map[string]string{"github": "GH_TOKEN"},
			env:         map[string]string{"GH_TOKEN": ""},
			want:        []Missing{{Slot: "github", Env: "GH_TOKEN"}},
			wantMsg:     "missing credential: GH_TOKEN (slot github) unset or empty",
		},
		{
			name:        "empty env name",
			tokenEnvMap: map[string]string{"odd": ""},
			env:         map[string]string{"": "value-under-empty-name"},
			want:        []Missing{{Slot: "odd", Env: ""}},
		},
		{
			name:        "some present: only the missing are listed, no value",
			tokenEnvMap: map[string]string{"github": "GH_TOKEN", "codex": "CORK_CODEX_ACCESS_TOKEN", "openai": "OPENAI_API_KEY", "z": "A_TOKEN"},
			env:         map[string]string{"GH_TOKEN": "ghp_REALPRESENTVALUE", "OPENAI_API_KEY": ""},
			want: []Missing{
				{Slot: "z", Env: "A_TOKEN"},
				{Slot: "codex", Env: "CORK_CODEX_ACCESS_TOKEN"},
				{Slot: "openai", Env: "OPENAI_API_KEY"},
			},
			wantMsg: "missing 3 credentials: A_TOKEN (slot z), CORK_CODEX_ACCESS_TOKEN (slot codex), OPENAI_API_KEY (slot openai) unset or empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Values(tt.tokenEnvMap, envOf(tt.env))
			if got != nil {
				t.Errorf("Values() tokens = %v, want nil on error", got)
			}
			var me *MissingError
			if !errors.As(err, &me) {
				t.Fatalf("Values() error = %v, want *MissingError", err)
			}
			if !reflect.DeepEqual(me.Missing, tt.want) {
				t.Errorf("Values() missing = %+v, want %+v", me.Missing, tt.want)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("Values() error = %q, want %q", err, tt.wantMsg)
			}
			for _, v := range tt.env {
				if v != "" && strings.Contains(err.Error(), v) {
					t.Errorf("Values() error = %q, contains the value %q", err, v)
				}
			}
		})
	}
}

func TestValuesAllMissingGolden(t *testing.T) {
	tokenEnvMap := map[string]string{
		"openai":    "OPENAI_API_KEY",
		"codex":     "CORK_CODEX_ACCESS_TOKEN",
		"github":    "GH_TOKEN",
		"gh-backup": "GH_TOKEN",
		"anthropic": "ANTHROPIC_API_KEY",
	}
	env := map[string]string{"OPENAI_API_KEY": "", "UNRELATED": "sk-REALUNRELATEDVALUE"}
	_, err := Values(tokenEnvMap, envOf(env))
	if err == nil {
		t.Fatal("Values() error = nil, want every slot missing")
	}
	got := err.Error() + "\n"
	golden := filepath.Join("testdata", "missing.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("Values() error =\n%s\nwant (%s)\n%s", got, golden, want)
	}
	for slot, name := range tokenEnvMap {
		if !strings.Contains(got, name+" (slot "+slot+")") {
			t.Errorf("Values() error = %q, does not list %s (slot %s)", got, name, slot)
		}
	}
	if strings.Contains(got, "REALUNRELATED") {
		t.Errorf("Values() error = %q, contains a value", got)
	}
}

// envOf wraps a plain map's values as secrets.
func envOf(m map[string]string) Env {
	if m == nil {
		return nil
	}
	e := make(Env, len(m))
	for k, v := range m {
		e[k] = NewSecret(v)
	}
	return e
}

// plain reveals an Env's values, for comparisons.
func plain(e Env) map[string]string {
	m := make(map[string]string, len(e))
	for k, v := range e {
		m[k] = v.Reveal()
	}
	return m
}
