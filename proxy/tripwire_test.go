package proxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// doubleEscape percent-encodes every byte of s, then the percent signs.
func doubleEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%25%02X", s[i])
	}
	return b.String()
}

// The tripwire looks where an attacker would hide a placeholder: phOther
// (slot "other", bound to other.example.test only) sent to api.example.test
// and allowed.example.test.
func TestTripwireSpellings(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // as real servers do before answering
		e.api.ServeHTTP(w, r)
	})
	big := strings.Repeat("x", 1<<20)
	cases := []struct {
		name string
		send func(t *testing.T) *http.Response
	}{
		{"header name", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-"+phOther+": 1\r\n", "")
		}},
		{"upper-case value", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Debug: "+strings.ToUpper(phOther)+"\r\n", "")
		}},
		{"lower-case value", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Debug: "+strings.ToLower(phOther)+"\r\n", "")
		}},
		{"base64 value", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Debug: zz"+base64.StdEncoding.EncodeToString([]byte("a"+phOther+"b"))+"\r\n", "")
		}},
		{"base64url value at another alignment", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Debug: "+base64.RawURLEncoding.EncodeToString([]byte("ab"+phOther))+"\r\n", "")
		}},
		{"hex value", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Debug: "+fmt.Sprintf("%x", phOther)+"\r\n", "")
		}},
		{"split over two values", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Part: "+phOther[:10]+"\r\nX-Part: "+phOther[10:]+"\r\n", "")
		}},
		{"punctuation changed", func(t *testing.T) *http.Response {
			return e.rawMITM(t, "X-Debug: "+strings.ReplaceAll(phOther, "-", "+")+"\r\n", "")
		}},
		{"double percent-encoded query", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			return rawRequest(t, c, bufio.NewReader(c), "GET /?q="+doubleEscape(phOther)+" HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
		}},
		{"request body", func(t *testing.T) *http.Response {
			body := `{"note":"` + phOther + `"}`
			return e.rawMITM(t, fmt.Sprintf("Content-Length: %d\r\n", len(body)), body)
		}},
		{"chunked 1 MiB body, placeholder at the end", func(t *testing.T) *http.Response {
			req, _ := http.NewRequest("POST", "https://api.example.test/up", io.MultiReader(strings.NewReader(big), strings.NewReader(phOther)))
			req.ContentLength = -1
			return do(t, e.tp.client(), req)
		}},
		{"request trailer", func(t *testing.T) *http.Response {
			c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
			return rawRequest(t, c, bufio.NewReader(c), "POST /up HTTP/1.1\r\nHost: api.example.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"+
				"3\r\nabc\r\n0\r\nX-T: "+phOther+"\r\n\r\n")
		}},
		{"plain HTTP body to an allowed host", func(t *testing.T) *http.Response {
			req, _ := http.NewRequest("POST", "http://allowed.example.test/up", strings.NewReader("k="+phAPI))
			return do(t, e.tp.client(), req)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertDeny(t, tc.send(t), 403, ReasonPlaceholderLeak)
		})
	}
	for _, r := range append(e.api.Requests(), e.b.Requests()...) {
		// A long body's head may reach the upstream before the tripwire
		// fires at its end; the placeholder itself never does.
		if r.Path != "/up" {
			t.Errorf("an upstream saw %s %s: want every request refused", r.Host, r.Path)
		}
	}
}

// rawMITM sends one request to api.example.test inside an intercepted
// connection with extra header lines and a body.
func (e *stdEnv) rawMITM(t *testing.T, headers, body string) *http.Response {
	t.Helper()
	c := e.tp.mitm(t, "api.example.test:443", "api.example.test")
	method := "GET"
	if body != "" {
		method = "POST"
	}
	return rawRequest(t, c, bufio.NewReader(c), method+" /x HTTP/1.1\r\nHost: api.example.test\r\n"+headers+"\r\n"+body)
}

// A slot's own placeholder in a body to its own host, and bodies without
// placeholders, pass untouched.
func TestTripwireBodyPasses(t *testing.T) {
	e := newStdEnv(t)
	got := make(chan string, 1)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})
	body := strings.Repeat("abc", 50000) + phAPI + strings.Repeat("PH-oth", 1000)
	req, _ := http.NewRequest("POST", "https://api.example.test/up", strings.NewReader(body))
	resp := do(t, e.tp.client(), req)
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if b := <-got; b != body {
		t.Errorf("upstream got %d bytes, want the %d sent unchanged", len(b), len(body))
	}
}
