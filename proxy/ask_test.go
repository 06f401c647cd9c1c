package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/upstreamtest"
)

// askPolicy: a routed host limited to GET, and one allowed host.
const askPolicy = `
slots:
  api: { placeholder: "` + phAPI + `" }
routes:
  - host: ro.example.test
    slot: api
    methods: [GET]
allow:
  - b.example.test
`

// asker is a Config.Unlisted that hands each Question to the test and
// waits for its Verdict (or ctx).
type asker struct {
	q    chan Question
	v    chan Verdict
	done chan error // the ctx error when the hook returned by ctx
}

func newAsker() *asker {
	return &asker{q: make(chan Question, 8), v: make(chan Verdict, 8), done: make(chan error, 8)}
}

func (a *asker) unlisted(ctx context.Context, q Question) Verdict {
	a.q <- q
	select {
	case v := <-a.v:
		return v
	case <-ctx.Done():
		a.done <- ctx.Err()
		return VerdictAllow // too late: the proxy must refuse anyway
	}
}

func (a *asker) question(t *testing.T) Question {
	t.Helper()
	select {
	case q := <-a.q:
		return q
	case <-time.After(5 * time.Second):
		t.Fatal("Unlisted was not asked")
	}
	return Question{}
}

type askEnv struct {
	tp  *testProxy
	rec *upstreamtest.Recorder
	a   *asker
}

// newAskEnv serves askPolicy with an asker; new.example.test and the
// policy's hosts resolve to the fake upstreams.
func newAskEnv(t *testing.T, mods ...func(*Config)) *askEnv {
	t.Helper()
	e := &askEnv{rec: &upstreamtest.Recorder{}, a: newAsker()}
	tlsSrv := newUpstream(t, true, e.rec)
	plainSrv := newUpstream(t, false, e.rec)
	res := map[string]string{}
	for _, h := range []string{"ro", "b", "new"} {
		res[h+".example.test:443"] = tlsSrv.Addr()
		res[h+".example.test:80"] = plainSrv.Addr()
	}
	mods = append([]func(*Config){func(c *Config) { c.Unlisted = e.a.unlisted }}, mods...)
	e.tp = startProxy(t, askPolicy, testTokens(), res, mods...)
	return e
}

// egressLine waits for the egress audit line for method ("" for a
// tunnel's closing line) and host and returns it decoded.
func egressLine(t *testing.T, tp *testProxy, method, host string) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, func() bool {
		for _, l := range strings.Split(tp.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "egress" && m["host"] == host && (m["method"] == method || method == "" && m["method"] == nil) {
				found = m
				return true
			}
		}
		return false
	})
	if found == nil {
		t.Fatalf("no egress line for %s %s in %s", method, host, tp.logs.String())
	}
	return found
}

func TestUnlistedConnectHeldThenAllowed(t *testing.T) {
	e := newAskEnv(t)
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := e.tp.tunnelClient().Get("https://new.example.test/x")
		got <- result{resp, err}
	}()
	q := e.a.question(t)
	want := Question{Host: "new.example.test", Port: 443, Method: http.MethodConnect, Reason: ReasonNotAllowed}
	if q != want {
		t.Errorf("Unlisted(%+v), want %+v", q, want)
	}
	select {
	case r := <-got:
		t.Fatalf("request finished before the answer: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	e.a.v <- VerdictAllow
	r := <-got
	if r.err != nil {
		t.Fatalf("GET through an allowed tunnel: %v", r.err)
	}
	if body := readBody(t, r.resp); r.resp.StatusCode != 200 || body != "ok from new.example.test" {
		t.Errorf("GET = %d %q, want 200 from the upstream", r.resp.StatusCode, body)
	}
	if h := e.rec.Last(t).Header.Get("Authorization"); h != "" {
		t.Errorf("tunnel to an unlisted host carried Authorization %q", h)
	}
}

func TestUnlistedConnectAuditAsked(t *testing.T) {
	e := newAskEnv(t)
	go func() { e.a.question(t); e.a.v <- VerdictAllow }()
	resp, c, _ := e.tp.connect(t, "new.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d, want 200", resp.StatusCode)
	}
	_ = c.Close()
	l := egressLine(t, e.tp, "", "new.example.test")
	if l["decision"] != decisionTunnel || l["reason"] != ReasonAsked {
		t.Errorf("audit line %v, want decision tunnel, reason %q", l, ReasonAsked)
	}
}

