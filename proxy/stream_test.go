package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/klauspost/compress/zstd"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventTimeout bounds the wait for one event; a buffering proxy never
// delivers it, because the upstream sends the next only after the client
// has seen this one.
const eventTimeout = 5 * time.Second

// lockstep serves n events; event i+1 is written only after the client
// has acknowledged event i on next.
func lockstep(t *testing.T, contentType, format string, n int, next <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		for i := range n {
			if i > 0 {
				select {
				case <-next:
				case <-r.Context().Done():
					return
				case <-time.After(eventTimeout):
					t.Errorf("upstream: client never acknowledged event %d", i-1)
					return
				}
				time.Sleep(50 * time.Millisecond) // the gap the client must see
			}
			fmt.Fprintf(w, format, i)
			fl.Flush()
		}
	}
}

func TestStreaming(t *testing.T) {
	const n = 5
	for _, kind := range []struct{ name, ct, format, want string }{
		{"SSE", "text/event-stream", "data: {\"i\":%d}\n\n", "data: {\"i\":%d}"},
		{"NDJSON", "application/x-ndjson", "{\"i\":%d}\n", "{\"i\":%d}"},
	} {
		for _, path := range []string{"MITM", "tunnel", "plain"} {
			t.Run(kind.name+"/"+path, func(t *testing.T) {
				next := make(chan struct{})
				h := lockstep(t, kind.ct, kind.format, n, next)
				tlsUp := newUpstream(t, true, h)
				plainUp := newUpstream(t, false, h)
				tp := startProxy(t, testPolicy, testTokens(), map[string]string{
					"api.example.test:443":    tlsUp.Addr(),
					"b.example.test:443":      tlsUp.Addr(),
					"allowed.example.test:80": plainUp.Addr(),
				})
				var cl *http.Client
				var u string
				switch path {
				case "MITM":
					cl, u = tp.client(), "https://api.example.test/stream"
				case "tunnel":
					cl, u = tp.tunnelClient(), "https://b.example.test/stream"
				default:
					cl, u = tp.client(), "http://allowed.example.test/stream"
				}
				resp, err := cl.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				lines := make(chan string)
				go func() {
					defer close(lines)
					sc := bufio.NewScanner(resp.Body)
					for sc.Scan() {
						if sc.Text() != "" {
							lines <- sc.Text()
						}
					}
				}()
				var first time.Duration
				start := time.Now()
				for i := range n {
					select {
					case l := <-lines:
						if want := fmt.Sprintf(kind.want, i); l != want {
							t.Fatalf("event %d = %q, want %q", i, l, want)
						}
					case <-time.After(eventTimeout):
						t.Fatalf("event %d not delivered while the upstream waits: the proxy buffers", i)
					}
					if i == 0 {
						first = time.Since(start)
					}
					if i < n-1 {
						select {
						case next <- struct{}{}:
						case <-time.After(eventTimeout):
							t.Fatalf("upstream gone before event %d", i+1)
						}
					}
				}
				t.Logf("first event after %v", first)
			})
		}
	}
}

// docs/DESIGN.md, trap 9: Accept-Encoding and compressed bodies pass
// untouched where cork does not scrub (allowed hosts). On a routed host the
// request's body passes untouched too, but the answer arrives decoded: cork
// decodes it to scrub it of real tokens (docs/SECURITY.md).
func TestBodiesUntouched(t *testing.T) {
	payload := bytes.Repeat([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x01}, 1000) // zstd-looking bytes
	var answer bytes.Buffer
	zw, _ := zstd.NewWriter(&answer)
	_, _ = zw.Write(payload)
	_ = zw.Close()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ae := r.Header.Get("Accept-Encoding"); ae != "zstd" {
			t.Errorf("upstream Accept-Encoding = %q, want zstd", ae)
		}
		if ce := r.Header.Get("Content-Encoding"); r.Method == "POST" && ce != "zstd" {
			t.Errorf("upstream Content-Encoding = %q", ce)
		}
		body, _ := io.ReadAll(r.Body)
		if r.Method == "POST" && !bytes.Equal(body, payload) {
			t.Errorf("request body changed (%d bytes)", len(body))
		}
		w.Header().Set("Content-Encoding", "zstd")
		_, _ = w.Write(answer.Bytes())
	})
	up := newUpstream(t, true, h)
	plain := newUpstream(t, false, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr(), "allowed.example.test:80": plain.Addr()})
	for _, tc := range []struct {
		url, wantEncoding string
		want              []byte
	}{
		{"https://api.example.test/r", "", payload},
		{"http://allowed.example.test/r", "zstd", answer.Bytes()},
	} {
		req, _ := http.NewRequest("POST", tc.url, bytes.NewReader(payload))
		req.Header.Set("Accept-Encoding", "zstd")
		req.Header.Set("Content-Encoding", "zstd")
		resp := do(t, tp.client(), req)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != tc.wantEncoding || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %d bytes in %q, want %d bytes in %q", tc.url, len(got), resp.Header.Get("Content-Encoding"), len(tc.want), tc.wantEncoding)
		}
	}
}

