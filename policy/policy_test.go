package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	testCodexPH  = "eyJhbGciOiJub25lIn0.eyJjb3JrIjoiZHVtbXkifQ.x"
	testGithubPH = "ghp_cork000000000000000000000000000000"
)

// mustParsePolicy parses src or fails the test.
func mustParsePolicy(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// readFixture returns a file from testdata.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePolicySample(t *testing.T) {
	want := &Policy{
		Slots: map[string]Slot{
			"codex":  {Placeholder: testCodexPH},
			"github": {Placeholder: testGithubPH},
		},
		Routes: []Route{
			{Host: "chatgpt.com", Slot: "codex", Header: "Authorization", Scheme: SchemeBearer, Unscrubbable: UnscrubbableRefuse},
			{Host: "github.com", Slot: "github", Header: "Authorization", Scheme: SchemeBasic, BasicUser: "x-access-token", Unscrubbable: UnscrubbableRefuse},
		},
		Allow: AllowHosts("*.githubusercontent.com"),
		Block: []Block{{
			Host:   "auth.openai.com",
			Path:   "/oauth/token",
			Reason: "token refresh happens on the host; cork keeps the sandbox's token fresh",
		}},
	}
	for _, name := range []string{"sample.yaml", "sample.json", "sample_crlf.yaml"} {
		t.Run(name, func(t *testing.T) {
			p, err := Load(filepath.Join("testdata", name))
			if err != nil {
				t.Fatalf("Load(%s): %v", name, err)
			}
			if !reflect.DeepEqual(p.Slots, want.Slots) || !reflect.DeepEqual(p.Routes, want.Routes) ||
				!reflect.DeepEqual(p.Allow, want.Allow) || !reflect.DeepEqual(p.Block, want.Block) {
				t.Errorf("Load(%s) =\n%+v\nwant\n%+v", name, *p, *want)
			}
			if got, want := p.InterceptHosts(), []string{"auth.openai.com", "chatgpt.com", "github.com"}; !slices.Equal(got, want) {
				t.Errorf("InterceptHosts() = %q, want %q", got, want)
			}
		})
	}
}