func TestUnlistedConnectDenied(t *testing.T) {
	e := newAskEnv(t)
	go func() { e.a.question(t); e.a.v <- VerdictDeny }()
	resp, _, _ := e.tp.connect(t, "new.example.test:443")
	assertDeny(t, resp, http.StatusForbidden, ReasonNotAllowed)
	l := egressLine(t, e.tp, http.MethodConnect, "new.example.test")
	if l["decision"] != decisionDeny || l["reason"] != ReasonNotAllowed {
		t.Errorf("audit line %v, want deny not_allowed", l)
	}
}

func TestUnlistedNotAskedForListed(t *testing.T) {
	e := newAskEnv(t)
	resp, err := e.tp.tunnelClient().Get("https://b.example.test/")
	if err != nil {
		t.Fatalf("GET allowed host: %v", err)
	}
	readBody(t, resp)
	select {
	case q := <-e.a.q:
		t.Errorf("Unlisted asked about %+v", q)
	default:
	}
}

func TestUnlistedClientHangupEndsContext(t *testing.T) {
	e := newAskEnv(t)
	c, err := net.Dial("tcp", e.tp.addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("CONNECT new.example.test:443 HTTP/1.1\r\nHost: new.example.test:443\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	e.a.question(t)
	_ = c.Close()
	select {
	case err := <-e.a.done:
		if err != context.Canceled {
			t.Errorf("ctx.Err() = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client hung up but Unlisted's ctx did not end")
	}
}

func TestUnlistedProxyCloseEndsContext(t *testing.T) {
	e := newAskEnv(t)
	got := make(chan *http.Response, 1)
	go func() { got <- rawConnect(e.tp, "new.example.test:443") }()
	e.a.question(t)
	_ = e.tp.Close()
	select {
	case <-e.a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy closed but Unlisted's ctx did not end")
	}
	// The hook answered Allow after its ctx ended: refused, or cut by Close.
	if resp := <-got; resp != nil {
		assertDeny(t, resp, http.StatusForbidden, ReasonNotAllowed)
	}
}

// A hook that ignores ctx does not keep the client waiting once it ends.
func TestUnlistedHookIgnoringContext(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	e := newAskEnv(t, func(c *Config) {
		c.Unlisted = func(context.Context, Question) Verdict { <-block; return VerdictAllow }
	})
	got := make(chan *http.Response, 1)
	go func() { got <- rawConnect(e.tp, "new.example.test:443") }()
	time.Sleep(100 * time.Millisecond)
	_ = e.tp.Close()
	select {
	case resp := <-got:
		// Close cuts the connection (or it is refused first): never a tunnel.
		if resp != nil {
			assertDeny(t, resp, http.StatusForbidden, ReasonNotAllowed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a hook ignoring ctx held the client past the proxy's close")
	}
}

func TestUnlistedPlainRequest(t *testing.T) {
	e := newAskEnv(t)
	for _, tc := range []struct {
		name    string
		verdict Verdict
		status  int
	}{{"allow", VerdictAllow, 200}, {"deny", VerdictDeny, 403}} {
		t.Run(tc.name, func(t *testing.T) {
			go func() {
				q := e.a.question(t)
				want := Question{Host: "new.example.test", Port: 80, Method: "GET", Path: "/p/" + tc.name, Reason: ReasonNotAllowed}
				if q != want {
					t.Errorf("Unlisted(%+v), want %+v", q, want)
				}
				e.a.v <- tc.verdict
			}()
			resp, err := e.tp.client().Get("http://new.example.test/p/" + tc.name + "?q=1")
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Errorf("GET = %d %q, want %d", resp.StatusCode, body, tc.status)
			}
		})
	}
	for path, want := range map[string][2]string{
		"/p/allow": {decisionForward, ReasonAsked},
		"/p/deny":  {decisionDeny, ReasonNotAllowed},
	} {
		var l map[string]any
		eventually(t, func() bool {
			for _, s := range strings.Split(e.tp.logs.String(), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(s), &m) == nil && m["msg"] == "egress" && m["path"] == path {
					l = m
					return true
				}
			}
			return false
		})
		if l == nil || l["decision"] != want[0] || l["reason"] != want[1] {
			t.Errorf("audit line for %s: %v, want decision %s, reason %s", path, l, want[0], want[1])
		}
	}
}

func TestUnlistedMethodOnRoutedHost(t *testing.T) {
	e := newAskEnv(t)
	tc := e.tp.mitm(t, "ro.example.test:443", "ro.example.test")
	br := bufio.NewReader(tc)
	go func() {
		q := e.a.question(t)
		want := Question{Host: "ro.example.test", Port: 443, Method: "POST", Path: "/repos/o/r/issues",
			Reason: ReasonMethodNotAllowed, Slot: "api"}
		if q != want {
			t.Errorf("Unlisted(%+v), want %+v", q, want)
		}
		e.a.v <- VerdictAllow
	}()
	resp := rawRequest(t, tc, br, "POST /repos/o/r/issues HTTP/1.1\r\nHost: ro.example.test\r\nAuthorization: Bearer "+phAPI+"\r\nContent-Length: 2\r\n\r\n{}")
	if body := readBody(t, resp); resp.StatusCode != 200 {
		t.Fatalf("POST = %d %q, want 200", resp.StatusCode, body)
	}
	if got := e.rec.Last(t).Header.Get("Authorization"); got != "Bearer "+tokAPI {
		t.Error("the lifted request did not carry the injected credential")
	}
	l := egressLine(t, e.tp, "POST", "ro.example.test")
	if l["decision"] != decisionInject || l["reason"] != ReasonAsked || l["slot"] != "api" {
		t.Errorf("audit line %v, want inject/asked with slot api", l)
	}
	go func() { e.a.question(t); e.a.v <- VerdictDeny }()
	resp = rawRequest(t, tc, br, "DELETE /repos/o/r HTTP/1.1\r\nHost: ro.example.test\r\n\r\n")
	assertDeny(t, resp, http.StatusForbidden, ReasonMethodNotAllowed)
}

func TestUnlistedTripwireStillApplies(t *testing.T) {
	e := newAskEnv(t)
	// A placeholder to a host its slot is not bound to: refused whatever
	// the answer, so nobody is asked.
	req, _ := http.NewRequest("GET", "http://new.example.test/", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp, err := e.tp.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	assertDeny(t, resp, http.StatusForbidden, ReasonPlaceholderLeak)
	if n := len(e.rec.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}
	select {
	case q := <-e.a.q:
		t.Errorf("Unlisted asked about %+v, a request carrying a placeholder", q)
	default:
	}
	// A placeholder in a CONNECT host is refused before anyone is asked.
	resp, _, _ = e.tp.connect(t, strings.ToLower(phAPI)+".example.test:443")
	assertDeny(t, resp, http.StatusForbidden, ReasonPlaceholderLeak)
	select {
	case q := <-e.a.q:
		t.Errorf("Unlisted asked about %+v", q)
	default:
	}
}

func TestUnlistedPrivateAddressStillRefused(t *testing.T) {
	e := newAskEnv(t, func(c *Config) {
		c.AllowPrivate = []netip.Prefix{}
	})
	go func() {
		for range 2 {
			e.a.question(t)
			e.a.v <- VerdictAllow
		}
	}()
	resp, _, _ := e.tp.connect(t, "new.example.test:443")
	assertDeny(t, resp, http.StatusForbidden, ReasonPrivateAddress)
	resp, err := e.tp.client().Get("http://new.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	assertDeny(t, resp, http.StatusForbidden, ReasonPrivateAddress)
}

// rawConnect sends a CONNECT and reads its answer, or returns nil; it is
// for goroutines (no t.Fatal).
func rawConnect(tp *testProxy, target string) *http.Response {
	c, err := net.DialTimeout("tcp", tp.addr(), 5*time.Second)
	if err != nil {
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")); err != nil {
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil
	}
	return resp
}
