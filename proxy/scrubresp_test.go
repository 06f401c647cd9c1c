package proxy

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// tokenForms are the spellings of tok an echoing upstream could hand back:
// none may reach the sandbox.
func tokenForms(tok string) []string {
	forms := []string{
		tok, strings.ToUpper(tok), strings.ToLower(tok),
		base64.StdEncoding.EncodeToString([]byte(tok)),
		base64.RawStdEncoding.EncodeToString([]byte(tok)),
		base64.URLEncoding.EncodeToString([]byte(tok)),
		hex.EncodeToString([]byte(tok)),
		tok[:16],
	}
	for _, user := range []string{"x-access-token", "u", "ab"} {
		b := base64.StdEncoding.EncodeToString([]byte(user + ":" + tok))
		forms = append(forms, b, strings.TrimRight(b, "="), url.QueryEscape(b))
	}
	return forms
}

// assertNoTokenForms fails if dump holds any form of a real token, in any
// ASCII case.
func assertNoTokenForms(t *testing.T, where, dump string) {
	t.Helper()
	low := strings.ToLower(dump)
	for _, tok := range []string{tokAPI, tokGH, tokOther} {
		for _, f := range tokenForms(tok) {
			if strings.Contains(low, strings.ToLower(f)) {
				t.Errorf("%s contains a form of a real token (%d bytes)", where, len(f))
			}
		}
	}
}

