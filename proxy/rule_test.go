package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
)

// egressLines returns the proxy's egress audit lines, decoded.
func egressLines(t *testing.T, tp *testProxy) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(tp.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m[fieldMsg] == msgEgress {
			out = append(out, m)
		}
	}
	return out
}

// TestAuditRuleAndSession checks that each decision's audit line names the
// policy entry that decided (docs/DESIGN.md, section 6) and the session.
func TestAuditRuleAndSession(t *testing.T) {
	const session = "sess-42"
	e := newStdEnv(t, func(c *Config) { c.SessionID = session })
	tp := e.tp
	get := func(cl *http.Client, u string) {
		t.Helper()
		resp, err := cl.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		readBody(t, resp)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.test/ok", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp, err := tp.client().Do(req)
	if err != nil {
		t.Fatalf("GET with placeholder: %v", err)
	}
	readBody(t, resp)
	get(tp.client(), "https://api.example.test/oauth/token")
	get(tp.client(), "http://api.example.test/clear")
	tc := tp.tunnelClient()
	get(tc, "https://b.example.test/t")
	tc.CloseIdleConnections()
	for _, target := range []string{"blocked.example.test:443", "unlisted.example.test:443"} {
		resp, c, _ := tp.connect(t, target)
		resp.Body.Close()
		c.Close()
	}

	type key struct{ decision, host, reason string }
	want := map[key]string{
		{"inject", "api.example.test", ""}:                  "routes[0]",
		{"block", "api.example.test", ReasonBlocked}:        "block[1]",
		{"deny", "api.example.test", ReasonInsecureRoute}:   "routes[0]",
		{"tunnel", "b.example.test", ""}:                    "allow[1]",
		{"block", "blocked.example.test", ReasonBlocked}:    "block[0]",
		{"deny", "unlisted.example.test", ReasonNotAllowed}: "",
	}
	got := map[key]string{}
	eventually(t, func() bool {
		clear(got)
		for _, m := range egressLines(t, tp) {
			r, _ := m[fieldReason].(string)
			rule, _ := m[fieldRule].(string)
			got[key{m[fieldDecision].(string), m[fieldHost].(string), r}] = rule
			if m[fieldSession] != session {
				t.Fatalf("line %v: session = %v, want %q", m, m[fieldSession], session)
			}
		}
		return len(got) >= len(want)
	})
	for k, w := range want {
		if r, ok := got[k]; !ok || r != w {
			t.Errorf("audit line %+v: rule = %q (present %v), want %q; lines:\n%s", k, r, ok, w, tp.logs.String())
		}
	}
	assertNoSecrets(t, "audit log", tp.logs.String())
}

func TestAuditSessionOmittedWhenEmpty(t *testing.T) {
	e := newStdEnv(t)
	resp, err := e.tp.client().Get("https://api.example.test/ok")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	eventually(t, func() bool { return len(egressLines(t, e.tp)) > 0 })
	if strings.Contains(e.tp.logs.String(), `"`+fieldSession+`"`) {
		t.Errorf("log has a session field without Config.SessionID:\n%s", e.tp.logs.String())
	}
}

func TestSessionIDValidate(t *testing.T) {
	for _, id := range []string{"", "a1b2c3", "run-1.x_y", strings.Repeat("a", MaxSessionIDLen)} {
		if err := CheckSessionID(id); err != nil {
			t.Errorf("CheckSessionID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"a b", "x\ny", `a"b`, strings.Repeat("a", MaxSessionIDLen+1)} {
		pol, _ := policy.Parse([]byte("allow: [a.test]\n"))
		if err := (Config{Policy: pol, SessionID: id}).Validate(); err == nil || !strings.Contains(err.Error(), "session id") {
			t.Errorf("Config{SessionID: %q}.Validate() = %v, want a session id error", id, err)
		}
	}
}

func TestDeniedBy(t *testing.T) {
	pol, err := policy.Parse([]byte(`
slots:
  s: {placeholder: PH-s-000000000000000}
routes:
  - {host: r.test, slot: s}
  - {host: m.test, slot: s, methods: [GET]}
allow:
  - {host: p.test, path: /v1}
  - {host: p.test, path: /v2, methods: [GET]}
block:
  - {host: r.test, path: /secret}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path, reason, want string
	}{
		{"r.test", "/secret/x", ReasonBlocked, "block[0]"},
		{"m.test", "/", ReasonMethodNotAllowed, "routes[1]"},
		{"p.test", "/v3", ReasonPathNotAllowed, "allow[0]"},
		{"p.test", "/v2", ReasonMethodNotAllowed, "allow[0]"},
		{"r.test", "/", ReasonInsecureRoute, "routes[0]"},
		{"x.test", "/", ReasonNotAllowed, ""},
	}
	for _, tt := range tests {
		if got := deniedBy(pol, pol.Lookup(tt.host, 443), tt.path, tt.reason); got != tt.want {
			t.Errorf("deniedBy(%s%s, %s) = %q, want %q", tt.host, tt.path, tt.reason, got, tt.want)
		}
	}
	if got := passedBy(pol, pol.Lookup("p.test", 443)); got != "allow[0]" {
		t.Errorf("passedBy(p.test) = %q, want allow[0]", got)
	}
	rules := pol.Lookup("m.test", 443)
	if n := testing.AllocsPerRun(100, func() { _ = passedBy(pol, rules) }); n != 0 {
		t.Errorf("passedBy allocates %v times, want 0", n)
	}
}
