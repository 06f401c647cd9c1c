package proxy

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/resolve"
)

// Regressions found by the adversarial review of the scrubber and the
// tripwire (docs/SECURITY.md).

// A token echoed as a trailer name: net/http moves "Trailer" into the keys
// of resp.Trailer, which goproxy announces in the head.
func TestTrailerNameScrubbed(t *testing.T) {
	for _, tok := range []string{tokAPI, "REAL/api+Token=s3cr3t-7f1c"} {
		up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, brw, _ := w.(http.Hijacker).Hijack() // net/http would refuse this trailer name
			defer c.Close()
			a := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nTrailer: " + a + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + a + ": 1\r\n\r\n")
			_ = brw.Flush()
		}))
		toks := testTokens()
		toks["api"] = resolve.NewSecret(tok)
		tp := startProxy(t, testPolicy, toks, map[string]string{"api.example.test:443": up.Addr()})
		req, _ := http.NewRequest("GET", "https://api.example.test/x", nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		resp := do(t, tp.client(), req)
		body := readBody(t, resp)
		dump, _ := httputil.DumpResponse(resp, false)
		if all := strings.ToLower(string(dump) + body + fmt.Sprint(resp.Trailer)); strings.Contains(all, strings.ToLower(tok)) {
			t.Errorf("token %d bytes: a form of it reached the client in a trailer name", len(tok))
		}
	}
}

// A token rotated while a request is in flight: the answer is scrubbed of
// the token the request carried, and of it after the rotation too.
func TestRotationScrubsSentToken(t *testing.T) {
	e := newStdEnv(t)
	swapped := make(chan struct{})
	var stored string
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			stored = r.Header.Get("Authorization")
			<-swapped
		}
		fmt.Fprintf(w, "you sent %s, before that %s", r.Header.Get("Authorization"), stored)
	})
	go func() {
		time.Sleep(200 * time.Millisecond)
		toks := testTokens()
		toks["api"] = resolve.NewSecret("REAL-api-token-ROTATED-9999")
		e.tp.SetTokens(toks)
		close(swapped)
	}()
	for _, path := range []string{"/first", "/second"} {
		req, _ := http.NewRequest("GET", "https://api.example.test"+path, nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		if body := readBody(t, do(t, e.tp.client(), req)); strings.Contains(body, tokAPI) || strings.Contains(body, "ROTATED") {
			t.Errorf("%s: a real token reached the client", path)
		}
	}
}

// Ranges would fetch an echo in pieces: Range is not forwarded to routed
// hosts, and a 206 from one is refused.
func TestRangeOnRoutedHost(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/always-206" {
			w.Header().Set("Content-Range", "bytes 0-3/10")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, "abcd")
			return
		}
		content := []byte(`{"authorization":"` + r.Header.Get("Authorization") + `"}`)
		http.ServeContent(w, r, "x.json", time.Time{}, bytes.NewReader(content))
	})
	get := func(path, rng string) *http.Response {
		req, _ := http.NewRequest("GET", "https://api.example.test"+path, nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		req.Header.Set("Range", rng)
		return do(t, e.tp.client(), req)
	}
	var all string
	for _, rng := range []string{"bytes=0-37", "bytes=38-", "bytes=0-37,38-"} {
		resp := get("/echo", rng)
		all += readBody(t, resp)
		if resp.StatusCode != 200 {
			t.Errorf("Range %s: status %d, want the whole answer (200)", rng, resp.StatusCode)
		}
	}
	if strings.Contains(all, tokAPI[:12]) || strings.Contains(all, tokAPI[12:]) {
		t.Error("a piece of the token reached the client")
	}
	assertDeny(t, get("/always-206", "bytes=0-3"), http.StatusBadGateway, ReasonUnscrubbable)
}

// The tripwire reads the method, refuses opaque targets, and reads a small
// body whole: decoded twice and by skeleton.
func TestTripwireMethodOpaqueBody(t *testing.T) {
	e := newStdEnv(t)
	for _, tc := range []struct {
		name, raw, reason string
		status            int
	}{
		{"method", phGH + " /x HTTP/1.1\r\nHost: api.example.test\r\n\r\n", ReasonPlaceholderLeak, 403},
		{"opaque target", "GET https:" + phGH + " HTTP/1.1\r\nHost: api.example.test\r\n\r\n", ReasonBadRequest, 400},
		{"opaque blocked path", "GET https:oauth/token HTTP/1.1\r\nHost: api.example.test\r\n\r\n", ReasonBadRequest, 400},
		{"body skeleton", "POST /x HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 25\r\n\r\n" + strings.ReplaceAll(phGH, "-", "."), ReasonPlaceholderLeak, 403},
		{"body double percent-encoded", "POST /x HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 29\r\n\r\n" + strings.Replace(phGH, "-", "%252D", 1), ReasonPlaceholderLeak, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			assertDeny(t, rawRequest(t, c, bufio.NewReader(c), tc.raw), tc.status, tc.reason)
		})
	}
	if n := len(e.api.Requests()); n != 0 {
		t.Errorf("the upstream saw %d requests, want 0", n)
	}
}

// Go quotes a malformed response head in its error: the debug log must not
// carry the token it echoes.
func TestUpstreamErrorScrubbedInLog(t *testing.T) {
	conf, err := upstreamCA().ServerConfig(upstreamHosts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Echo "+req.Header.Get("Authorization")+"\r\n\r\n")
			}()
		}
	}()
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": ln.Addr().String()})
	req, _ := http.NewRequest("GET", "https://api.example.test/x", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	assertDeny(t, do(t, tp.client(), req), http.StatusBadGateway, ReasonUpstreamUnreachable)
	l := tp.logs.String()
	if !strings.Contains(l, "malformed") {
		t.Errorf("the debug log lacks the upstream error: %s", grepLines(l, "upstream request failed"))
	}
	assertNoSecrets(t, "log", l)
}

// A decoder stops at its own end; trailers of an HTTP/2 stream come after:
// they are still passed on (scrubbed).
func TestDecodedTrailersOverHTTP2(t *testing.T) {
	u := newH2Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Encoding", "deflate")
		zw := zlib.NewWriter(w)
		_, _ = io.WriteString(zw, "hello")
		_ = zw.Close()
		w.(http.Flusher).Flush()
		time.Sleep(time.Millisecond)
		w.Header().Set("X-Sum", r.Header.Get("Authorization"))
	}))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": u.Addr()})
	for i := range 20 {
		req, _ := http.NewRequest("GET", "https://api.example.test/t", nil)
		req.Header.Set("Authorization", "Bearer "+phAPI)
		resp := do(t, tp.client(), req)
		if body := readBody(t, resp); body != "hello" {
			t.Fatalf("request %d: body %q", i, body)
		}
		if got := resp.Trailer.Get("X-Sum"); got != "Bearer "+phAPI {
			t.Fatalf("request %d: trailer X-Sum = %q, want the placeholder", i, got)
		}
	}
}
