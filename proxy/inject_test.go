package proxy

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestInjectRoute(t *testing.T) {
	const ph, tok = "PH-000000000000", "TOKEN-secret"
	sec := resolve.NewSecret(tok)
	bearer := &policy.Route{Header: "Authorization", Scheme: policy.SchemeBearer}
	for _, tc := range []struct {
		name  string
		route *policy.Route
		in    http.Header
		want  http.Header
		res   injectResult
	}{
		{"bearer swap", bearer,
			http.Header{"Authorization": {"Bearer " + ph}}, http.Header{"Authorization": {"Bearer " + tok}}, injectDone},
		{"bearer lower-case key merged", bearer,
			http.Header{"authorization": {"Bearer " + ph}}, http.Header{"Authorization": {"Bearer " + tok}}, injectDone},
		{"bearer both spellings, none duplicated", bearer,
			http.Header{"authorization": {"Bearer " + ph}, "AUTHORIZATION": {"Bearer " + ph}},
			http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, injectDone},
		{"no placeholder: unchanged", bearer,
			http.Header{"Authorization": {"Bearer sk-user-own"}}, http.Header{"Authorization": {"Bearer sk-user-own"}}, injectNone},
		{"absent: not added", bearer, http.Header{}, http.Header{}, injectNone},
		{"absent: add_if_missing", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBearer, AddIfMissing: true},
			http.Header{}, http.Header{"Authorization": {"Bearer " + tok}}, injectDone},
		{"present without placeholder: add_if_missing does not override", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBearer, AddIfMissing: true},
			http.Header{"Authorization": {"Bearer mine"}}, http.Header{"Authorization": {"Bearer mine"}}, injectNone},
		{"token scheme", &policy.Route{Header: "Authorization", Scheme: policy.SchemeToken},
			http.Header{"Authorization": {"token " + ph}}, http.Header{"Authorization": {"token " + tok}}, injectDone},
		{"token add", &policy.Route{Header: "Authorization", Scheme: policy.SchemeToken, AddIfMissing: true},
			http.Header{}, http.Header{"Authorization": {"token " + tok}}, injectDone},
		{"raw custom header", &policy.Route{Header: "X-Api-Key", Scheme: policy.SchemeRaw},
			http.Header{"X-Api-Key": {ph}}, http.Header{"X-Api-Key": {tok}}, injectDone},
		{"raw lower-case custom header", &policy.Route{Header: "X-Api-Key", Scheme: policy.SchemeRaw},
			http.Header{"x-api-key": {ph}}, http.Header{"X-Api-Key": {tok}}, injectDone},
		{"raw add", &policy.Route{Header: "X-Api-Key", Scheme: policy.SchemeRaw, AddIfMissing: true},
			http.Header{}, http.Header{"X-Api-Key": {tok}}, injectDone},
		{"basic password", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic, BasicUser: "x-access-token"},
			http.Header{"Authorization": {"Basic " + b64("someone:"+ph)}}, http.Header{"Authorization": {"Basic " + b64("someone:"+tok)}}, injectDone},
		{"basic lower-case prefix", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic},
			http.Header{"Authorization": {"basic " + b64("u:"+ph)}}, http.Header{"Authorization": {"Basic " + b64("u:"+tok)}}, injectDone},
		{"basic user is placeholder", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic},
			http.Header{"Authorization": {"Basic " + b64(ph+":x-oauth-basic")}}, http.Header{"Authorization": {"Basic " + b64(tok+":x-oauth-basic")}}, injectDone},
		{"basic unpadded", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic},
			http.Header{"Authorization": {"Basic " + strings.TrimRight(b64("ab:"+ph), "=")}}, http.Header{"Authorization": {"Basic " + b64("ab:"+tok)}}, injectDone},
		{"basic other password: unchanged", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic},
			http.Header{"Authorization": {"Basic " + b64("u:pw")}}, http.Header{"Authorization": {"Basic " + b64("u:pw")}}, injectNone},
		{"basic route, token value: swapped in place", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic, BasicUser: "x-access-token"},
			http.Header{"Authorization": {"token " + ph}}, http.Header{"Authorization": {"token " + tok}}, injectDone},
		{"basic route, bearer value: swapped in place", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic},
			http.Header{"authorization": {"Bearer " + ph}}, http.Header{"Authorization": {"Bearer " + tok}}, injectDone},
		{"basic route, Basic holding more than the placeholder: unchanged", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic},
			http.Header{"Authorization": {"Basic " + b64("u:"+ph+"x")}}, http.Header{"Authorization": {"Basic " + b64("u:"+ph+"x")}}, injectNone},
		{"basic add", &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic, BasicUser: "x-access-token", AddIfMissing: true},
			http.Header{}, http.Header{"Authorization": {"Basic " + b64("x-access-token:"+tok)}}, injectDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			if res := injectRoute(h, tc.route, ph, sec, true); res != tc.res {
				t.Errorf("injectRoute = %d, want %d", res, tc.res)
			}
			if len(h) != len(tc.want) {
				t.Errorf("headers = %v keys, want %v", len(h), len(tc.want))
			}
			for k, v := range tc.want {
				if strings.Join(h[k], "|") != strings.Join(v, "|") {
					t.Errorf("%s = %q, want %q", k, h[k], v)
				}
			}
		})
	}
	t.Run("basic route, token value, no token", func(t *testing.T) {
		h := http.Header{"Authorization": {"token " + ph}}
		rt := &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic}
		if res := injectRoute(h, rt, ph, resolve.Secret{}, false); res != injectNoToken {
			t.Errorf("injectRoute = %d, want injectNoToken", res)
		}
	})
	t.Run("no token", func(t *testing.T) {
		h := http.Header{"Authorization": {"Bearer " + ph}}
		if res := injectRoute(h, bearer, ph, resolve.Secret{}, false); res != injectNoToken {
			t.Errorf("injectRoute = %d, want injectNoToken", res)
		}
		if h.Get("Authorization") != "Bearer "+ph {
			t.Errorf("header changed without a token")
		}
	})
}

