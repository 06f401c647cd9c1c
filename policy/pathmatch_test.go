package policy

import (
	"strings"
	"testing"
)

// blockPolicy has path blocks on github.com (the token endpoint, case
// insensitive), api.test (case sensitive) and root.test (everything).
const blockPolicy = `
block:
  - host: github.com
    path: /login/oauth/access_token
    reason: token
  - host: api.test
    path: /API/Admin
    case_sensitive: true
    reason: admin
  - host: root.test
    path: /
    reason: root
`

// TestBlockPathSpellings checks that a path block holds however a client
// spells the path, the way common servers would still route it to the
// blocked handler, and that near misses pass.
func TestBlockPathSpellings(t *testing.T) {
	p := mustParsePolicy(t, blockPolicy)
	tests := []struct {
		name, host, path string
		blocked          bool
	}{
		{"exact", "github.com", "/login/oauth/access_token", true},
		{"no leading slash", "github.com", "login/oauth/access_token", true},
		{"trailing slash", "github.com", "/login/oauth/access_token/", true},
		{"below", "github.com", "/login/oauth/access_token/x/y", true},
		{"upper first segment", "github.com", "/Login/oauth/access_token", true},
		{"all upper", "github.com", "/LOGIN/OAUTH/ACCESS_TOKEN", true},
		{"unicode long s folds to s", "github.com", "/login/oauth/acce%C5%BFs_token", true},
		{"kelvin sign folds to k", "github.com", "/login/oauth/access_to%E2%84%AAen", true},
		{"matrix param last", "github.com", "/login/oauth/access_token;x=1", true},
		{"matrix param middle", "github.com", "/login;jsessionid=1/oauth/access_token", true},
		{"encoded semicolon", "github.com", "/login/oauth/access_token%3Bx=1", true},
		{"tomcat dot-dot-semicolon", "github.com", "/login/x/..;/oauth/access_token", true},
		{"format suffix", "github.com", "/login/oauth/access_token.json", true},
		{"format suffix upper", "github.com", "/login/oauth/access_token.JSON", true},
		{"format suffix then path", "github.com", "/login/oauth/access_token.json/x", true},
		{"two format suffixes", "github.com", "/login/oauth/access_token.tar.gz", true},
		{"8-char suffix", "github.com", "/login/oauth/access_token.abcdefgh", true},
		{"trailing %20", "github.com", "/login/oauth/access_token%20", true},
		{"trailing %09", "github.com", "/login/oauth/access_token%09", true},
		{"trailing spaces and slash", "github.com", "/login/oauth/access_token%20%20/", true},
		{"space inside path", "github.com", "/login%20/oauth/access_token", true},
		{"NUL truncates", "github.com", "/login/oauth/access_token%00.png", true},
		{"encoded slashes", "github.com", "/login%2Foauth%2faccess_token", true},
		{"double-encoded slash", "github.com", "/login%252Foauth%252faccess_token", true},
		{"backslashes", "github.com", `/login\oauth\access_token`, true},
		{"encoded backslash", "github.com", "/login%5Coauth/access_token", true},
		{"encoded letter", "github.com", "/login/oauth/access_tok%65n", true},
		{"encoded underscore", "github.com", "/login/oauth/access%5Ftoken", true},
		{"double-encoded letter", "github.com", "/%256cogin/oauth/access_token", true},
		{"repeated slashes", "github.com", "//login///oauth//access_token", true},
		{"dot segment", "github.com", "/login/./oauth/access_token", true},
		{"dot-dot", "github.com", "/a/../login/oauth/access_token", true},
		{"dot-dot above root", "github.com", "/../../login/oauth/access_token", true},
		{"encoded dot-dot", "github.com", "/a/%2e%2e/login/oauth/access_token", true},
		{"encoded dot-dot upper", "github.com", "/a/%2E%2E/login/oauth/access_token", true},
		{"mixed encoded dot-dot", "github.com", "/a/.%2e/login/oauth/access_token", true},
		{"double-encoded dot-dot", "github.com", "/a/%252e%252e/login/oauth/access_token", true},
		{"dot-dot with encoded slash", "github.com", "/a%2F..%2Flogin/oauth/access_token", true},
		{"dot-dot with spaces", "github.com", "/a/..%20/login/oauth/access_token", true},
		{"dot-dot out of the block, kept", "github.com", "/login/oauth/access_token/..", true},
		{"encoded dot-dot out of the block, kept", "github.com", "/login/oauth/access_token/%2e%2e/x", true},
		{"everything at once", "github.com", "//LOGIN;a=1/x/%2e%2E/OAuth%2FAccess_Token.Json%20", true},

		{"near miss: longer last segment", "github.com", "/login/oauth/access_tokens", false},
		{"near miss: parent", "github.com", "/login/oauth", false},
		{"near miss: sibling prefix", "github.com", "/login/oauth2", false},
		{"near miss: sibling below", "github.com", "/login/oauth2/access_token", false},
		{"near miss: sibling endpoint", "github.com", "/login/oauth/authorize", false},
		{"near miss: hyphen", "github.com", "/login/oauth/access-token", false},
		{"near miss: underscore suffix", "github.com", "/login/oauth/access_token_x", false},
		{"near miss: hyphen suffix", "github.com", "/login/oauth/access_token-json", false},
		{"near miss: 9-char suffix", "github.com", "/login/oauth/access_token.abcdefghi", false},
		{"near miss: suffix with a hyphen", "github.com", "/login/oauth/access_token.a-b", false},
		{"trailing dot", "github.com", "/login/oauth/access_token.", true},
		{"trailing dots and space", "github.com", "/login/oauth/access_token..%20", true},
		{"near miss: dot-dot joined", "github.com", "/login/oauth/access_token..x-y", false},
		{"near miss: joined", "github.com", "/login/oauthaccess_token", false},
		{"near miss: nested", "github.com", "/api/login/oauth/access_token", false},
		{"near miss: dot-dot leaves", "github.com", "/login/oauth/x/../authorize", false},
		{"root", "github.com", "/", false},
		{"empty", "github.com", "", false},

		{"case-sensitive exact", "api.test", "/API/Admin", true},
		{"case-sensitive below", "api.test", "/API/Admin/users", true},
		{"case-sensitive suffix", "api.test", "/API/Admin.json", true},
		{"case-sensitive encoded", "api.test", "/API/%41dmin", true},
		{"case-sensitive dot-dot", "api.test", "/x/../API//Admin;v=2", true},
		{"case-sensitive other case", "api.test", "/api/admin", false},
		{"case-sensitive other case suffix", "api.test", "/API/ADMIN.json", false},

		{"root block: root", "root.test", "/", true},
		{"root block: empty", "root.test", "", true},
		{"root block: anything", "root.test", "/x/y%2Fz", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := p.Lookup(tt.host, 443).BlockFor(tt.path)
			if got := b != nil; got != tt.blocked {
				t.Errorf("Lookup(%q).BlockFor(%q) blocked = %v, want %v", tt.host, tt.path, got, tt.blocked)
			}
		})
	}
}

