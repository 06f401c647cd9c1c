package learn

import (
	"net/url"
	"testing"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
)

// FuzzCollapse: whatever path the sandbox requested, the learned entry is
// a valid allow path that covers the request (the proxy would let the
// same request through), and the rendered file parses.
func FuzzCollapse(f *testing.F) {
	for _, s := range []string{"/repos/o/r/issues/1", "/", "//a", "/a/%2F/b", "/a/%zz", "/x/../y", "/a;b/c", "/%00", "/a/b/c/d/e...", "/o/r.git/info/refs", `/a\b`, "/ä/ö"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		u, err := url.Parse("https://api.test" + path)
		if err != nil || len(path) == 0 || path[0] != '/' {
			return
		}
		path = u.EscapedPath() // as the proxy logs it
		uses := Collapse(map[string][]string{path: {"GET"}})
		if len(uses) != 1 {
			t.Fatalf("Collapse(%q) = %v, want one entry", path, uses)
		}
		a := policy.Allow{Host: "api.test", Path: uses[0].Path, Methods: uses[0].Methods}
		out, err := Render(nil, nil, []policy.Allow{a})
		if err != nil {
			t.Fatalf("Render(%v): %v", a, err)
		}
		if _, err := provision.ParseGenericPolicy(out); err != nil {
			t.Fatalf("Collapse(%q) = %q: the policy does not parse: %v", path, uses[0].Path, err)
		}
		pol, err := policy.New(policy.Policy{Allow: []policy.Allow{a}})
		if err != nil {
			t.Fatalf("policy.New(%v): %v", a, err)
		}
		if why := pol.Lookup("api.test", 443).Permits("GET", path); why != "" {
			t.Errorf("Collapse(%q) = %q: the request is refused: %s", path, uses[0].Path, why)
		}
	})
}