func TestParsePolicyDefaults(t *testing.T) {
	p := mustParsePolicy(t, `
slots:
  a: { placeholder: "placeholder-a" }
routes:
  - host: API.Example.COM.
    slot: a
    header: x-api-key
    scheme: RAW
  - host: git.example.com
    slot: a
    scheme: basic
  - host: git2.example.com
    slot: a
    scheme: basic
    basic_user: oauth2
block:
  - host: auth.example.com
    path: /oauth//./token/
  - host: evil.example.net
    reason: "  no  "
`)
	r := p.Routes
	if r[0].Host != "api.example.com" || r[0].Header != "X-Api-Key" || r[0].Scheme != SchemeRaw {
		t.Errorf("routes[0] = %+v, want host api.example.com, header X-Api-Key, scheme raw", r[0])
	}
	if r[1].Header != DefaultHeader || r[1].BasicUser != DefaultBasicUser {
		t.Errorf("routes[1] = %+v, want default header and basic_user", r[1])
	}
	if r[2].BasicUser != "oauth2" {
		t.Errorf("routes[2].BasicUser = %q, want oauth2", r[2].BasicUser)
	}
	if b := p.Block[0]; b.Path != "/oauth/token" || b.Reason != DefaultBlockReason {
		t.Errorf("block[0] = %+v, want cleaned path and default reason", b)
	}
	if b := p.Block[1]; b.Reason != "no" {
		t.Errorf("block[1].Reason = %q, want trimmed", b.Reason)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	const slots = `
slots:
  codex: { placeholder: "` + testCodexPH + `" }
  github: { placeholder: "` + testGithubPH + `" }
`
	tests := []struct {
		name string
		src  string
		want []string // each must appear in the error, one line each
	}{
		{name: "empty", src: "", want: []string{"empty policy"}},
		{name: "whitespace", src: " \n\t\n", want: []string{"empty policy"}},
		{name: "null", src: "~\n", want: []string{"empty policy"}},
		{name: "comments only", src: "# nothing\n", want: []string{"empty policy"}},
		{name: "scalar", src: "hello\n", want: []string{"policy: want a mapping"}},
		{name: "list", src: "- a\n", want: []string{"policy: want a mapping"}},
		{name: "syntax", src: "slots: {\n", want: []string{"line "}},
		{name: "two documents", src: slots + "---\nallow: [a.com]\n", want: []string{"more than one YAML document"}},
		{name: "unknown top", src: slots + "rout:\n  - host: a\n", want: []string{`policy: unknown field "rout"`, "(line 5)"}},
		{name: "unknown route key", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\n    headr: X\n",
			want: []string{`routes[0]: unknown field "headr"`, "(line 8)"}},
		{name: "unknown slot key", src: "slots:\n  a: { placeholder: abcdefghij, value: x }\n",
			want: []string{`slots.a: unknown field "value"`}},
		{name: "bool as yes", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\n    add_if_missing: yes\n",
			want: []string{`routes[0].add_if_missing: want true or false, got "yes"`}},
		{name: "routes not a list", src: slots + "routes: chatgpt.com\n", want: []string{"routes: want a list"}},
		{name: "host is a list", src: slots + "routes:\n  - host: [a, b]\n    slot: codex\n", want: []string{"routes[0].host: want a single value"}},
		{name: "allow item list", src: slots + "allow:\n  - [a.com]\n", want: []string{"allow[0]: want a host pattern or a mapping with host, path and methods"}},
		{name: "allow unknown key", src: slots + "allow:\n  - {host: a.com, paths: /x}\n", want: []string{`allow[0]: unknown field "paths" (want host, path, methods) (line`}},
		{name: "allow bad method", src: slots + "allow:\n  - host: a.com\n    methods: [GET, \"B@D\", connect, get]\n", want: []string{`allow[0].methods[1]: invalid HTTP method "B@D" (line 7)`, "allow[0].methods[2]: CONNECT cannot be allowed", "allow[0].methods[3]: GET listed twice"}},
		{name: "placeholder empty", src: "slots:\n  codex: { placeholder: \"\" }\n", want: []string{"slots.codex.placeholder: empty"}},
		{name: "placeholder missing", src: "slots:\n  codex: {}\n", want: []string{"slots.codex.placeholder: empty"}},
		{name: "placeholder null slot", src: "slots:\n  codex:\n", want: []string{"slots.codex.placeholder: empty"}},
		{name: "placeholder short", src: "slots:\n  codex: { placeholder: abc }\n", want: []string{"slots.codex.placeholder: shorter than 8"}},
		{name: "placeholder newline", src: "slots:\n  codex: { placeholder: \"abcdefghij\\n\" }\n", want: []string{"slots.codex.placeholder: leading or trailing whitespace"}},
		{name: "placeholder space", src: "slots:\n  codex: { placeholder: \"abcd efghij\" }\n", want: []string{"slots.codex.placeholder: want printable ASCII"}},
		{name: "placeholder non-ascii", src: "slots:\n  codex: { placeholder: \"abcdéfghij\" }\n", want: []string{"slots.codex.placeholder: want printable ASCII"}},
		{name: "placeholder same", src: "slots:\n  a: { placeholder: abcdefghij }\n  b: { placeholder: abcdefghij }\n", want: []string{"slots.b.placeholder: same as slots.a.placeholder"}},
		{name: "placeholder substring", src: "slots:\n  a: { placeholder: abcdefghij }\n  b: { placeholder: xxabcdefghijxx }\n", want: []string{"slots.b.placeholder: contains slots.a.placeholder"}},
		{name: "slot name", src: "slots:\n  \"a b\": { placeholder: abcdefghij }\n", want: []string{"slots.a b: invalid slot name"}},
		{name: "route unknown slot", src: slots + "routes:\n  - host: a.com\n    slot: codex\n  - host: b.com\n    slot: codex\n  - host: github.com\n    slot: gh\n",
			want: []string{`routes[2].slot: unknown slot "gh"`}},
		{name: "route no slot", src: slots + "routes:\n  - host: a.com\n", want: []string{"routes[0].slot: required"}},
		{name: "route no host", src: slots + "routes:\n  - slot: codex\n", want: []string{"routes[0].host: required"}},
		{name: "route bad scheme", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    scheme: Bearer2\n",
			want: []string{`routes[0].scheme: unknown scheme "Bearer2" (want bearer, token, basic, raw)`}},
		{name: "route bad header", src: slots + "routes:\n  - host: a.com\n    slot: codex\n  - host: b.com\n    slot: codex\n    header: \"X Token\"\n",
			want: []string{`routes[1].header: invalid header name "X Token"`}},
		{name: "route header host", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    header: host\n",
			want: []string{"routes[0].header: Host cannot carry a credential"}},
		{name: "route header proxy-authorization", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    header: proxy-authorization\n",
			want: []string{"routes[0].header: Proxy-Authorization cannot carry a credential"}},
		{name: "basic_user without basic", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    basic_user: me\n",
			want: []string{"routes[0].basic_user: only with scheme basic"}},
		{name: "basic_user colon", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    scheme: basic\n    basic_user: \"a:b\"\n",
			want: []string{"routes[0].basic_user: want printable ASCII without ':'"}},
		{name: "route bad host", src: slots + "routes:\n  - host: https://chatgpt.com/\n    slot: codex\n",
			want: []string{`routes[0].host: invalid host pattern "https://chatgpt.com/"`}},
		{name: "allow bad patterns", src: "allow:\n  - a.com\n  - b.com\n  - c.com\n  - \"*foo.com\"\n  - \"*\"\n  - \"a.*.com\"\n  - \"a b.com\"\n  - example.com/x\n  - \"\"\n",
			want: []string{
				`allow[3]: invalid host pattern "*foo.com"`,
				`allow[4]: invalid host pattern "*"`,
				`allow[5]: invalid host pattern "a.*.com"`,
				`allow[6]: invalid host pattern "a b.com"`,
				`allow[7]: invalid host pattern "example.com/x"`,
				`allow[8]: required`,
			}},
		{name: "duplicate route", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\n  - host: a.com\n    slot: codex\n  - host: b.com\n    slot: codex\n  - host: ChatGPT.com.\n    slot: codex\n    header: authorization\n",
			want: []string{"routes[3]: duplicates routes[0] (host chatgpt.com, header Authorization)"}},
		{name: "duplicate route port overlap", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\n  - host: chatgpt.com:443\n    slot: codex\n",
			want: []string{"routes[1]: duplicates routes[0] (host chatgpt.com:443, header Authorization)"}},
		{name: "two slots one header", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\n  - host: chatgpt.com\n    slot: github\n",
			want: []string{"routes[1]: conflicts with routes[0] (host chatgpt.com, header Authorization): slots codex and github"}},
		{name: "allow and route", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\nallow:\n  - chatgpt.com\n",
			want: []string{"allow[0]: conflicts with routes[0]: chatgpt.com is both routed (TLS intercepted) and allowed (blind tunnel)"}},
		{name: "wildcard route over allow", src: slots + "routes:\n  - host: \"*.github.com\"\n    slot: github\nallow:\n  - api.github.com\n",
			want: []string{"allow[0]: conflicts with routes[0]: *.github.com is routed"}},
		{name: "host block and route", src: slots + "routes:\n  - host: chatgpt.com\n    slot: codex\nblock:\n  - host: chatgpt.com\n",
			want: []string{"block[0]: conflicts with routes[0]: chatgpt.com is blocked and chatgpt.com is routed"}},
		{name: "wildcard host block over allow", src: "allow:\n  - a.example.com\nblock:\n  - host: \"*.example.com\"\n",
			want: []string{"block[0]: conflicts with allow[0]: *.example.com is blocked and a.example.com is allowed"}},
		{name: "host block over path block", src: "block:\n  - host: a.com\n  - host: a.com\n    path: /x\n",
			want: []string{"block[1]: conflicts with block[0]: a.com is blocked entirely"}},
		{name: "duplicate allow", src: "allow:\n  - a.com\n  - A.com.\n", want: []string{"allow[1]: duplicates allow[0] (host a.com)"}},
		{name: "duplicate block", src: "block:\n  - host: a.com\n    path: /x\n  - host: a.com\n    path: /x/\n", want: []string{"block[1]: duplicates block[0] (host a.com, path /x)"}},
		{name: "block path relative", src: "block:\n  - host: a.com\n    path: oauth/token\n", want: []string{`block[0].path: must start with "/"`}},
		{name: "block path query", src: "block:\n  - host: a.com\n    path: /x?y=1\n", want: []string{"block[0].path: a path only"}},
		{name: "block path encoded", src: "block:\n  - host: a.com\n    path: /a%2Fb\n", want: []string{"block[0].path: write the path decoded"}},
		{name: "block no host", src: "block:\n  - path: /x\n", want: []string{"block[0].host: required"}},
		{name: "block path fragment", src: "block:\n  - host: a.com\n    path: \"/x#y\"\n", want: []string{"block[0].path: a path only"}},
		{name: "block path control", src: "block:\n  - host: a.com\n    path: \"/x\\ty\"\n", want: []string{"block[0].path: contains control characters"}},
		{name: "case_sensitive as yes", src: "block:\n  - host: a.com\n    path: /x\n    case_sensitive: yes\n",
			want: []string{`block[0].case_sensitive: want true or false, got "yes"`}},
		{name: "case_sensitive without path", src: "block:\n  - host: a.com\n    case_sensitive: true\n",
			want: []string{"block[0].case_sensitive: only with a path"}},
		{name: "duplicate block ignoring case", src: "block:\n  - host: a.com\n    path: /X\n  - host: a.com\n    path: /x;v=1\n",
			want: []string{"block[1]: duplicates block[0] (host a.com, path /x)"}},
		{name: "unscrubbable unknown", src: slots + "routes:\n  - host: a.com\n    slot: codex\n  - host: b.com\n    slot: codex\n    unscrubbable: allow\n",
			want: []string{`routes[1].unscrubbable: unknown value "allow" (want refuse or pass)`}},
		{name: "unscrubbable bool", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    unscrubbable: true\n",
			want: []string{`routes[0].unscrubbable: unknown value "true" (want refuse or pass)`}},
		{name: "unscrubbable list", src: slots + "routes:\n  - host: a.com\n    slot: codex\n    unscrubbable: [pass]\n",
			want: []string{"routes[0].unscrubbable: want a single value"}},
		{name: "block reason control", src: "block:\n  - host: a.com\n    reason: \"a\\x07b\"\n", want: []string{"block[0].reason: contains control characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse() = %+v, want error containing %q", p, tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Parse() error =\n%s\nwant it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestParsePolicyAllErrorsAtOnce(t *testing.T) {
	_, err := Parse(readFixture(t, "bad_many.yaml"))
	if err == nil {
		t.Fatal("Parse(bad_many.yaml) = nil error")
	}
	want := []string{
		"slots.codex.placeholder: empty",
		"slots.short.placeholder: shorter than 8 characters",
		`routes[0].scheme: unknown scheme "Bearer2" (want bearer, token, basic, raw)`,
		`routes[1].header: invalid header name "Bad Header"`,
		`routes[2].slot: unknown slot "gh"`,
		"routes[3].basic_user: only with scheme basic",
		`allow[1]: invalid host pattern "https://example.org"`,
		`allow[2]: invalid host pattern "example.com/path"`,
		`allow[3]: invalid host pattern "*foo.com"`,
		`allow[4]: invalid host pattern "*"`,
		`block[1].path: must start with "/"`,
		"routes[5]: duplicates routes[4] (host api.test:8443, header Authorization)",
		"allow[5]: conflicts with routes[4]",
		"block[0]: conflicts with allow[0]",
	}
	lines := strings.Split(err.Error(), "\n")
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("no error line starts with %q; got:\n%s", w, err)
		}
	}
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) || len(j.Unwrap()) != len(lines) {
		t.Errorf("error is not one joined error per line")
	}
}

func TestLoadPolicyFixtures(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"bad_empty.yaml", "empty policy"},
		{"bad_comments_only.yaml", "empty policy"},
		{"bad_tabs.yaml", "line 3: found character that cannot start any token (YAML indentation must use spaces, not tabs)"},
		{"bad_placeholder_newline.yaml", "slots.codex.placeholder: leading or trailing whitespace (a stray newline?)"},
		{"bad_unknown_field.yaml", `routes[0]: unknown field "hedaer"`},
		{"bad_unknown_field.yaml", `policy: unknown field "allowed" (want slots, routes, allow, block) (line 7)`},
		{"bad_multi_doc.yaml", "line 3: more than one YAML document"},
		{"missing.yaml", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = nil error, want %q", tt.file, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s) = %v, want %q", tt.file, err, tt.want)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.Contains(line, path) {
					t.Errorf("error line %q does not name %s", line, path)
				}
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "big.yaml")
		if err := os.WriteFile(path, make([]byte, MaxFileSize+1), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("Load(big) = %v, want larger than", err)
		}
	})
}

