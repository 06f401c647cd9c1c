package proxy

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// stageRequest is a proxy-form request as handleRequest receives it.
func stageRequest(t *testing.T, method, target, host string, header map[string]string) *http.Request {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", target, err)
	}
	req := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{}}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

// stagePolicy parses src or fails the test.
func stagePolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatalf("policy.Parse: %v", err)
	}
	return p
}

func TestRequestTarget(t *testing.T) {
	plain := &connState{mode: modePlain}
	mitm := &connState{mode: modeMITM, host: "a.test", port: 443, authority: "a.test:443"}
	tests := []struct {
		name       string
		st         *connState
		method     string
		url, host  string
		want       target
		wantReason string // "" for no refusal
		wantWhat   string
	}{
		{name: "plain http, default port, odd spelling", st: plain, method: "GET", url: "http://A.Test./p", host: "a.test:80",
			want: target{scheme: "http", host: "a.test", port: 80, dial: "a.test:80"}},
		{name: "plain https, explicit port", st: plain, method: "GET", url: "https://a.test:8443/x", host: "a.test:8443",
			want: target{scheme: "https", host: "a.test", port: 8443, dial: "a.test:8443"}},
		{name: "plain ipv6", st: plain, method: "GET", url: "http://[2001:DB8::1]/", host: "[2001:db8::1]",
			want: target{scheme: "http", host: "2001:db8::1", port: 80, dial: "[2001:db8::1]:80"}},
		{name: "plain ftp", st: plain, method: "GET", url: "ftp://a.test/", host: "a.test", wantReason: ReasonBadRequest, wantWhat: "GET"},
		{name: "plain relative", st: plain, method: "GET", url: "/p", host: "a.test", wantReason: ReasonBadRequest, wantWhat: "GET"},
		{name: "plain bad port", st: plain, method: "GET", url: "http://a.test:99999/", host: "a.test", wantReason: ReasonBadRequest, wantWhat: "GET"},
		{name: "plain Host header differs", st: plain, method: "POST", url: "http://a.test/p", host: "b.test",
			wantReason: ReasonBadRequest, wantWhat: "POST http://a.test:80"},
		{name: "plain Host header port differs", st: plain, method: "GET", url: "http://a.test/p", host: "a.test:8080",
			wantReason: ReasonBadRequest, wantWhat: "GET http://a.test:80"},
		{name: "mitm", st: mitm, method: "GET", url: "https://a.test/p", host: "a.test",
			want: target{scheme: "https", host: "a.test", port: 443, dial: "a.test:443"}},
		{name: "mitm odd spelling", st: mitm, method: "GET", url: "https://A.TEST:443/p", host: "a.test.",
			want: target{scheme: "https", host: "a.test", port: 443, dial: "a.test:443"}},
		{name: "mitm other URL host", st: mitm, method: "GET", url: "https://b.test/p", host: "a.test",
			want: target{host: "a.test", port: 443}, wantReason: ReasonHostMismatch, wantWhat: "GET https://b.test:443/p"},
		{name: "mitm other Host header", st: mitm, method: "GET", url: "https://a.test/p", host: "b.test",
			want: target{host: "a.test", port: 443}, wantReason: ReasonHostMismatch, wantWhat: "GET https://b.test:443/p"},
		{name: "mitm other port", st: mitm, method: "GET", url: "https://a.test:8443/p", host: "a.test",
			want: target{host: "a.test", port: 443}, wantReason: ReasonHostMismatch, wantWhat: "GET https://a.test:8443/p"},
		{name: "mitm invalid Host header", st: mitm, method: "GET", url: "https://a.test/p", host: "a b",
			want: target{host: "a.test", port: 443}, wantReason: ReasonHostMismatch, wantWhat: "GET https://(invalid host)/p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := stageRequest(t, tt.method, tt.url, tt.host, nil)
			beforeURL, beforeHost := req.URL.String(), req.Host
			got, d := requestTarget(req, tt.st)
			if got != tt.want {
				t.Errorf("target = %+v, want %+v", got, tt.want)
			}
			switch {
			case tt.wantReason == "" && d != nil:
				t.Errorf("refused: %s (%s)", d.reason, d.detail)
			case tt.wantReason != "" && d == nil:
				t.Errorf("not refused, want %s", tt.wantReason)
			case d != nil && (d.reason != tt.wantReason || d.what != tt.wantWhat):
				t.Errorf("refusal %s %q, want %s %q", d.reason, d.what, tt.wantReason, tt.wantWhat)
			}
			if req.URL.String() != beforeURL || req.Host != beforeHost {
				t.Errorf("request changed: %s %s", req.URL, req.Host)
			}
		})
	}
}

