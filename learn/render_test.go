package learn

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
)

var learned = []policy.Allow{
	{Host: "registry.npmjs.org"},
	{Host: "files.example:8080"},
	{Host: "api.github.com", Path: "/repos/o/r", Methods: []string{"GET", "POST"}},
}

func TestRender(t *testing.T) {
	out, err := Render([]string{"cork run --learn, 2026-12-07T13:00:00Z", "command: curl\nhttps://x"}, nil, learned)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	want := `# cork run --learn, 2026-12-07T13:00:00Z
# command: curl https://x
allow:
  # learned by cork run --learn
  - registry.npmjs.org
  - files.example:8080
  - {host: api.github.com, path: /repos/o/r, methods: [GET, POST]}
`
	if string(out) != want {
		t.Errorf("Render() =\n%s\nwant\n%s", out, want)
	}
	g, err := provision.ParseGenericPolicy(out)
	if err != nil {
		t.Fatalf("ParseGenericPolicy(Render()) = %v", err)
	}
	if !reflect.DeepEqual(g.Allow, learned) {
		t.Errorf("ParseGenericPolicy(Render()).Allow = %v, want %v", g.Allow, learned)
	}
}

func TestRenderAddsToAPolicy(t *testing.T) {
	base := `# my policy
routes:
  - host: api.github.com   # the API
    env: GH_TOKEN
allow: [pypi.org]
block:
  - { host: api.github.com, path: /admin }
`
	out, err := Render([]string{"learned"}, []byte(base), learned)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	for _, s := range []string{"# my policy", "# the API", "env: GH_TOKEN", "- pypi.org\n", "- registry.npmjs.org", "path: /admin"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("Render() =\n%s\nwant it to contain %q", out, s)
		}
	}
	g, err := provision.ParseGenericPolicy(out)
	if err != nil {
		t.Fatalf("ParseGenericPolicy(Render()) = %v\n%s", err, out)
	}
	if want := append([]policy.Allow{{Host: "pypi.org"}}, learned...); !reflect.DeepEqual(g.Allow, want) {
		t.Errorf("ParseGenericPolicy(Render()).Allow = %v, want %v", g.Allow, want)
	}
	if len(g.Bindings) != 1 || len(g.Block) != 1 {
		t.Errorf("ParseGenericPolicy(Render()) = %d routes, %d blocks, want 1 and 1", len(g.Bindings), len(g.Block))
	}
}

func TestRenderErrors(t *testing.T) {
	for _, base := range []string{"- a\n- b\n", "allow: pypi.org\n", "routes: [\n"} {
		if _, err := Render(nil, []byte(base), learned); err == nil {
			t.Errorf("Render(%q) = nil error, want one", base)
		}
	}
}

func TestRenderNothingLearned(t *testing.T) {
	out, err := Render([]string{"h"}, nil, nil)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if _, err := provision.ParseGenericPolicy(out); err != nil {
		t.Errorf("ParseGenericPolicy(%q) = %v", out, err)
	}
}