// patternBlock holds the byte stream's period (251, prime, so it never
// lines up with buffer sizes) repeated to 64 KiB and one period more, so
// any window of up to 64 KiB starting at any phase is a slice of it.
var patternBlock = func() []byte {
	b := make([]byte, 64<<10+251)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// pattern is a deterministic, endless byte stream. It copies slices rather
// than looping per byte, so it stays fast under the race detector.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		ph := int(p.off % 251)
		c := copy(b[n:], patternBlock[ph:ph+64<<10])
		n += c
		p.off += int64(c)
	}
	return n, nil
}

// writePattern writes size bytes of the pattern straight from patternBlock
// (whole periods per write, so the phase stays 0).
func writePattern(w io.Writer, size int64) {
	chunk := patternBlock[:251*256]
	for left := size; left > 0; {
		k := min(left, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		left -= k
	}
}

// checker verifies bytes against pattern and counts them.
type checker struct {
	off int64
	bad bool
}

func (c *checker) Write(b []byte) (int, error) {
	for rest := b; len(rest) > 0; {
		k := min(len(rest), 64<<10)
		ph := int(c.off % 251)
		if !bytes.Equal(rest[:k], patternBlock[ph:ph+k]) {
			c.bad = true
		}
		rest = rest[k:]
		c.off += int64(k)
	}
	return len(b), nil
}

// heapPeak samples the heap until stop and returns the peak HeapInuse.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tk := time.NewTicker(25 * time.Millisecond)
		defer tk.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tk.C:
			}
		}
	}()
	return out
}

func bigSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// docs/DESIGN.md, decision 7: 1 GiB each way through MITM, memory bounded.
func TestLargeBodiesMITM(t *testing.T) {
	size := bigSize()
	var upGot atomic.Int64
	var upBad atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			writePattern(w, size)
		case "POST":
			c := &checker{}
			n, _ := io.Copy(c, r.Body)
			upGot.Store(n)
			upBad.Store(c.bad)
			if r.Header.Get("Authorization") != "Bearer "+tokAPI {
				t.Errorf("upload: token not injected")
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	up := newUpstream(t, true, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	cl := tp.client()

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := make(chan struct{})
	peakc := heapPeak(stop)

	start := time.Now()
	resp, err := cl.Get("https://api.example.test/big")
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{}
	n, err := io.Copy(c, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || c.bad {
		t.Fatalf("download: %d bytes (err %v, corrupt %v), want %d", n, err, c.bad, size)
	}
	down := time.Since(start)

	start = time.Now()
	req, _ := http.NewRequest("POST", "https://api.example.test/upload", io.LimitReader(&pattern{}, size))
	req.ContentLength = -1 // chunked
	req.Header.Set("Authorization", "Bearer "+phAPI)
	resp = do(t, cl, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || upGot.Load() != size || upBad.Load() {
		t.Fatalf("upload: status %d, upstream got %d bytes (corrupt %v), want %d", resp.StatusCode, upGot.Load(), upBad.Load(), size)
	}
	upDur := time.Since(start)
	close(stop)
	peak := <-peakc
	growth := int64(peak) - int64(base)
	t.Logf("%d MiB down in %v, up in %v; heap in use peak %d MiB over a %d MiB baseline", size>>20, down, upDur, peak>>20, base>>20)
	if growth > 64<<20 {
		t.Errorf("heap grew by %d MiB while streaming, want < 64 MiB", growth>>20)
	}
	if !eventually(t, func() bool {
		logs := tp.logs.String()
		return strings.Contains(logs, fmt.Sprintf(`"bytes_down":%d`, size)) && strings.Contains(logs, fmt.Sprintf(`"bytes_up":%d`, size))
	}) {
		t.Errorf("audit lines lack the byte counts")
	}
}

func TestExpectContinue(t *testing.T) {
	var got sync.Map
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.URL.Path, string(b))
		w.WriteHeader(201)
	})
	up := newUpstream(t, true, h)
	plain := newUpstream(t, false, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr(), "allowed.example.test:80": plain.Addr()})
	cl := tp.client()
	cl.Transport.(*http.Transport).ExpectContinueTimeout = 10 * time.Second // a lost 100 would stall
	for _, u := range []string{"https://api.example.test/up", "http://allowed.example.test/up2"} {
		req, _ := http.NewRequest("PUT", u, strings.NewReader("hello, continue"))
		req.Header.Set("Expect", "100-continue")
		start := time.Now()
		resp := do(t, cl, req)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Errorf("%s: status %d", u, resp.StatusCode)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v: 100 Continue not relayed", u, d)
		}
	}
	if v, _ := got.Load("/up"); v != "hello, continue" {
		t.Errorf("MITM upstream got %q", v)
	}
	if v, _ := got.Load("/up2"); v != "hello, continue" {
		t.Errorf("plain upstream got %q", v)
	}
	// A refused request with Expect: the body is never sent anywhere.
	req, _ := http.NewRequest("POST", "https://api.example.test/oauth/token", strings.NewReader("refresh_token=x"))
	req.Header.Set("Expect", "100-continue")
	assertDeny(t, do(t, cl, req), 403, ReasonBlocked)
	if _, ok := got.Load("/oauth/token"); ok {
		t.Error("blocked request reached the upstream")
	}
}