// echoHandler echoes the request's Authorization in the way named by the
// path. a is the value after injection: it holds the real token.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	a := r.Header.Get("Authorization")
	tok := a[strings.IndexByte(a, ' ')+1:]
	if d, ok := decodeBasic(a); ok {
		_, tok, _ = strings.Cut(d, ":")
	}
	flush := func() { w.(http.Flusher).Flush() }
	compressed := func(enc string, wr func(io.Writer) io.WriteCloser) {
		var b bytes.Buffer
		zw := wr(&b)
		fmt.Fprintf(zw, `{"auth":%q}`, a)
		_ = zw.Close()
		w.Header().Set("Content-Encoding", enc)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b.Bytes())
	}
	switch r.URL.Path {
	case "/json":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"auth":%q,"echo":"%s"}`, a, url.QueryEscape(a))
	case "/chunked":
		for i := 1; i < len(a); i += 3 { // split points, one flushed write each side
			_, _ = io.WriteString(w, a[:i])
			flush()
			_, _ = io.WriteString(w, a[i:]+"\n")
			flush()
		}
	case "/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: hello\n\n")
		flush()
		_, _ = io.WriteString(w, "data: "+tok[:len(tok)/2])
		flush()
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(w, tok[len(tok)/2:]+"\n\n")
		flush()
	case "/gzip":
		compressed("gzip", func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) })
	case "/deflate":
		compressed("deflate", func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) })
	case "/deflate-raw":
		compressed("deflate", func(w io.Writer) io.WriteCloser { fw, _ := flate.NewWriter(w, 5); return fw })
	case "/br":
		compressed("br", func(w io.Writer) io.WriteCloser { return brotli.NewWriter(w) })
	case "/zstd":
		compressed("zstd", func(w io.Writer) io.WriteCloser { zw, _ := zstd.NewWriter(w); return zw })
	case "/gzip-br":
		var inner bytes.Buffer
		bw := brotli.NewWriter(&inner)
		fmt.Fprintf(bw, `{"auth":%q}`, a)
		_ = bw.Close()
		var outer bytes.Buffer
		gw := gzip.NewWriter(&outer)
		_, _ = gw.Write(inner.Bytes())
		_ = gw.Close()
		w.Header().Set("Content-Encoding", "br, gzip")
		_, _ = w.Write(outer.Bytes())
	case "/unknown-encoding":
		w.Header().Set("Content-Encoding", "x-cork-test")
		_, _ = io.WriteString(w, a)
	case "/headers":
		h := w.Header()
		h.Set("X-Upper", strings.ToUpper(tok))
		h.Set("X-Lower", strings.ToLower(tok))
		h.Set("X-B64", base64.StdEncoding.EncodeToString([]byte(tok)))
		h.Set("X-B64-Raw", base64.RawStdEncoding.EncodeToString([]byte(tok)))
		h.Set("X-B64-Url", base64.URLEncoding.EncodeToString([]byte(tok)))
		h.Set("X-Hex", hex.EncodeToString([]byte(tok)))
		h.Set("X-Basic-Url", url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("x-access-token:"+tok))))
		h["X-Split"] = []string{tok[:len(tok)/2], tok[len(tok)/2:]}
		h.Set("X-"+tok, "1")
		h.Set("X-Partial", "x"+tok[:16]+"y")
		h.Set("X-Echo", a)
	case "/trailers":
		w.Header().Set("Trailer", "X-Echo")
		_, _ = io.WriteString(w, "body\n")
		flush()
		w.Header().Set("X-Echo", a)
	case "/head":
		w.Header().Set("X-Echo", a)
	default:
		_, _ = io.WriteString(w, "ok")
	}
}

func TestResponseScrubbing(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(echoHandler)
	for _, host := range []string{"api.example.test", "gh.example.test"} {
		for _, path := range []string{"/json", "/chunked", "/sse", "/gzip", "/deflate", "/deflate-raw", "/br", "/zstd", "/gzip-br", "/headers", "/trailers"} {
			t.Run(host+path, func(t *testing.T) {
				req, _ := http.NewRequest("GET", "https://"+host+path, nil)
				if host == "gh.example.test" {
					req.SetBasicAuth("x-access-token", phGH)
				} else {
					req.Header.Set("Authorization", "Bearer "+phAPI)
				}
				req.Header.Set("Accept-Encoding", "gzip, br, zstd, deflate, x-unknown")
				resp := do(t, e.tp.client(), req)
				body := readBody(t, resp)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d, body %q", resp.StatusCode, body)
				}
				dump, _ := httputil.DumpResponse(resp, false)
				all := string(dump) + body + fmt.Sprint(resp.Trailer)
				assertNoTokenForms(t, path, all)
				if ce := resp.Header.Get("Content-Encoding"); ce != "" {
					t.Errorf("Content-Encoding %q: want the body decoded", ce)
				}
				ph := phAPI
				if host == "gh.example.test" {
					ph = phGH
				}
				switch path {
				case "/json", "/gzip", "/deflate", "/deflate-raw", "/br", "/zstd", "/gzip-br", "/sse", "/chunked":
					if !strings.Contains(body, ph) && !strings.Contains(body, b64("x-access-token:" + ph)[:8]) {
						t.Errorf("body %q: want the placeholder where the token was", body)
					}
				case "/trailers":
					if resp.Trailer.Get("X-Echo") == "" {
						t.Error("trailer X-Echo missing: want it passed on, scrubbed")
					}
				}
			})
		}
	}
	t.Run("audit and metrics", func(t *testing.T) {
		if !eventually(t, func() bool { return strings.Contains(e.tp.logs.String(), `"scrubbed":`) }) {
			t.Error("no audit line counts scrubbed tokens")
		}
		assertNoSecrets(t, "log", e.tp.logs.String())
		rec := httpGet(t, e.tp.MetricsHandler())
		if !strings.Contains(rec, `cork_scrub_hits_total{slot="api",where="body"}`) ||
			!strings.Contains(rec, `cork_scrub_hits_total{slot="gh",where="header"}`) ||
			!strings.Contains(rec, `where="trailer"`) {
			t.Errorf("metrics lack scrub hits:\n%s", grepLines(rec, "cork_scrub"))
		}
		for _, name := range []string{"go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
			if !strings.Contains(rec, name) {
				t.Errorf("metrics lack %s", name)
			}
		}
		assertNoSecrets(t, "metrics", rec)
	})
}

func TestResponseUnscrubbable(t *testing.T) {
	pass := strings.Replace(testPolicy, "  - host: tok.example.test\n    slot: gh\n", "  - host: tok.example.test\n    slot: gh\n    unscrubbable: pass\n", 1)
	up := newUpstream(t, true, http.HandlerFunc(echoHandler))
	tp := startProxy(t, pass, testTokens(), map[string]string{"api.example.test:443": up.Addr(), "tok.example.test:443": up.Addr()})
	get := func(host, auth string) *http.Response {
		req, _ := http.NewRequest("GET", "https://"+host+"/unknown-encoding", nil)
		req.Header.Set("Authorization", auth)
		return do(t, tp.client(), req)
	}
	assertDeny(t, get("api.example.test", "Bearer "+phAPI), http.StatusBadGateway, ReasonUnscrubbable)
	resp := get("tok.example.test", "token "+phGH)
	body := readBody(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "x-cork-test" || body != "token "+tokGH {
		t.Errorf("unscrubbable: pass: got %d %q, want the body untouched", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
}

// An SSE event is passed on as soon as it is complete: the scrubber holds
// back only what could start a token.
func TestScrubSSENotDelayed(t *testing.T) {
	e := newStdEnv(t)
	release := make(chan struct{})
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: "+tokAPI+"\n\n")
	})
	defer close(release)
	req, _ := http.NewRequest("GET", "https://api.example.test/stream", nil)
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp := do(t, e.tp.client(), req)
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Errorf("first line %q", line)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the first event did not arrive while the stream stayed open")
	}
}

// httpGet serves one GET on h and returns the body.
func httpGet(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