// Load must refuse anything but a regular file without blocking: a
// FIFO with no writer would hang os.Open, and the SIGHUP reload with it.
func TestLoadPolicyNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "policy.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path string }{
		{"fifo", fifo},
		{"symlink to fifo", link},
		{"directory", dir},
		{"character device", os.DevNull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := Load(tt.path)
				done <- err
			}()
			select {
			case err := <-done:
				want := "policy " + tt.path + ": not a regular file"
				if err == nil || err.Error() != want {
					t.Errorf("Load(%s) = %v, want %q", tt.name, err, want)
				}
			case <-time.After(5 * time.Second):
				// Release the blocked open with a writer, so the test ends.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatalf("Load(%s) still blocked after 5s", tt.name)
			}
		})
	}
}

func TestParsePolicyUnscrubbable(t *testing.T) {
	p := mustParsePolicy(t, `
slots:
  a: { placeholder: "placeholder-a" }
  b: { placeholder: "placeholder-b" }
routes:
  - host: default.test
    slot: a
  - host: refuse.test
    slot: a
    unscrubbable: refuse
  - host: pass.test
    slot: a
    unscrubbable: PASS
  - host: mixed.test
    slot: a
    unscrubbable: pass
  - host: mixed.test
    slot: b
    header: X-Other
  - host: both.test
    slot: a
    unscrubbable: pass
  - host: both.test
    slot: b
    header: X-Other
    unscrubbable: pass
  - host: "*.wild.test"
    slot: a
    unscrubbable: pass
  - host: sub.wild.test
    slot: b
    header: X-Other
  - host: "*.allpass.test"
    slot: a
    unscrubbable: pass
  - host: x.allpass.test
    slot: b
    header: X-Other
    unscrubbable: pass
allow:
  - allowed.test
block:
  - host: blockonly.test
    path: /x
`)
	wantStored := []string{"refuse", "refuse", "pass", "pass", "refuse", "pass", "pass", "pass", "refuse", "pass", "pass"}
	for i, r := range p.Routes {
		if r.Unscrubbable != wantStored[i] {
			t.Errorf("routes[%d].Unscrubbable = %q, want %q", i, r.Unscrubbable, wantStored[i])
		}
	}
	tests := []struct {
		host string
		want bool
	}{
		{"default.test", false},
		{"refuse.test", false},
		{"pass.test", true},
		{"mixed.test", false},     // one route passes, the other refuses
		{"both.test", true},       // every route passes
		{"a.wild.test", true},     // the wildcard route alone
		{"sub.wild.test", false},  // its own route refuses, the wildcard's passes
		{"x.allpass.test", true},  // own and wildcard routes both pass
		{"allowed.test", false},   // no routes
		{"blockonly.test", false}, // no routes
		{"unknown.test", false},   // no rules at all
	}
	for _, tt := range tests {
		if got := p.Lookup(tt.host, 443).PassUnscrubbable(); got != tt.want {
			t.Errorf("Lookup(%q).PassUnscrubbable() = %v, want %v", tt.host, got, tt.want)
		}
	}
	if (HostRules{}).PassUnscrubbable() {
		t.Error("HostRules{}.PassUnscrubbable() = true, want false")
	}
}

