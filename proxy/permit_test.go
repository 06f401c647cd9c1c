package proxy

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/upstreamtest"
)

// permitPolicy: a routed host limited to GET and HEAD and, by a scoped
// allow, to one repository; an unrouted host allowed only under /pub for
// GET; a plain allowed host.
const permitPolicy = `
slots:
  api: { placeholder: "` + phAPI + `" }
routes:
  - host: ro.example.test
    slot: api
    methods: [GET, HEAD]
    insecure_http: true
allow:
  - { host: ro.example.test, path: /repos/o/r/ }
  - { host: scoped.example.test, path: /pub, methods: [GET] }
  - plain.example.test
`

type permitEnv struct {
	tp  *testProxy
	rec *upstreamtest.Recorder
}

func newPermitEnv(t *testing.T) *permitEnv {
	t.Helper()
	e := &permitEnv{rec: &upstreamtest.Recorder{}}
	tlsSrv := newUpstream(t, true, e.rec)
	plainSrv := newUpstream(t, false, e.rec)
	res := map[string]string{}
	for _, h := range []string{"ro", "scoped", "plain"} {
		res[h+".example.test:443"] = tlsSrv.Addr()
		res[h+".example.test:80"] = plainSrv.Addr()
	}
	e.tp = startProxy(t, permitPolicy, testTokens(), res)
	return e
}

// auditLine returns the egress audit line for method and path, decoded.
func (e *permitEnv) auditLine(t *testing.T, method, path string) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, func() bool {
		for _, l := range strings.Split(e.tp.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "egress" && m["method"] == method && m["path"] == path {
				found = m
				return true
			}
		}
		return false
	})
	if found == nil {
		t.Fatalf("no audit line for %s %s in\n%s", method, path, e.tp.logs.String())
	}
	return found
}

// checkDenied asserts the denial's audit line and that the upstream saw
// nothing of it.
func (e *permitEnv) checkDenied(t *testing.T, method, path, reason string) {
	t.Helper()
	l := e.auditLine(t, method, path)
	if l["decision"] != decisionDeny || l["reason"] != reason || l["status"] != float64(403) {
		t.Errorf("audit line %v, want decision deny, reason %s, status 403", l, reason)
	}
	for _, r := range e.rec.Requests() {
		if r.Method == method && r.Path == path {
			t.Errorf("upstream received the denied %s %s", method, path)
		}
	}
}

func TestPermitMITM(t *testing.T) {
	e := newPermitEnv(t)
	c := e.tp.mitm(t, "ro.example.test:443", "ro.example.test")
	br := bufio.NewReader(c)
	resp := rawRequest(t, c, br, "GET /repos/o/r/issues HTTP/1.1\r\nHost: ro.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
	if _ = readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /repos/o/r/issues = %d, want 200", resp.StatusCode)
	}
	if got := e.rec.Last(t).Header.Get("Authorization"); got != "Bearer "+tokAPI {
		t.Errorf("upstream Authorization = %q, want the real token", got)
	}
	tests := []struct{ method, path, reason string }{
		{"POST", "/repos/o/r/issues", ReasonMethodNotAllowed},
		{"DELETE", "/repos/o/r", ReasonMethodNotAllowed},
		{"GET", "/repos/o/other", ReasonPathNotAllowed},
		{"GET", "/repos/o/r/../x", ReasonPathNotAllowed},
		{"GET", "/repos/o/r;x/y", ReasonPathNotAllowed},
	}
	for _, tt := range tests {
		resp := rawRequest(t, c, br, tt.method+" "+tt.path+" HTTP/1.1\r\nHost: ro.example.test\r\nAuthorization: Bearer "+phAPI+"\r\nContent-Length: 0\r\n\r\n")
		assertDeny(t, resp, http.StatusForbidden, tt.reason)
		e.checkDenied(t, tt.method, tt.path, tt.reason)
	}
	if n := len(e.rec.Requests()); n != 1 {
		t.Errorf("upstream received %d requests, want 1 (the permitted GET)", n)
	}
	assertNoSecrets(t, "logs", e.tp.logs.String())
}

// Over plain HTTP the same rules apply, on a routed (insecure_http) host
// and on a scoped-allow host.
func TestPermitPlainHTTP(t *testing.T) {
	e := newPermitEnv(t)
	cl := e.tp.client()
	do := func(method, url string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		return resp
	}
	for _, u := range []string{"http://ro.example.test/repos/o/r", "http://scoped.example.test/pub/a"} {
		resp := do("GET", u)
		if _ = readBody(t, resp); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", u, resp.StatusCode)
		}
	}
	tests := []struct{ method, host, path, reason string }{
		{"POST", "ro.example.test", "/repos/o/r", ReasonMethodNotAllowed},
		{"GET", "ro.example.test", "/elsewhere", ReasonPathNotAllowed},
		{"PUT", "scoped.example.test", "/pub/a", ReasonMethodNotAllowed},
		{"GET", "scoped.example.test", "/private", ReasonPathNotAllowed},
	}
	for _, tt := range tests {
		assertDeny(t, do(tt.method, "http://"+tt.host+tt.path), http.StatusForbidden, tt.reason)
		e.checkDenied(t, tt.method, tt.path, tt.reason)
	}
	if n := len(e.rec.Requests()); n != 2 {
		t.Errorf("upstream received %d requests, want 2", n)
	}
	assertNoSecrets(t, "logs", e.tp.logs.String())
}

// A host with only scoped allows is intercepted with the session CA (and
// gets no credential); a plain allowed host is still a blind tunnel.
func TestPermitScopedAllowIntercepted(t *testing.T) {
	e := newPermitEnv(t)
	c := e.tp.mitm(t, "scoped.example.test:443", "scoped.example.test")
	br := bufio.NewReader(c)
	resp := rawRequest(t, c, br, "GET /pub/x HTTP/1.1\r\nHost: scoped.example.test\r\n\r\n")
	if _ = readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /pub/x = %d, want 200", resp.StatusCode)
	}
	if got := e.rec.Last(t).Header.Get("Authorization"); got != "" {
		t.Errorf("upstream Authorization = %q, want none", got)
	}
	if l := e.auditLine(t, "GET", "/pub/x"); l["decision"] != decisionForward {
		t.Errorf("audit line %v, want decision forward", l)
	}
	resp = rawRequest(t, c, br, "POST /pub/x HTTP/1.1\r\nHost: scoped.example.test\r\nContent-Length: 2\r\n\r\nhi")
	assertDeny(t, resp, http.StatusForbidden, ReasonMethodNotAllowed)
	e.checkDenied(t, "POST", "/pub/x", ReasonMethodNotAllowed)

	// The plain host's TLS is the upstream's own: the session CA is not
	// offered, and a client trusting the upstream's root gets through.
	if _, err := e.tp.client().Get("https://plain.example.test/x"); err == nil {
		t.Error("GET https://plain.example.test with only the session CA trusted succeeded; want a blind tunnel")
	}
	resp, err := e.tp.tunnelClient().Post("https://plain.example.test/anything", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatalf("POST through the tunnel: %v", err)
	}
	if _ = readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("POST https://plain.example.test/anything = %d, want 200", resp.StatusCode)
	}
	if !eventually(t, func() bool { return strings.Contains(e.tp.logs.String(), `"decision":"tunnel"`) }) {
		t.Errorf("no tunnel audit line in\n%s", e.tp.logs.String())
	}
}
