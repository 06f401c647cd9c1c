package upstreamtest

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/localca"
)

func TestServerRecords(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		proto int
	}{
		{"https", Config{}, 1},
		{"https-h2", Config{HTTP2: true}, 2},
		{"plain", Config{Plain: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t, tc.cfg)
			c := s.Client()
			req, _ := http.NewRequest("POST", s.URL+"/v1/x?a=1", strings.NewReader("hello"))
			req.Header.Set("Authorization", "Bearer tok")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != tc.proto {
				t.Errorf("answer over HTTP/%d, want %d", resp.ProtoMajor, tc.proto)
			}
			if want := "ok from " + s.Listener.Addr().String(); string(body) != want {
				t.Errorf("body = %q, want %q", body, want)
			}
			got := s.Last(t)
			if got.Method != "POST" || got.Path != "/v1/x" || got.Query != "a=1" || string(got.Body) != "hello" ||
				got.Header.Get("Authorization") != "Bearer tok" || got.Host != s.Addr() {
				t.Errorf("Last() = %+v, want POST %s/v1/x?a=1 with body and header", got, s.Addr())
			}
			if n := len(s.Requests()); n != 1 {
				t.Errorf("len(Requests()) = %d, want 1", n)
			}
			if n := s.Conns(); n != 1 {
				t.Errorf("Conns() = %d, want 1", n)
			}
			if (s.CA() == nil) != tc.cfg.Plain || (s.Roots() == nil) != tc.cfg.Plain {
				t.Errorf("CA() = %v, Roots() = %v: want nil only for a plain server", s.CA(), s.Roots())
			}
		})
	}
}

// The handler reads the body again; a shared CA and hosts are honoured.
func TestServerHandlerAndCA(t *testing.T) {
	ca, err := localca.New("test")
	if err != nil {
		t.Fatal(err)
	}
	s := New(t, Config{CA: ca, Hosts: []string{"api.test"}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write(b)
	})})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "api.test"}}}
	resp, err := c.Post(s.URL, "text/plain", strings.NewReader("again"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "again" {
		t.Errorf("answer = %d %q, want 418 %q", resp.StatusCode, body, "again")
	}
	if got := string(s.Last(t).Body); got != "again" {
		t.Errorf("recorded body = %q, want %q", got, "again")
	}
}

// A body longer than MaxBody is counted in full and kept up to MaxBody.
func TestRecorderCapsBody(t *testing.T) {
	s := New(t, Config{Plain: true})
	n := MaxBody + 12345
	resp, err := s.Client().Post(s.URL, "application/octet-stream", strings.NewReader(strings.Repeat("x", n)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := s.Last(t)
	if len(got.Body) != MaxBody || got.BodyLen != int64(n) {
		t.Errorf("Last() body = %d bytes of %d, want %d of %d", len(got.Body), got.BodyLen, MaxBody, n)
	}
}

func TestRecorderZero(t *testing.T) {
	var r Recorder
	if n := len(r.Requests()); n != 0 {
		t.Errorf("len(Requests()) = %d, want 0", n)
	}
}
