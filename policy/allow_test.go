package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const allowPolicy = `slots:
  gh:
    placeholder: ghp_cork000000000000000000000000000000
routes:
  - host: api.github.com
    slot: gh
    methods: [get, HEAD]
  - host: github.com
    slot: gh
    scheme: basic
    push:
      branches: ["agent/*"]
      tags: true
allow:
  - registry.npmjs.org
  - host: api.github.com
    path: /repos/o/r/
    methods: [get]
  - {host: "*.example.org", path: "/a/./b/"}
  - {host: raw.example.com}
`

// An allow entry is a host string or a mapping; both decode, normalised.
func TestParseAllowEntries(t *testing.T) {
	p := mustParsePolicy(t, allowPolicy)
	want := []Allow{
		{Host: "registry.npmjs.org"},
		{Host: "api.github.com", Path: "/repos/o/r", Methods: []string{"GET"}},
		{Host: "*.example.org", Path: "/a/b"},
		{Host: "raw.example.com"},
	}
	if !reflect.DeepEqual(p.Allow, want) {
		t.Errorf("Allow = %+v, want %+v", p.Allow, want)
	}
	if got := p.Routes[0].Methods; !reflect.DeepEqual(got, []string{"GET", "HEAD"}) {
		t.Errorf("Routes[0].Methods = %v, want [GET HEAD]", got)
	}
	if got, want := p.Routes[1].Push, (&Push{Branches: []string{"agent/*"}, Tags: true}); !reflect.DeepEqual(got, want) {
		t.Errorf("Routes[1].Push = %+v, want %+v", got, want)
	}
	if p.Routes[0].Push != nil {
		t.Errorf("Routes[0].Push = %+v, want nil", p.Routes[0].Push)
	}
}

// The same policy in JSON decodes the same.
func TestParseAllowEntriesJSON(t *testing.T) {
	src := `{"slots": {"gh": {"placeholder": "` + testGithubPH + `"}},
	 "routes": [{"host": "github.com", "slot": "gh", "methods": ["POST"], "push": {"branches": ["a"], "delete": true}}],
	 "allow": ["registry.npmjs.org", {"host": "api.example.com", "path": "/v1", "methods": ["GET"]}]}`
	p := mustParsePolicy(t, src)
	if want := []Allow{{Host: "registry.npmjs.org"}, {Host: "api.example.com", Path: "/v1", Methods: []string{"GET"}}}; !reflect.DeepEqual(p.Allow, want) {
		t.Errorf("Allow = %+v, want %+v", p.Allow, want)
	}
	if want := (&Push{Branches: []string{"a"}, Delete: true}); !reflect.DeepEqual(p.Routes[0].Push, want) {
		t.Errorf("Push = %+v, want %+v", p.Routes[0].Push, want)
	}
}