const stageDecidePolicy = `
slots:
  api: { placeholder: "sk-cork-00000000" }
routes:
  - host: api.test
    slot: api
  - host: plain.test:80
    slot: api
    insecure_http: true
  - host: ro.test
    slot: api
    methods: [GET]
allow:
  - open.test
  - { host: docs.test, path: /pub, methods: [GET] }
block:
  - host: bad.test
    reason: no bad
  - host: api.test
    path: /admin
    reason: no admin
`

func TestDecideRequest(t *testing.T) {
	pol := stagePolicy(t, stageDecidePolicy)
	ws := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}
	tests := []struct {
		name          string
		method        string
		url           string
		header        map[string]string
		opaque        bool
		wantReason    string
		wantDetail    string
		wantWebSocket bool
	}{
		{name: "route", method: "GET", url: "https://api.test/v1"},
		{name: "allowed", method: "POST", url: "https://open.test/x"},
		{name: "allowed clear text", method: "GET", url: "http://open.test/x"},
		{name: "insecure route", method: "GET", url: "http://plain.test/x"},
		{name: "blocked host", method: "GET", url: "https://bad.test/", wantReason: ReasonBlocked, wantDetail: "no bad"},
		{name: "blocked path", method: "GET", url: "https://api.test/Admin/users", wantReason: ReasonBlocked, wantDetail: "no admin"},
		{name: "not allowed", method: "GET", url: "https://evil.test/", wantReason: ReasonNotAllowed},
		{name: "route over clear text", method: "GET", url: "http://api.test:443/v1", wantReason: ReasonInsecureRoute},
		{name: "TRACE to a route", method: "TRACE", url: "https://api.test/", wantReason: ReasonBadRequest,
			wantDetail: "TRACE is not forwarded to a host that receives a credential: the answer would echo it"},
		{name: "track to a route", method: "track", url: "https://api.test/", wantReason: ReasonBadRequest,
			wantDetail: "TRACE is not forwarded to a host that receives a credential: the answer would echo it"},
		{name: "TRACE to an allowed host", method: "TRACE", url: "https://open.test/"},
		{name: "opaque", method: "GET", url: "https://api.test/", opaque: true, wantReason: ReasonBadRequest,
			wantDetail: "the request target must be an absolute path or URL"},
		{name: "websocket", method: "GET", url: "https://api.test/ws", header: ws, wantWebSocket: true},
		{name: "websocket by POST", method: "POST", url: "https://api.test/ws", header: ws, wantReason: ReasonUpgradeRefused},
		{name: "route method", method: "GET", url: "https://ro.test/x"},
		{name: "route method refused", method: "PUT", url: "https://ro.test/x", wantReason: ReasonMethodNotAllowed},
		{name: "scoped allow", method: "GET", url: "https://docs.test/pub/a?q=1"},
		{name: "scoped allow clear text", method: "GET", url: "http://docs.test/pub/a"},
		{name: "scoped allow method", method: "POST", url: "http://docs.test/pub/a", wantReason: ReasonMethodNotAllowed},
		{name: "scoped allow path", method: "GET", url: "https://docs.test/pub/../priv", wantReason: ReasonPathNotAllowed},
		{name: "websocket outside the path", method: "GET", url: "https://docs.test/ws", header: ws, wantReason: ReasonPathNotAllowed},
		{name: "h2c", method: "GET", url: "https://open.test/", header: map[string]string{"Connection": "Upgrade", "Upgrade": "h2c"},
			wantReason: ReasonUpgradeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := stageRequest(t, tt.method, tt.url, "", tt.header)
			if tt.opaque {
				req.URL.Opaque = "x"
			}
			host, port, err := hostPortOf(req.URL.Host, map[string]int{"http": 80, "https": 443}[req.URL.Scheme])
			if err != nil {
				t.Fatal(err)
			}
			what := requestWhat(req.Method, req.URL.Scheme, joinHostPort(host, port), req.URL)
			v, d := decideRequest(req, req.URL.Scheme, pol.Lookup(host, port), what, nil)
			switch {
			case tt.wantReason == "" && d != nil:
				t.Fatalf("refused: %s (%s)", d.reason, d.detail)
			case tt.wantReason != "" && d == nil:
				t.Fatalf("not refused, want %s", tt.wantReason)
			case d != nil && (d.reason != tt.wantReason || d.detail != tt.wantDetail):
				t.Errorf("refusal %s %q, want %s %q", d.reason, d.detail, tt.wantReason, tt.wantDetail)
			}
			if v.websocket != tt.wantWebSocket {
				t.Errorf("websocket = %v, want %v", v.websocket, tt.wantWebSocket)
			}
		})
	}
}

