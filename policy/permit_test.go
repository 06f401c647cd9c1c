package policy

import (
	"slices"
	"strings"
	"testing"
)

const permitPolicy = `slots:
  gh:
    placeholder: ghp_cork000000000000000000000000000000
routes:
  - {host: api.github.com, slot: gh, methods: [GET, HEAD]}
  - {host: uploads.example.com, slot: gh, header: X-A}
  - {host: uploads.example.com, slot: gh, header: X-B, methods: [POST]}
  - {host: "*.ro.example.com", slot: gh, methods: [GET]}
allow:
  - {host: api.github.com, path: /repos/o/r/, methods: [GET]}
  - {host: api.github.com, path: /user}
  - {host: data.example.org, path: /pub}
  - {host: data.example.org, path: /up, methods: [PUT]}
  - "*.example.net"
  - {host: a.example.net, path: /x}
  - {host: "*.scoped.example", methods: [GET]}
  - {host: root.example, path: /}
`

func TestPermits(t *testing.T) {
	p := mustParsePolicy(t, permitPolicy)
	tests := []struct {
		name, host, method, path, want string
	}{
		{"allowed path", "api.github.com", "GET", "/repos/o/r", ""},
		{"below", "api.github.com", "GET", "/repos/o/r/issues", ""},
		{"trailing slash", "api.github.com", "GET", "/repos/o/r/", ""},
		{"encoded slash below", "api.github.com", "GET", "/repos/o/r/branches/a%2Fb", ""},
		{"encoded letter", "api.github.com", "GET", "/repos/%6F/r", ""},
		{"sibling prefix", "api.github.com", "GET", "/repos/o/rx", DenyPath},
		{"format suffix", "api.github.com", "GET", "/repos/o/r.git", DenyPath},
		{"other repo", "api.github.com", "GET", "/repos/o/s", DenyPath},
		{"route method", "api.github.com", "POST", "/repos/o/r", DenyMethod},
		{"allow method", "api.github.com", "HEAD", "/repos/o/r", DenyMethod},
		{"second allow any method", "api.github.com", "HEAD", "/user", ""},
		{"route method before path", "api.github.com", "DELETE", "/elsewhere", DenyMethod},
		{"method case", "api.github.com", "get", "/repos/o/r", DenyMethod},
		{"dot dot out", "api.github.com", "GET", "/repos/o/r/../../x/y", DenyPath},
		{"encoded dot dot", "api.github.com", "GET", "/repos/o/r/%2e%2e/%2E%2E/x", DenyPath},
		{"double encoded dot dot", "api.github.com", "GET", "/repos/o/r/%252e%252e/%252e%252e/x", DenyPath},
		{"dot in", "api.github.com", "GET", "/repos/./o/r", DenyPath},
		{"dot dot in", "api.github.com", "GET", "/x/../repos/o/r", DenyPath},
		{"matrix", "api.github.com", "GET", "/repos/o/r;x", DenyPath},
		{"matrix dot dot", "api.github.com", "GET", "/repos/o/r/..;/..;/x", DenyPath},
		{"case", "api.github.com", "GET", "/repos/O/r", DenyPath},
		{"encoded slash in prefix", "api.github.com", "GET", "/repos/o%2Fr", DenyPath},
		{"double encoded slash", "api.github.com", "GET", "/repos/o/r%252F..%252F..%252Fx", DenyPath},
		{"backslash", "api.github.com", "GET", "/repos\\o\\r", DenyPath},
		{"double slash", "api.github.com", "GET", "//repos/o/r", DenyPath},
		{"inner empty segment", "api.github.com", "GET", "/repos//o/r", DenyPath},
		{"nul", "api.github.com", "GET", "/repos/o/r%00/x", DenyPath},
		{"trailing space", "api.github.com", "GET", "/repos/o/r%20/x", DenyPath},
		{"empty path", "api.github.com", "GET", "", DenyPath},
		{"no routes any method", "data.example.org", "DELETE", "/pub", ""},
		{"no routes below", "data.example.org", "GET", "/pub/a/b", ""},
		{"no routes method", "data.example.org", "GET", "/up", DenyMethod},
		{"no routes put", "data.example.org", "PUT", "/up/x", ""},
		{"no routes outside", "data.example.org", "GET", "/other", DenyPath},
		{"no routes root", "data.example.org", "GET", "/", DenyPath},
		{"route without methods permits all", "uploads.example.com", "DELETE", "/x", ""},
		{"wildcard route methods", "x.ro.example.com", "GET", "/x", ""},
		{"wildcard route methods deny", "x.ro.example.com", "POST", "/x", DenyMethod},
		{"scoped inside plain wildcard", "a.example.net", "GET", "/x/y", ""},
		{"scoped inside plain wildcard outside", "a.example.net", "GET", "/y", DenyPath},
		{"plain wildcard", "b.example.net", "POST", "/anything/../at/all", ""},
		{"scoped wildcard", "q.scoped.example", "GET", "/anything", ""},
		{"scoped wildcard method", "q.scoped.example", "POST", "/anything", DenyMethod},
		{"root path any", "root.example", "GET", "/a/../../b", ""},
		{"not in policy", "nowhere.example", "POST", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Lookup(tt.host, 443).Permits(tt.method, tt.path); got != tt.want {
				t.Errorf("Lookup(%q).Permits(%q, %q) = %q, want %q", tt.host, tt.method, tt.path, got, tt.want)
			}
		})
	}
	if got := (HostRules{}).Permits("POST", "/x"); got != "" {
		t.Errorf("HostRules{}.Permits() = %q, want \"\"", got)
	}
}