// The wire-level checks: through the proxy, with raw bytes.
func TestInjectThroughMITM(t *testing.T) {
	e := newStdEnv(t)
	for _, tc := range []struct {
		name, target, headers string
		check                 func(t *testing.T, h http.Header)
	}{
		{"lower-case authorization", "api.example.test", "authorization: Bearer " + phAPI + "\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+tokAPI {
				t.Errorf("Authorization = %d values, want exactly the token", len(v))
			}
		}},
		{"upper-case AUTHORIZATION", "api.example.test", "AUTHORIZATION: Bearer " + phAPI + "\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+tokAPI {
				t.Errorf("Authorization = %d values, want exactly the token", len(v))
			}
		}},
		{"own credential unchanged", "api.example.test", "Authorization: Bearer sk-mine\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "Bearer sk-mine" {
				t.Errorf("Authorization = %q, want unchanged", v)
			}
		}},
		{"no header, no add", "api.example.test", "", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 0 {
				t.Errorf("Authorization added without add_if_missing")
			}
		}},
		{"add_if_missing", "add.example.test", "", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+tokAPI {
				t.Errorf("Authorization not added")
			}
		}},
		{"basic (git)", "gh.example.test", "Authorization: Basic " + b64("x-access-token:"+phGH) + "\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "Basic "+b64("x-access-token:"+tokGH) {
				t.Errorf("Basic not swapped")
			}
		}},
		{"basic route, gh's token value (GitHub Enterprise: API and git on one host)", "gh.example.test", "Authorization: token " + phGH + "\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "token "+tokGH {
				t.Errorf("token not swapped on a basic route")
			}
		}},
		{"token scheme", "tok.example.test", "Authorization: token " + phGH + "\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("Authorization"); len(v) != 1 || v[0] != "token "+tokGH {
				t.Errorf("token not swapped")
			}
		}},
		{"raw custom header", "raw.example.test", "x-api-key: " + phAPI + "\r\n", func(t *testing.T, h http.Header) {
			if v := h.Values("X-Api-Key"); len(v) != 1 || v[0] != tokAPI {
				t.Errorf("X-Api-Key not swapped")
			}
		}},
		{"proxy-authorization stripped", "api.example.test", "Proxy-Authorization: Basic " + b64("u:p") + "\r\n", func(t *testing.T, h http.Header) {
			if h.Get("Proxy-Authorization") != "" {
				t.Errorf("Proxy-Authorization forwarded")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.tp.mitm(t, tc.target+":443", tc.target)
			resp := rawRequest(t, c, bufio.NewReader(c), "GET /v1/x HTTP/1.1\r\nHost: "+tc.target+"\r\n"+tc.headers+"\r\n")
			if body := readBody(t, resp); resp.StatusCode != 200 {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			tc.check(t, e.api.Last(t).Header)
		})
	}
	if !eventually(t, func() bool {
		logs := e.tp.logs.String()
		return strings.Contains(logs, `"decision":"inject"`) && strings.Contains(logs, `"slot":"gh"`)
	}) {
		t.Errorf("audit log lacks inject lines:\n%s", e.tp.logs.String())
	}
}