const stageInjectPolicy = `
slots:
  a: { placeholder: "ph-a-0000000000" }
  b: { placeholder: "ph-b-0000000000" }
routes:
  - host: api.test
    slot: a
  - host: api.test
    slot: b
    header: X-B
    scheme: raw
  - host: x.api.test
    slot: a
  - host: "*.api.test"
    slot: a
    header: X-A
    scheme: raw
  - host: add.test
    slot: b
    header: X-B
    scheme: raw
    add_if_missing: true
`

func TestInjectRoutes(t *testing.T) {
	pol := stagePolicy(t, stageInjectPolicy)
	both := resolve.Tokens{"a": resolve.NewSecret("real-a"), "b": resolve.NewSecret("real-b")}
	onlyB := resolve.Tokens{"b": resolve.NewSecret("real-b")}
	tests := []struct {
		name         string
		host         string
		header       map[string]string
		toks         resolve.Tokens
		wantInjected string
		wantMissing  string
		wantHeader   map[string]string
	}{
		{name: "two slots", host: "api.test", toks: both,
			header:       map[string]string{"Authorization": "Bearer ph-a-0000000000", "X-B": "ph-b-0000000000"},
			wantInjected: "a,b", wantHeader: map[string]string{"Authorization": "Bearer real-a", "X-B": "real-b"}},
		{name: "one slot used", host: "api.test", toks: both,
			header:       map[string]string{"X-B": "ph-b-0000000000"},
			wantInjected: "b", wantHeader: map[string]string{"Authorization": "", "X-B": "real-b"}},
		{name: "no placeholder", host: "api.test", toks: both,
			header:     map[string]string{"Authorization": "Bearer other"},
			wantHeader: map[string]string{"Authorization": "Bearer other"}},
		{name: "one slot twice", host: "x.api.test", toks: both,
			header:       map[string]string{"Authorization": "Bearer ph-a-0000000000", "X-A": "ph-a-0000000000"},
			wantInjected: "a", wantHeader: map[string]string{"Authorization": "Bearer real-a", "X-A": "real-a"}},
		{name: "missing token", host: "api.test", toks: onlyB,
			header:      map[string]string{"Authorization": "Bearer ph-a-0000000000", "X-B": "ph-b-0000000000"},
			wantMissing: "a", wantHeader: map[string]string{"Authorization": "Bearer ph-a-0000000000", "X-B": "ph-b-0000000000"}},
		{name: "missing after an injection", host: "api.test", toks: resolve.Tokens{"a": resolve.NewSecret("real-a")},
			header:       map[string]string{"Authorization": "Bearer ph-a-0000000000", "X-B": "ph-b-0000000000"},
			wantInjected: "a", wantMissing: "b"},
		{name: "zero token is missing", host: "api.test", toks: resolve.Tokens{"a": {}},
			header:      map[string]string{"Authorization": "Bearer ph-a-0000000000"},
			wantMissing: "a"},
		{name: "add if missing", host: "add.test", toks: both,
			wantInjected: "b", wantHeader: map[string]string{"X-B": "real-b"}},
		{name: "no routes", host: "open.test", toks: both,
			header:     map[string]string{"Authorization": "Bearer ph-a-0000000000"},
			wantHeader: map[string]string{"Authorization": "Bearer ph-a-0000000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			injected, missing := injectRoutes(h, pol.Lookup(tt.host, 443).Routes, pol.Slots, tt.toks)
			if injected != tt.wantInjected || missing != tt.wantMissing {
				t.Errorf("injectRoutes = %q, %q; want %q, %q", injected, missing, tt.wantInjected, tt.wantMissing)
			}
			for k, want := range tt.wantHeader {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}