func TestBlockForNoAlloc(t *testing.T) {
	p := mustParsePolicy(t, blockPolicy)
	r := p.Lookup("github.com", 443)
	for _, path := range []string{"/login/oauth/access_token", "/LOGIN/x/../oauth/access_token.json", "/a/b/c/d/e/f/g/h", "/"} {
		if n := testing.AllocsPerRun(100, func() { _ = r.BlockFor(path) }); n != 0 {
			t.Errorf("BlockFor(%q) allocates %v times, want 0", path, n)
		}
	}
}

func TestBlockForManySegments(t *testing.T) {
	p := mustParsePolicy(t, blockPolicy)
	r := p.Lookup("github.com", 443)
	deep := strings.Repeat("/a", 40) + strings.Repeat("/..", 40) + "/login/oauth/access_token"
	if r.BlockFor(deep) == nil {
		t.Errorf("BlockFor(%q) = nil, want the block (more segments than fit inline)", deep)
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"//", "/"},
		{"/a/b", "/a/b"},
		{"a/b/", "/a/b"},
		{"/a/./b/../c", "/a/c"},
		{"/a/%2e%2E/c", "/c"},
		{"/a%2Fb%2fc", "/a/b/c"},
		{"/a%252Fb", "/a/b"},   // "%2F" left after one decode is a slash
		{"/a%2525b", "/a%25b"}, // decoded once only
		{"/a%zzb%", "/a%zzb%"}, // invalid escapes stay
		{`/a\b`, "/a/b"},
		{"/a;x=1/b;y", "/a/b"},
		{"/a/..;/b", "/b"},
		{"/a%20%09/b%20", "/a/b"},
		{"/a%00x/b", "/a/b"},
		{"/a%7Fx/b", "/a/b"},
		{"/ /b", "/b"},
		{"/A/B", "/A/B"},
		{"/%C3%A9t%C3%A9", "/\u00e9t\u00e9"},
		{"/../..", "/"},
		{"/a/b/../../..", "/"},
	}
	for _, tt := range tests {
		if got := normalizePath(tt.in); got != tt.want {
			t.Errorf("normalizePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPathDecode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/plain", "/plain"},
		{"%41%62%2f", "Ab/"},
		{"%2541", "%41"},
		{"%", "%"},
		{"%4", "%4"},
		{"%G1%1G", "%G1%1G"},
		{"a%41%", "aA%"},
		{"%ff", "\xff"},
	}
	for _, tt := range tests {
		if got := pathDecode(tt.in); got != tt.want {
			t.Errorf("pathDecode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// asciiCase maps the ASCII letters of s to upper (or lower) case, leaving
// every other byte (and so the percent escapes' values) alone.
func asciiCase(s string, upper bool) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// FuzzBlockPath: whatever the request path, a block on the path the
// normaliser maps it to blocks it — in any ASCII case, with a sub-path or a
// format suffix added, and (case-sensitive) as written. The normaliser's
// output, as a block path, is stored unchanged (it is a fixed point).
func FuzzBlockPath(f *testing.F) {
	for _, s := range []string{
		"/login/oauth/access_token", "/Login/oauth/access_token;x=1", "/login/oauth/access_token.json",
		"/login/oauth/access_token%20", "/login%252Foauth/access_token", "/a/../login/oauth/access_token",
		"/a/%2e%2e/login", "//x//y/", `\a\b`, "/a/..;/b", "/%00", "/a%zz", "/caf%C3%A9", "", "/",
		"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s", "/x.tar.gz/y", "/%2525",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n := normalizePath(raw)
		if !strings.HasPrefix(n, "/") || strings.Contains(n, "//") || len(n) > 1 && strings.HasSuffix(n, "/") {
			t.Fatalf("normalizePath(%q) = %q, want an absolute path without empty segments", raw, n)
		}
		if strings.ContainsAny(n, "%?#") || !validUTF8NoControl(n) {
			return // a policy cannot spell this block path
		}
		p, err := New(Policy{Block: []Block{
			{Host: "fold.test", Path: n},
			{Host: "exact.test", Path: n, CaseSensitive: true},
		}})
		if err != nil {
			t.Fatalf("New(block path %q = normalizePath(%q)) error = %v", n, raw, err)
		}
		if got := p.Block[0].Path; got != n {
			t.Fatalf("block path %q stored as %q: normalizePath is not idempotent", n, got)
		}
		fold, exact := p.Lookup("fold.test", 443), p.Lookup("exact.test", 443)
		if exact.BlockFor(raw) == nil {
			t.Fatalf("case-sensitive block on %q does not block %q", n, raw)
		}
		for _, v := range []string{raw, asciiCase(raw, true), asciiCase(raw, false), raw + "/x", raw + "/.json", raw + "/x.json"} {
			if fold.BlockFor(v) == nil {
				t.Fatalf("block on %q = normalizePath(%q) does not block %q", n, raw, v)
			}
		}
	})
}