func TestTokenUnavailable(t *testing.T) {
	e := newStdEnv(t)
	e.tp.SetTokens(resolve.Tokens{"gh": resolve.NewSecret(tokGH)})
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	resp := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
	body := assertDeny(t, resp, http.StatusServiceUnavailable, ReasonTokenUnavailable)
	if !strings.Contains(body, `"api"`) {
		t.Errorf("body %q does not name the slot", body)
	}
	if n := len(e.api.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests (with the placeholder), want 0", n)
	}
}

// docs/DESIGN.md, decision 3: the tripwire.
func TestTripwire(t *testing.T) {
	e := newStdEnv(t)
	cases := []struct {
		name, slot string
		send       func(t *testing.T) *http.Response
	}{
		{"plain HTTP custom header to allowed host", "api", func(t *testing.T) *http.Response {
			req, _ := http.NewRequest("GET", "http://allowed.example.test/x", nil)
			req.Header.Set("X-Debug", "see "+phAPI)
			return do(t, e.tp.client(), req)
		}},
		{"plain HTTP query to allowed host", "gh", func(t *testing.T) *http.Response {
			req, _ := http.NewRequest("GET", "http://allowed.example.test/x?key="+phGH, nil)
			return do(t, e.tp.client(), req)
		}},
		{"plain HTTP path to allowed host", "gh", func(t *testing.T) *http.Response {
			req, _ := http.NewRequest("GET", "http://allowed.example.test/"+phGH+"/x", nil)
			return do(t, e.tp.client(), req)
		}},
		{"plain HTTP Basic to allowed host", "gh", func(t *testing.T) *http.Response {
			req, _ := http.NewRequest("GET", "http://allowed.example.test/x", nil)
			req.SetBasicAuth("x-access-token", phGH)
			return do(t, e.tp.client(), req)
		}},
		{"plain HTTP userinfo to allowed host", "gh", func(t *testing.T) *http.Response {
			c, br := dialProxy(t, e.tp)
			return rawRequest(t, c, br, "GET http://u:"+phGH+"@allowed.example.test/ HTTP/1.1\r\nHost: allowed.example.test\r\n\r\n")
		}},
		{"MITM other routed host's Authorization", "api", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "other.example.test:443", "other.example.test")
			return rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: other.example.test\r\nAuthorization: Bearer "+phAPI+"\r\n\r\n")
		}},
		{"MITM bound host, placeholder in another header", "api", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			return rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer "+phAPI+"\r\nX-Echo: "+phAPI+"\r\n\r\n")
		}},
		{"MITM bound host, placeholder in query", "api", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			return rawRequest(t, c, bufio.NewReader(c), "GET /?t="+phAPI+" HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		}},
		{"MITM bound host, percent-encoded query", "api", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			enc := strings.ReplaceAll(phAPI, "-", "%2D")
			return rawRequest(t, c, bufio.NewReader(c), "GET /?t="+enc+" HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		}},
		{"MITM Basic placeholder to a bearer route of another slot", "gh", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			return rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: api.example.test\r\nX-Auth: Basic "+b64("u:"+phGH)+"\r\n\r\n")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := assertDeny(t, tc.send(t), 403, ReasonPlaceholderLeak)
			if !strings.Contains(body, `"`+tc.slot+`"`) {
				t.Errorf("body %q does not name slot %q", body, tc.slot)
			}
		})
	}
	if n := len(e.b.Requests()); n != 0 {
		t.Errorf("unbound upstream saw %d requests, want 0", n)
	}
	if n := len(e.api.Requests()); n != 0 {
		t.Errorf("routed upstream saw %d requests, want 0", n)
	}
	var warns int
	for _, l := range strings.Split(e.tp.logs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, `"reason":"placeholder_leak"`) {
			warns++
			if strings.Contains(l, phAPI) || strings.Contains(l, phGH) {
				t.Errorf("warn line carries a placeholder value: %s", l)
			}
		}
	}
	if warns != len(cases) {
		t.Errorf("%d warn lines for placeholder_leak, want %d", warns, len(cases))
	}
}

