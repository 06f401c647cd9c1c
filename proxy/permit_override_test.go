package proxy

import (
	"bufio"
	"net/http"
	"testing"
)

// A method-override header or _method query parameter (honoured by Rack,
// Google APIs, Express's method-override, Symfony, ...) names the method
// the upstream acts on: a request whose override the host's method rules
// refuse is refused, the permitted method on the request line
// notwithstanding; an override the rules permit passes.
func TestPermitMethodOverride(t *testing.T) {
	e := newPermitEnv(t)
	c := e.tp.mitm(t, "ro.example.test:443", "ro.example.test")
	br := bufio.NewReader(c)
	for _, tt := range []struct{ path, header string }{
		{"/repos/o/r/a", "X-HTTP-Method-Override: DELETE\r\n"},
		{"/repos/o/r/b", "x-http-method-override: delete\r\n"},
		{"/repos/o/r/c", "X-HTTP-Method: PUT\r\n"},
		{"/repos/o/r/d", "X-Method-Override: PATCH\r\n"},
		{"/repos/o/r/e", "X-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: DELETE\r\n"},
		{"/repos/o/r/f?_method=DELETE", ""},
		{"/repos/o/r/g?x=1&_method=delete", ""},
	} {
		resp := rawRequest(t, c, br, "GET "+tt.path+" HTTP/1.1\r\nHost: ro.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n"+tt.header+"\r\n")
		assertDeny(t, resp, http.StatusForbidden, ReasonMethodNotAllowed)
	}
	for _, r := range e.rec.Requests() {
		t.Errorf("upstream received %s %s with a refused method override", r.Method, r.Path)
	}
	resp := rawRequest(t, c, br, "GET /repos/o/r/ok?_method=HEAD HTTP/1.1\r\nHost: ro.example.test\r\nX-HTTP-Method-Override: HEAD\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
	if _ = readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("GET with a permitted override (HEAD) = %d, want 200", resp.StatusCode)
	}
	// A host without method rules is not concerned.
	c2 := e.tp.mitm(t, "scoped.example.test:443", "scoped.example.test")
	br2 := bufio.NewReader(c2)
	resp = rawRequest(t, c2, br2, "GET /pub/x HTTP/1.1\r\nHost: scoped.example.test\r\nX-HTTP-Method-Override: GET\r\n\r\n")
	if _ = readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /pub/x with override GET = %d, want 200", resp.StatusCode)
	}
	assertNoSecrets(t, "logs", e.tp.logs.String())
}