// Chunked upload of a known payload, exact bytes, through MITM.
func TestChunkedUpload(t *testing.T) {
	want := strings.Repeat("chunk-", 50000)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
			t.Errorf("upstream TransferEncoding = %q, want chunked", r.TransferEncoding)
		}
		b, _ := io.ReadAll(r.Body)
		if string(b) != want {
			t.Errorf("upstream got %d bytes, want %d", len(b), len(want))
		}
	})
	up := newUpstream(t, true, h)
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{"api.example.test:443": up.Addr()})
	req, _ := http.NewRequest("POST", "https://api.example.test/c", io.MultiReader(strings.NewReader(want)))
	req.ContentLength = -1
	resp := do(t, tp.client(), req)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// An upstream may answer before it has read the request body (the
// transport sends the head first when the body is not already in memory),
// and an interactive client may send the body only once the answer has
// begun. The answer's head goes out to the client at once; the body must
// still flow upstream after it. By default net/http's server reads the
// rest of the body away before it writes the head (here: waits for it
// forever), and when the body has come, closes it: the transport's next
// read fails, and it closes the upstream connection, cutting the answer
// (the rare cut SSE answer of a demo under load).
func TestAnswerBeforeRequestBody(t *testing.T) {
	e := newStdEnv(t)
	const body = `{"prompt":"say hello"}`
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The upstream's own net/http would otherwise wait for the body
		// before sending the head.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			t.Errorf("upstream: %v", err)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "data: got %q %v\n\n", b, err)
	})
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // without full duplex the head never comes
	// Chunked: a small body of known length would be read whole by the
	// tripwire before anything is sent (prescan).
	if _, err := io.WriteString(c, "POST /c HTTP/1.1\r\nHost: api.example.test\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read the answer's head before sending the body: %v", err)
	}
	defer resp.Body.Close()
	rb := bufio.NewReader(resp.Body)
	if line, err := rb.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(body), body); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rb)
	if err != nil || !strings.Contains(string(rest), fmt.Sprintf("data: got %q <nil>", body)) {
		t.Errorf("after the first event: %q, %v; want the upstream to have read the whole body", rest, err)
	}
	line := func() string { return grepLines(e.tp.logs.String(), `"path":"/c"`) }
	if !eventually(t, func() bool { return line() != "" }) || strings.Contains(line(), `"reason"`) {
		t.Errorf("audit line: %s; want one without a reason", line())
	}
}