// A host with scoped allows only is intercepted; a plain allowed host is
// tunnelled.
func TestScopedAllowIntercepts(t *testing.T) {
	p := mustParsePolicy(t, permitPolicy)
	for host, want := range map[string]bool{
		"data.example.org": true, "a.example.net": true, "q.scoped.example": true, "b.example.net": false,
	} {
		r := p.Lookup(host, 443)
		if !r.Allowed || r.Intercept() != want {
			t.Errorf("Lookup(%q) = Allowed %v, Intercept %v; want true, %v", host, r.Allowed, r.Intercept(), want)
		}
	}
	got := p.InterceptHosts()
	for _, h := range []string{"data.example.org", "a.example.net", "*.scoped.example", "root.example"} {
		if !slices.Contains(got, h) {
			t.Errorf("InterceptHosts() = %q, want it to contain %q", got, h)
		}
	}
	if slices.Contains(got, "*.example.net") {
		t.Errorf("InterceptHosts() = %q, want no *.example.net (a blind tunnel)", got)
	}
}

func TestPermitsNoAlloc(t *testing.T) {
	p := mustParsePolicy(t, permitPolicy)
	for _, tc := range []struct{ host, path string }{
		{"b.example.net", "/a%2Fb"},
		{"api.github.com", "/repos/o/r/issues"},
		{"api.github.com", "/repos/o/rx/../r/x"},
		{"data.example.org", "/"},
		{"x.ro.example.com", "/x"},
	} {
		r := p.Lookup(tc.host, 443)
		if n := testing.AllocsPerRun(100, func() { _ = r.Permits("GET", tc.path) }); n != 0 {
			t.Errorf("Lookup(%q).Permits(GET, %q) allocates %v times, want 0", tc.host, tc.path, n)
		}
	}
}

func TestPermitsManySegments(t *testing.T) {
	p := mustParsePolicy(t, permitPolicy)
	r := p.Lookup("api.github.com", 443)
	deep := "/repos/o/r" + strings.Repeat("/a", 40)
	if got := r.Permits("GET", deep); got != "" {
		t.Errorf("Permits(GET, deep) = %q, want \"\"", got)
	}
	if got := r.Permits("GET", deep+strings.Repeat("/..", 41)+"/x"); got != DenyPath {
		t.Errorf("Permits(GET, deep/../x) = %q, want %q", got, DenyPath)
	}
}

func BenchmarkPermits(b *testing.B) {
	p := mustParsePolicy(b, permitPolicy)
	for _, bc := range []struct{ name, host, path string }{
		{"no rules", "b.example.net", "/a/b/c"},
		{"route methods", "x.ro.example.com", "/a/b/c"},
		{"scoped", "api.github.com", "/repos/o/r/issues/1"},
		{"scoped escaped", "api.github.com", "/repos/o/r/contents/a%20b"},
	} {
		r := p.Lookup(bc.host, 443)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Permits("GET", bc.path)
			}
		})
	}
}

// FuzzPermits: a scoped allow on the path the normaliser maps a request path
// to permits that path as normalised, and whatever request path it permits
// is one a case-sensitive block on the same path would block (an allow
// needs every reading, a block any), whose canonical reading starts with
// the allow's path.
func FuzzPermits(f *testing.F) {
	for _, s := range []string{
		"/repos/o/r", "/repos/o/r/../x", "/repos/o/r;x", "/repos/o/r%2Fx", "/repos/%6F/r", "//repos/o/r",
		`\repos\o\r`, "/a/%2e%2e/b", "/a/..;/b", "/%00", "/a%zz", "/caf%C3%A9/x", "", "/", "/%2525",
		"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s",
	} {
		f.Add(s, s+"/x")
	}
	f.Fuzz(func(t *testing.T, allowRaw, raw string) {
		n := normalizePath(allowRaw)
		if strings.ContainsAny(n, "%?#") || !validUTF8NoControl(n) {
			return // a policy cannot spell this allow path
		}
		p, err := New(Policy{Allow: []Allow{{Host: "a.test", Path: n}}, Block: []Block{{Host: "a.test", Path: n, CaseSensitive: true}}})
		if err != nil {
			t.Fatalf("New(allow path %q) error = %v", n, err)
		}
		r := p.Lookup("a.test", 443)
		if got := r.Permits("GET", n); got != "" {
			t.Fatalf("allow %q: Permits(GET, %q) = %q, want it permitted", n, n, got)
		}
		if r.Permits("GET", raw) != "" {
			return
		}
		if r.BlockFor(raw) == nil {
			t.Fatalf("allow %q permits %q, which a block on it does not block", n, raw)
		}
		if !allowCovers([][]string{strings.Split(strings.TrimPrefix(normalizePath(raw), "/"), "/")}, n) {
			t.Fatalf("allow %q permits %q, whose canonical reading is %q", n, raw, normalizePath(raw))
		}
	})
}