func TestParsePolicyBlockPathNormalised(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/oauth/token", "/oauth/token"},
		{"/oauth//./token/", "/oauth/token"},
		{"/OAuth/Token", "/OAuth/Token"}, // case is kept; matching ignores it
		{"/a/../oauth/token", "/oauth/token"},
		{"/../oauth/token", "/oauth/token"},
		{"/oauth;v=1/token;jsessionid=x", "/oauth/token"},
		{`/oauth\token`, "/oauth/token"},
		{"/oauth /token  ", "/oauth/token"},
		{"/..", "/"},
		{"/", "/"},
		{"/café/über", "/café/über"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p, err := New(Policy{Block: []Block{{Host: "a.test", Path: tt.path}}})
			if err != nil {
				t.Fatalf("New(block path %q) error = %v", tt.path, err)
			}
			if got := p.Block[0].Path; got != tt.want {
				t.Errorf("New(block path %q).Block[0].Path = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestNewPolicy(t *testing.T) {
	in := Policy{
		Slots:  map[string]Slot{"a": {Placeholder: "placeholder-a"}},
		Routes: []Route{{Host: "API.example.com", Slot: "a", Methods: []string{"get"}, Push: &Push{Branches: []string{"agent/*"}}}},
		Allow:  append(AllowHosts("*.Example.org"), Allow{Host: "b.com", Path: "/x/", Methods: []string{"put"}}),
	}
	p, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	// The input is copied, not normalised in place or aliased.
	in.Routes[0].Host = "evil.com"
	in.Slots["a"] = Slot{Placeholder: "changed!!"}
	in.Allow[0] = Allow{Host: "evil.org"}
	in.Routes[0].Push.Branches[0] = "*"
	in.Routes[0].Push.Tags = true
	if p.Routes[0].Host != "api.example.com" || p.Slots["a"].Placeholder != "placeholder-a" || p.Allow[0].Host != "*.example.org" {
		t.Errorf("New result changed with its input: %+v", p)
	}
	if r := p.Routes[0]; r.Methods[0] != "GET" || r.Push.Branches[0] != "agent/*" || r.Push.Tags || in.Allow[1].Methods[0] != "put" || p.Allow[1].Path != "/x" {
		t.Errorf("New result shares its input's methods or push, or normalised the input: %+v %+v", r, in)
	}
	if got := p.Lookup("api.example.com", 443).Routes; len(got) != 1 {
		t.Errorf("Lookup(api.example.com) = %v, want one route", got)
	}
	if _, err := New(Policy{Routes: []Route{{Host: "a.com", Slot: "x"}}}); err == nil {
		t.Error("New with unknown slot = nil error")
	}
}

func TestPolicyZeroValueDeniesAll(t *testing.T) {
	for name, p := range map[string]*Policy{
		"nil":     nil,
		"zero":    {},
		"literal": {Slots: map[string]Slot{"a": {Placeholder: "xxxxxxxxx"}}, Routes: []Route{{Host: "a.com", Slot: "a"}}, Allow: AllowHosts("a.com")},
	} {
		if r := p.Lookup("a.com", 443); r.Intercept() || r.Allowed || r.HostBlock != nil {
			t.Errorf("%s policy: Lookup(a.com) = %+v, want nothing", name, r)
		}
		if p.SlotBound("a", "a.com", 443) {
			t.Errorf("%s policy: SlotBound = true", name)
		}
		if h := p.InterceptHosts(); len(h) != 0 {
			t.Errorf("%s policy: InterceptHosts() = %v", name, h)
		}
	}
}

const lookupPolicy = `
slots:
  codex: { placeholder: "` + testCodexPH + `" }
  github: { placeholder: "` + testGithubPH + `" }
  api: { placeholder: "sk-cork-00000000" }
routes:
  - host: chatgpt.com
    slot: codex
  - host: "*.chatgpt.com"
    slot: codex
    header: ChatGPT-Account-Id
    scheme: raw
  - host: github.com
    slot: github
    scheme: basic
  - host: api.github.com
    slot: github
    scheme: token
  - host: "*.github.com"
    slot: github
    header: X-Extra
  - host: "*.api.github.com"
    slot: github
    header: X-Deeper
  - host: api.test:8443
    slot: api
  - host: "[2001:db8::1]:8443"
    slot: api
  - host: 10.1.2.3
    slot: api
  - host: bücher.de
    slot: api
allow:
  - "*.githubusercontent.com"
  - "*.openai.com"
  - example.org:8080
block:
  - host: auth.openai.com
    path: /oauth/token
    reason: refresh on the host
  - host: uploads.github.com
    reason: no uploads
  - host: "*.chatgpt.com"
    path: /backend-api/files
  - host: "*.chatgpt.com"
    path: /
    reason: never matches before the files block
`

func TestPolicyLookup(t *testing.T) {
	p := mustParsePolicy(t, lookupPolicy)
	type want struct {
		routes     []string // "host header" of each route, in order
		allowed    bool
		hostBlock  string // reason
		pathBlocks int
	}
	tests := []struct {
		host string
		port int
		want want
	}{
		{"chatgpt.com", 443, want{routes: []string{"chatgpt.com Authorization"}}},
		{"chatgpt.com", 80, want{routes: []string{"chatgpt.com Authorization"}}},
		{"chatgpt.com", 8443, want{}},
		{"CHATGPT.COM.", 443, want{routes: []string{"chatgpt.com Authorization"}}},
		{"ab.chatgpt.com", 443, want{routes: []string{"*.chatgpt.com Chatgpt-Account-Id"}, pathBlocks: 2}},
		{"badchatgpt.com", 443, want{}},
		{"github.com", 443, want{routes: []string{"github.com Authorization"}}},
		{"api.github.com", 443, want{routes: []string{"api.github.com Authorization", "*.github.com X-Extra"}}},
		{"x.api.github.com", 443, want{routes: []string{"*.api.github.com X-Deeper", "*.github.com X-Extra"}}},
		{"gist.github.com", 443, want{routes: []string{"*.github.com X-Extra"}}},
		{"uploads.github.com", 443, want{hostBlock: "no uploads"}},
		{"raw.githubusercontent.com", 443, want{allowed: true}},
		{"githubusercontent.com", 443, want{}},
		{"auth.openai.com", 443, want{allowed: true, pathBlocks: 1}},
		{"api.openai.com", 443, want{allowed: true}},
		{"api.openai.com", 22, want{}},
		{"example.org", 8080, want{allowed: true}},
		{"example.org", 443, want{}},
		{"api.test", 8443, want{routes: []string{"api.test:8443 Authorization"}}},
		{"api.test", 443, want{}},
		{"2001:db8::1", 8443, want{routes: []string{"[2001:db8::1]:8443 Authorization"}}},
		{"[2001:DB8::1]", 8443, want{routes: []string{"[2001:db8::1]:8443 Authorization"}}},
		{"2001:db8::1", 443, want{}},
		{"10.1.2.3", 443, want{routes: []string{"10.1.2.3 Authorization"}}},
		{"::ffff:10.1.2.3", 443, want{routes: []string{"10.1.2.3 Authorization"}}},
		{"10.1.2.4", 443, want{}},
		{"xn--bcher-kva.de", 443, want{routes: []string{"xn--bcher-kva.de Authorization"}}},
		{"BÜCHER.de", 443, want{routes: []string{"xn--bcher-kva.de Authorization"}}},
		{"evil.com", 443, want{}},
		{"", 443, want{}},
		{"chatgpt.com/x", 443, want{}},
		{"127.1", 443, want{}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s:%d", tt.host, tt.port), func(t *testing.T) {
			r := p.Lookup(tt.host, tt.port)
			var got want
			for _, rt := range r.Routes {
				got.routes = append(got.routes, rt.Host+" "+rt.Header)
			}
			got.allowed = r.Allowed
			if r.HostBlock != nil {
				got.hostBlock = r.HostBlock.Reason
			}
			got.pathBlocks = len(r.PathBlocks)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Lookup(%q, %d) = %+v, want %+v", tt.host, tt.port, got, tt.want)
			}
			if r.HostBlock != nil && (r.Intercept() || r.Allowed) {
				t.Errorf("Lookup(%q, %d): a host block with other rules: %+v", tt.host, tt.port, r)
			}
		})
	}
}

func TestPolicyLookupRouteWithinAllowedWildcard(t *testing.T) {
	p := mustParsePolicy(t, `
slots:
  a: { placeholder: "placeholder-a" }
routes:
  - host: api.openai.com
    slot: a
allow:
  - "*.openai.com"
block:
  - host: auth.openai.com
`)
	if r := p.Lookup("api.openai.com", 443); !r.Intercept() || len(r.Routes) != 1 {
		t.Errorf("Lookup(api.openai.com) = %+v, want the route (intercept)", r)
	}
	if r := p.Lookup("auth.openai.com", 443); r.HostBlock == nil || r.Allowed {
		t.Errorf("Lookup(auth.openai.com) = %+v, want only the host block", r)
	}
	if r := p.Lookup("cdn.openai.com", 443); !r.Allowed || r.Intercept() {
		t.Errorf("Lookup(cdn.openai.com) = %+v, want allowed", r)
	}
}

func TestPolicyLookupNoAlloc(t *testing.T) {
	p := mustParsePolicy(t, lookupPolicy)
	for _, h := range []string{"chatgpt.com", "x.api.github.com", "raw.githubusercontent.com", "evil.com", "2001:db8::1"} {
		if n := testing.AllocsPerRun(100, func() { _ = p.Lookup(h, 443) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times, want 0", h, n)
		}
	}
}

func TestPolicyLookupResultNotAliased(t *testing.T) {
	p := mustParsePolicy(t, lookupPolicy)
	r := p.Lookup("api.github.com", 443)
	n := len(r.Routes)
	_ = append(r.Routes, &Route{Host: "evil.com"})
	if r2 := p.Lookup("api.github.com", 443); len(r2.Routes) != n {
		t.Fatalf("append to Lookup result changed the policy")
	}
	if r3 := p.Lookup("x.api.github.com", 443); slices.ContainsFunc(r3.Routes, func(r *Route) bool { return r.Host == "evil.com" }) {
		t.Fatalf("append to Lookup result leaked into another host")
	}
}

func TestHostRulesBlockFor(t *testing.T) {
	p := mustParsePolicy(t, `
block:
  - host: auth.openai.com
    path: /oauth/token
    reason: refresh
  - host: auth.openai.com
    path: /api/accounts/
    reason: accounts
  - host: root.example.com
    path: /
`)
	r := p.Lookup("auth.openai.com", 443)
	tests := []struct {
		path string
		want string // reason, "" = not blocked
	}{
		{"/oauth/token", "refresh"},
		{"/oauth/token/", "refresh"},
		{"/oauth/token/x", "refresh"},
		{"/oauth//token", "refresh"},
		{"/oauth/./token", "refresh"},
		{"/x/../oauth/token", "refresh"},
		{"/../oauth/token", "refresh"},
		{"oauth/token", "refresh"},
		{"/oauth/tokens", ""},
		{"/oauth/toke", ""},
		{"/oauth", ""},
		{"/OAUTH/TOKEN", "refresh"},
		{"/oauth/token%2F", "refresh"}, // callers pass the escaped path: an encoded slash
		{"/oauth/token%252F", "refresh"},
		{"/oauth/token.json", "refresh"},
		{"/oauth/token;a=b", "refresh"},
		{"/api/accounts", "accounts"},
		{"/api/accounts/me", "accounts"},
		{"/api/accountsx", ""},
		{"/", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := ""
			if b := r.BlockFor(tt.path); b != nil {
				got = b.Reason
			}
			if got != tt.want {
				t.Errorf("BlockFor(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
	root := p.Lookup("root.example.com", 443)
	for _, path := range []string{"/", "", "/x", "/x/y"} {
		if root.BlockFor(path) == nil {
			t.Errorf("block on / : BlockFor(%q) = nil", path)
		}
	}
	if (HostRules{}).BlockFor("/oauth/token") != nil {
		t.Error("empty HostRules blocks")
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.BlockFor("/oauth/token/") }); n != 0 {
		t.Errorf("BlockFor allocates %v times, want 0", n)
	}
}

func TestPolicySlotBound(t *testing.T) {
	p := mustParsePolicy(t, lookupPolicy)
	tests := []struct {
		slot, host string
		port       int
		want       bool
	}{
		{"codex", "chatgpt.com", 443, true},
		{"codex", "ab.chatgpt.com", 443, true},
		{"codex", "github.com", 443, false},
		{"github", "github.com", 443, true},
		{"github", "x.y.github.com", 443, true},
		{"github", "uploads.github.com", 443, false}, // blocked host
		{"github", "githubusercontent.com", 443, false},
		{"github", "raw.githubusercontent.com", 443, false},
		{"api", "api.test", 8443, true},
		{"api", "api.test", 443, false},
		{"nope", "chatgpt.com", 443, false},
	}
	for _, tt := range tests {
		if got := p.SlotBound(tt.slot, tt.host, tt.port); got != tt.want {
			t.Errorf("SlotBound(%q, %q, %d) = %v, want %v", tt.slot, tt.host, tt.port, got, tt.want)
		}
	}
}

func TestPolicyInterceptHosts(t *testing.T) {
	p := mustParsePolicy(t, lookupPolicy)
	want := []string{
		"*.api.github.com", "*.chatgpt.com", "*.github.com", "10.1.2.3", "2001:db8::1", "api.github.com",
		"api.test", "auth.openai.com", "chatgpt.com", "github.com", "xn--bcher-kva.de",
	}
	got := p.InterceptHosts()
	if !slices.Equal(got, want) {
		t.Errorf("InterceptHosts() = %q, want %q", got, want)
	}
	got[0] = "evil.com"
	if p.InterceptHosts()[0] == "evil.com" {
		t.Error("InterceptHosts returns the policy's own slice")
	}
}

func BenchmarkPolicyLookup(b *testing.B) {
	p := mustParsePolicy(b, lookupPolicy)
	for _, bc := range []struct{ name, host string }{
		{"exact", "chatgpt.com"},
		{"wildcard", "x.api.github.com"},
		{"miss", "deep.sub.domain.example.net"},
		{"upper", "ChatGPT.com."},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Lookup(bc.host, 443)
			}
		})
	}
}

// refMatch is a deliberately naive matcher for a canonical Route.Host
// pattern, used to cross-check the compiled lookup.
func refMatch(pattern, host string, port int) bool {
	h, err := NormalizeHost(host)
	if err != nil {
		return false
	}
	patHost, patPort := pattern, 0
	if strings.HasPrefix(pattern, "[") {
		end := strings.Index(pattern, "]")
		patHost = pattern[1:end]
		if rest := pattern[end+1:]; rest != "" {
			fmt.Sscanf(rest, ":%d", &patPort)
		}
	} else if strings.Count(pattern, ":") == 1 {
		i := strings.Index(pattern, ":")
		patHost = pattern[:i]
		fmt.Sscanf(pattern[i:], ":%d", &patPort)
	}
	if patPort == 0 && port != 443 && port != 80 || patPort != 0 && patPort != port {
		return false
	}
	if suffix, ok := strings.CutPrefix(patHost, "*."); ok {
		return strings.HasSuffix(h, "."+suffix)
	}
	return h == patHost
}

// checkLookupInvariants verifies the tripwire's guarantee for one host:port:
// every route Lookup returns matches its pattern, every matching route is
// returned (unless a host block wins), and SlotBound agrees.
func checkLookupInvariants(t *testing.T, p *Policy, host string, port int) {
	t.Helper()
	r := p.Lookup(host, port)
	for _, rt := range r.Routes {
		if !refMatch(rt.Host, host, port) {
			t.Fatalf("Lookup(%q, %d) returned route %q that does not match", host, port, rt.Host)
		}
		if _, ok := p.Slots[rt.Slot]; !ok {
			t.Fatalf("route %q has undefined slot %q", rt.Host, rt.Slot)
		}
	}
	if r.HostBlock != nil {
		if r.Intercept() || r.Allowed {
			t.Fatalf("Lookup(%q, %d): host block with other rules", host, port)
		}
		return
	}
	for i := range p.Routes {
		rt := &p.Routes[i]
		if refMatch(rt.Host, host, port) && !slices.Contains(r.Routes, rt) {
			t.Fatalf("Lookup(%q, %d) misses route %q", host, port, rt.Host)
		}
	}
	for slot := range p.Slots {
		want := slices.ContainsFunc(r.Routes, func(rt *Route) bool { return rt.Slot == slot })
		if got := p.SlotBound(slot, host, port); got != want {
			t.Fatalf("SlotBound(%q, %q, %d) = %v, want %v", slot, host, port, got, want)
		}
	}
}

func FuzzLookup(f *testing.F) {
	base := mustParsePolicy(f, lookupPolicy)
	for _, s := range []struct {
		pattern, host string
		port          uint16
	}{
		{"*.example.com", "a.example.com", 443},
		{"*.example.com", "example.com", 443},
		{"*.example.com", "badexample.com", 80},
		{"api.test:8443", "API.TEST.", 8443},
		{"[::1]:8443", "[::1]", 8443},
		{"10.0.0.1", "::ffff:10.0.0.1", 443},
		{"bücher.de", "xn--bcher-kva.de", 443},
		{"*.github.com", "x.api.github.com", 443},
		{"chatgpt.com", "chatgpt.com.evil.net", 443},
		{"x", "", 0},
	} {
		f.Add(s.pattern, s.host, s.port)
	}
	f.Fuzz(func(t *testing.T, pattern, host string, port uint16) {
		p := base
		if extra, err := New(Policy{
			Slots:  base.Slots,
			Routes: append(slices.Clone(base.Routes), Route{Host: pattern, Slot: "codex", Header: "X-Fuzz"}),
			Allow:  base.Allow,
			Block:  base.Block,
		}); err == nil {
			p = extra
		}
		checkLookupInvariants(t, p, host, int(port))
	})
}

func FuzzParsePolicy(f *testing.F) {
	for _, name := range []string{
		"sample.yaml", "sample.json", "sample_crlf.yaml", "bad_tabs.yaml", "bad_many.yaml",
		"bad_unknown_field.yaml", "bad_multi_doc.yaml", "bad_placeholder_newline.yaml",
	} {
		f.Add(readFixture(f, name))
	}
	f.Add([]byte(lookupPolicy))
	f.Add([]byte(allowPolicy))
	f.Add([]byte(permitPolicy))
	f.Add([]byte("slots: {a: {placeholder: abcdefghij}}\nroutes: [{host: '*.x.com', slot: a}]\n"))
	f.Add([]byte("routes: [{host: a.com, slot: &x a}, {host: b.com, slot: *x}]\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			return
		}
		for i, r := range p.Routes {
			if _, ok := p.Slots[r.Slot]; !ok {
				t.Fatalf("routes[%d]: slot %q undefined", i, r.Slot)
			}
			pat, err := ParseHostPattern(r.Host)
			if err != nil || pat.String() != r.Host {
				t.Fatalf("routes[%d].host %q is not canonical: %v", i, r.Host, err)
			}
			for _, port := range pat.ports() {
				host := pat.host
				if pat.wildcard {
					host = "x." + host
				}
				checkLookupInvariants(t, p, host, port)
			}
		}
		for a, sa := range p.Slots {
			for b, sb := range p.Slots {
				if a != b && strings.Contains(sa.Placeholder, sb.Placeholder) {
					t.Fatalf("placeholder of %s contains that of %s", a, b)
				}
			}
		}
		// A parsed policy is a fixed point of validation.
		again, err := New(*p)
		if err != nil {
			t.Fatalf("New(parsed policy): %v", err)
		}
		if !reflect.DeepEqual(again.Routes, p.Routes) || !reflect.DeepEqual(again.Block, p.Block) || !reflect.DeepEqual(again.Allow, p.Allow) {
			t.Fatalf("New(parsed policy) changed it")
		}
		for _, h := range p.InterceptHosts() {
			if _, err := ParseHostPattern(h); err != nil {
				t.Fatalf("InterceptHosts() has %q: %v", h, err)
			}
		}
	})
}
