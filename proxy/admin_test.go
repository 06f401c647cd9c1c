package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadyAndAdmin(t *testing.T) {
	e := newStdEnv(t)
	e.tp.SetTokens(resolve.Tokens{"gh": resolve.NewSecret(tokGH)})
	err := e.tp.Ready()
	if err == nil || !strings.Contains(err.Error(), "api") || !strings.Contains(err.Error(), "other") || strings.Contains(err.Error(), "gh") {
		t.Errorf("Ready() = %v, want the missing slots api and other only", err)
	}
	admin := e.tp.AdminHandler()
	if code, body := get(t, admin, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, admin, "/readyz"); code != 503 || !strings.Contains(body, "api") {
		t.Errorf("/readyz = %d %q, want 503 naming slot api", code, body)
	}
	e.tp.SetTokens(testTokens())
	if err := e.tp.Ready(); err != nil {
		t.Errorf("Ready() = %v after SetTokens", err)
	}
	if code, body := get(t, admin, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q after SetTokens", code, body)
	}
	// Some traffic, then the metrics.
	req, _ := http.NewRequest("GET", "https://api.example.test/m", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	_ = readBody(t, do(t, e.tp.client(), req))
	resp, _, _ := e.tp.connect(t, "evil.test:443")
	_ = readBody(t, resp)
	var code int
	var metrics string
	eventually(t, func() bool {
		code, metrics = get(t, admin, "/metrics")
		return strings.Contains(metrics, `cork_requests_total{decision="inject",slot="api"} 1`)
	})
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`cork_requests_total{decision="inject",slot="api"} 1`,
		`cork_denials_total{reason="not_allowed"} 1`,
		`cork_bytes_total{decision="inject",direction="down",slot="api"} 24`,
		`cork_upstream_latency_seconds_count{decision="inject"} 1`,
		`cork_active_tunnels{mode="mitm"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "cork_"))
		}
	}
	assertNoSecrets(t, "/metrics", metrics)
	if strings.Contains(metrics, "evil.test") || strings.Contains(metrics, "/m") && strings.Contains(metrics, `path=`) {
		t.Errorf("/metrics carries hosts or paths")
	}
	if code, _ := get(t, admin, "/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
}

// Metrics go to a caller's registry when given one; two proxies on one
// registry are a clear error, not a panic.
func TestMetricsRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	pol, _ := policy.Parse([]byte(testPolicy))
	p, err := New(Config{Policy: pol, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := New(Config{Policy: pol, Registerer: reg}); err == nil {
		t.Error("second proxy on one registry: no error")
	}
	if err := reg.Register(p.metrics.requests); err == nil {
		t.Error("metrics not registered on the given registry")
	}
}

// SetTokens while serving: every request carries one of the two token
// generations, never a mix, never a placeholder (run with -race).
func TestSetTokensWhileServing(t *testing.T) {
	const tok2 = "REAL-api-token-second-gen-91a"
	var bad atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "Bearer "+tokAPI && a != "Bearer "+tok2 {
			bad.Add(1)
		}
	})
	up := newUpstream(t, true, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			toks := testTokens()
			if i%2 == 1 {
				toks["api"] = resolve.NewSecret(tok2)
			}
			tp.SetTokens(toks)
		}
	}()
	var cwg sync.WaitGroup
	for range 4 {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			cl := tp.client()
			for range 25 {
				req, _ := http.NewRequest("GET", "https://api.example.test/r", nil)
				req.Header.Set("Authorization", "Bearer "+phAPI)
				resp, err := cl.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d requests carried a wrong credential", n)
	}
}

func TestSetPolicy(t *testing.T) {
	e := newStdEnv(t)
	// Narrower policy: api.example.test is no longer routed, only allowed.
	narrow, err := policy.Parse([]byte(`
slots: { gh: { placeholder: "` + phGH + `" } }
routes: [ { host: gh.example.test, slot: gh, scheme: basic } ]
allow: [ api.example.test ]
`))
	if err != nil {
		t.Fatal(err)
	}
	// An intercepted connection opened before the swap...
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	if err := e.tp.SetPolicy(narrow); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
	// ...applies the new policy to its next request: no injection, and the
	// old placeholder is now a leak (its slot is gone, so it is just bytes).
	resp := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: api.example.test\r\nAuthorization: Bearer sk-own\r\n\r\n")
	_ = readBody(t, resp)
	if got := e.api.Last(t).Header.Get("Authorization"); got != "Bearer sk-own" {
		t.Errorf("after SetPolicy: Authorization %q, want untouched", got)
	}
	// New CONNECTs follow the new policy: a blind tunnel now.
	resp, _, _ = e.tp.connect(t, "other.example.test:443")
	assertDeny(t, resp, 403, ReasonNotAllowed)

	// A policy intercepting a host the session CA may not sign is refused.
	wider, _ := policy.Parse([]byte(`
slots: { x: { placeholder: "PH-x-000000000000" } }
routes: [ { host: new.example.org, slot: x } ]
`))
	if err := e.tp.SetPolicy(wider); err == nil || !strings.Contains(err.Error(), "new.example.org") {
		t.Errorf("SetPolicy(wider) = %v, want an error naming new.example.org", err)
	}
	if err := e.tp.SetPolicy(nil); err == nil {
		t.Error("SetPolicy(nil): no error")
	}
}

func TestConfigValidate(t *testing.T) {
	pol, _ := policy.Parse([]byte(testPolicy))
	err := Config{DialTimeout: -1, Resolve: map[string]string{"nohost": "1.2.3.4:1", "a.test:443": "x"}}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"policy: required", "dial timeout: negative", `resolve "nohost"`, `resolve "a.test:443": target "x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, want it to mention %q", err, want)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New(Config{}) succeeded")
	}
	if err := (Config{Policy: pol}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

// docs/SECURITY.md, invariant 4: no token value in logs, %v/%#v, JSON,
// errors, responses or metrics — after traffic over every path, with debug
// logging on.
func TestNoTokenLeaks(t *testing.T) {
	e := newStdEnv(t)
	cl := e.tp.client()
	send := func(method, u string, hdr ...string) {
		req, _ := http.NewRequest(method, u, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assertNoSecrets(t, "response body of "+u, string(body))
		for k, v := range resp.Header {
			assertNoSecrets(t, "response header "+k, strings.Join(v, " "))
		}
	}
	send("GET", "https://api.example.test/a", "Authorization", "Bearer "+phAPI)
	send("GET", "https://gh.example.test/a", "Authorization", "Basic "+b64("x:"+phGH))
	send("GET", "https://add.example.test/a")
	send("GET", "https://api.example.test/a", "Authorization", "Bearer "+phAPI, "X-Leak", phAPI)
	send("GET", "https://other.example.test/a", "Authorization", "Bearer "+phAPI)
	send("GET", "http://allowed.example.test/a?q="+phGH)
	send("POST", "https://api.example.test/oauth/token", "Authorization", "Bearer "+phAPI)
	resp, _, _ := e.tp.connect(t, "down.example.test:443")
	b, _ := io.ReadAll(resp.Body)
	assertNoSecrets(t, "CONNECT failure body", string(b))

	if !eventually(t, func() bool { return strings.Contains(e.tp.logs.String(), `"decision":"inject"`) }) {
		t.Error("scenario did not inject: the log check below proves nothing")
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		assertNoSecrets(t, "fmt "+f+" of Proxy", fmt.Sprintf(f, e.tp.Proxy))
	}
	lg := zerolog.Nop()
	pol, _ := policy.Parse([]byte(testPolicy))
	cfg := Config{Policy: pol, Tokens: testTokens(), Logger: &lg}
	for _, f := range []string{"%v", "%+v", "%#v"} {
		assertNoSecrets(t, "fmt "+f+" of Config", fmt.Sprintf(f, cfg))
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("json.Marshal(Config): %v", err)
	}
	assertNoSecrets(t, "JSON of Config", string(j))
	_, metrics := get(t, e.tp.AdminHandler(), "/metrics")
	assertNoSecrets(t, "metrics", metrics)
	// Ready's error, with a slot missing so that there is one.
	toks := testTokens()
	delete(toks, "gh")
	e.tp.SetTokens(toks)
	if err := e.tp.Ready(); err == nil {
		t.Error("Ready with slot gh missing = nil")
	} else {
		assertNoSecrets(t, "Ready error", err.Error())
	}
	// Last: every line, including those written when bodies and tunnels
	// closed, is in.
	_ = e.tp.Close()
	assertNoSecrets(t, "logs", e.tp.logs.String())
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