func TestParseAllowErrors(t *testing.T) {
	const slots = "slots:\n  gh:\n    placeholder: " + testGithubPH + "\n"
	tests := []struct {
		name, src string
		want      []string
	}{
		{"allow path relative", "allow:\n  - host: a.com\n    path: x\n", []string{`allow[0].path: must start with "/" (line 3)`}},
		{"allow path encoded", "allow:\n  - host: a.com\n    path: /a%2Fb\n", []string{"allow[0].path: write the path decoded"}},
		{"allow path query", "allow:\n  - host: a.com\n    path: /a?b\n", []string{"allow[0].path: a path only"}},
		{"allow mapping no host", "allow:\n  - path: /x\n", []string{"allow[0].host: required (line 2)"}},
		{"allow bad host string", "allow:\n  - a b\n", []string{"allow[0]: "}},
		{"allow bad host mapping", "allow:\n  - {host: a b, path: /x}\n", []string{"allow[0].host: "}},
		{"allow methods scalar", "allow:\n  - {host: a.com, methods: GET}\n", []string{"allow[0].methods: want a list (line 2)"}},
		{"allow methods nested", "allow:\n  - {host: a.com, methods: [[GET]]}\n", []string{"allow[0].methods[0]: want an HTTP method (line 2)"}},
		{"duplicate scoped", "allow:\n  - {host: a.com, path: /x/, methods: [get, put]}\n  - {host: a.com, path: /x, methods: [PUT, GET]}\n",
			[]string{"allow[1]: duplicates allow[0] (host a.com, path /x, methods [PUT GET]) (line 3)"}},
		{"whole and scoped", "allow:\n  - a.com\n  - {host: a.com, path: /x}\n",
			[]string{"allow[1]: conflicts with allow[0]: a.com is allowed whole, but the path-scoped allow on a.com restricts it"}},
		{"whole inside scoped wildcard", "allow:\n  - {host: '*.a.com', methods: [GET]}\n  - b.a.com\n",
			[]string{"allow[1]: conflicts with allow[0]: b.a.com is allowed whole, but the path-scoped allow on *.a.com restricts it"}},
		{"blocked scoped", "allow:\n  - {host: a.com, path: /x}\nblock:\n  - host: a.com\n",
			[]string{"block[0]: conflicts with allow[0]: a.com is blocked and a.com is allowed"}},
		{"route methods", slots + "routes:\n  - host: a.com\n    slot: gh\n    methods: [GET, TRACE, trace, '']\n",
			[]string{"routes[0].methods[2]: TRACE listed twice", "routes[0].methods[3]: empty"}},
		{"route methods connect", slots + "routes:\n  - host: a.com\n    slot: gh\n    methods: [CONNECT]\n",
			[]string{"routes[0].methods[0]: CONNECT cannot be allowed"}},
		{"push branch pattern", slots + "routes:\n  - host: a.com\n    slot: gh\n    push:\n      branches: ['agent/[', '', refs/heads/main]\n",
			[]string{`routes[0].push.branches[0]: invalid pattern "agent/["`, "routes[0].push.branches[1]: empty",
				`routes[0].push.branches[2]: write the branch name without refs/heads/ ("main")`}},
		{"push unknown key", slots + "routes:\n  - host: a.com\n    slot: gh\n    push:\n      branch: [x]\n",
			[]string{`routes[0].push: unknown field "branch" (want branches, tags, delete) (line 8)`}},
		{"push scalar", slots + "routes:\n  - host: a.com\n    slot: gh\n    push: false\n",
			[]string{"routes[0].push: want a mapping with branches, tags and delete (line 7)"}},
		{"push tags yes", slots + "routes:\n  - host: a.com\n    slot: gh\n    push: {tags: yes}\n",
			[]string{`routes[0].push.tags: want true or false, got "yes"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse() = %+v, want error containing %q", p, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error =\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// A scoped allow on a routed host restricts the credential: accepted; a
// whole-host allow on it stays a conflict.
func TestNewScopedAllowOnRoute(t *testing.T) {
	base := Policy{Slots: map[string]Slot{"gh": {Placeholder: testGithubPH}}, Routes: []Route{{Host: "api.github.com", Slot: "gh"}}}
	scoped := base
	scoped.Allow = []Allow{{Host: "api.github.com", Path: "/repos/o/r/", Methods: []string{"GET"}}}
	if _, err := New(scoped); err != nil {
		t.Errorf("New(scoped allow on a route) error = %v", err)
	}
	whole := base
	whole.Allow = AllowHosts("api.github.com")
	if _, err := New(whole); err == nil || !strings.Contains(err.Error(), "both routed") {
		t.Errorf("New(whole allow on a route) error = %v, want a conflict", err)
	}
}

// Marshal writes a whole-host allow as a bare string (as before), a scoped
// one as a mapping, and both read back the same.
func TestMarshalAllow(t *testing.T) {
	p := mustParsePolicy(t, allowPolicy)
	out, err := Marshal(*p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n  - registry.npmjs.org\n", "\n  - host: api.github.com\n    path: /repos/o/r\n    methods:\n      - GET\n", "\n  - raw.example.com\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal() =\n%s\nwant it to contain %q", out, want)
		}
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal()) error = %v", err)
	}
	if got, want := fields(back), fields(p); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(Marshal()) = %+v, want %+v", got, want)
	}
}

func TestAllowJSON(t *testing.T) {
	in := []Allow{{Host: "a.com"}, {Host: "b.com", Path: "/x", Methods: []string{"GET"}}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `["a.com",{"host":"b.com","path":"/x","methods":["GET"]}]`; got != want {
		t.Errorf("json.Marshal() = %s, want %s", got, want)
	}
	var back []Allow
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back, in) {
		t.Errorf("json.Unmarshal() = %+v, %v; want %+v", back, err, in)
	}
	if err := json.Unmarshal([]byte(`[1]`), &back); err == nil {
		t.Errorf("json.Unmarshal([1]) error = nil, want an error")
	}
}