// Plain HTTP: allowed forwarded, routed denied unless insecure_http.
func TestPlainHTTP(t *testing.T) {
	e := newStdEnv(t)
	cl := e.tp.client()
	resp, err := cl.Get("http://allowed.example.test/hello")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "ok from allowed.example.test" {
		t.Errorf("allowed: %d %q", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", "http://api.example.test/v1", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	assertDeny(t, do(t, cl, req), 403, ReasonInsecureRoute)

	req, _ = http.NewRequest("GET", "http://insecure.example.test/v1", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp = do(t, cl, req)
	if body := readBody(t, resp); resp.StatusCode != 200 {
		t.Errorf("insecure_http route: %d %q", resp.StatusCode, body)
	}
	if got := e.b.Last(t).Header.Get("Authorization"); got != "Bearer "+tokAPI {
		t.Errorf("insecure_http route: token not injected")
	}
	resp, err = cl.Get("http://evil.test/")
	if err != nil {
		t.Fatal(err)
	}
	assertDeny(t, resp, 403, ReasonNotAllowed)
	resp, err = cl.Get("http://blocked.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	assertDeny(t, resp, 403, ReasonBlocked)
	// Origin-form requests to the proxy port are not proxy requests.
	resp, err = http.Get(e.tp.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	assertDeny(t, resp, 400, ReasonBadRequest)
}

func do(t *testing.T, c *http.Client, req *http.Request) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

func dialProxy(t *testing.T, tp *testProxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func BenchmarkInjectBearer(b *testing.B) {
	rt := &policy.Route{Header: "Authorization", Scheme: policy.SchemeBearer}
	sec := resolve.NewSecret(tokAPI)
	h := http.Header{"Authorization": {""}, "Content-Type": {"application/json"}, "User-Agent": {"codex"}, "Accept": {"text/event-stream"}}
	b.ReportAllocs()
	for b.Loop() {
		h["Authorization"][0] = "Bearer " + phAPI
		if injectRoute(h, rt, phAPI, sec, true) != injectDone {
			b.Fatal("not injected")
		}
	}
}

func BenchmarkInjectBasic(b *testing.B) {
	rt := &policy.Route{Header: "Authorization", Scheme: policy.SchemeBasic, BasicUser: "x-access-token"}
	sec := resolve.NewSecret(tokGH)
	in := "Basic " + b64("x-access-token:"+phGH)
	h := http.Header{"Authorization": {""}, "User-Agent": {"git/2.45"}, "Accept": {"*/*"}}
	b.ReportAllocs()
	for b.Loop() {
		h["Authorization"][0] = in
		if injectRoute(h, rt, phGH, sec, true) != injectDone {
			b.Fatal("not injected")
		}
	}
}

// FuzzInjectRoute: whatever the header, a token is only ever put where
// the route says, and a placeholder-free header is never changed.
func FuzzInjectRoute(f *testing.F) {
	const ph = "PH-fuzz-000000000"
	for _, s := range []string{"Bearer " + ph, "Basic " + b64("u:"+ph), "basic " + b64(ph+":"), "Basic !!!", "token " + ph + ph, "", "Bearer x"} {
		f.Add(s, uint8(0), false)
		f.Add(s, uint8(3), true)
	}
	schemes := []policy.Scheme{policy.SchemeBearer, policy.SchemeToken, policy.SchemeBasic, policy.SchemeRaw}
	f.Fuzz(func(t *testing.T, v string, scheme uint8, add bool) {
		rt := &policy.Route{Header: "Authorization", Scheme: schemes[int(scheme)%len(schemes)], AddIfMissing: add, BasicUser: "u"}
		h := http.Header{"Authorization": {v}, "X-Other": {v}}
		res := injectRoute(h, rt, ph, resolve.NewSecret(tokAPI), true)
		if h.Get("X-Other") != v {
			t.Fatalf("another header changed")
		}
		hasPH := strings.Contains(v, ph)
		if d, ok := decodeBasic(v); ok && strings.Contains(d, ph) {
			hasPH = true
		}
		if !hasPH && res != injectNone {
			t.Fatalf("header without placeholder changed: %d", res)
		}
		if res == injectNone && h.Get("Authorization") != v {
			t.Fatalf("injectNone but header changed")
		}
	})
}
