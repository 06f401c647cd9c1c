package echoupstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const testToken = "realtok_ZYXWV98765zyxwv_43210abcd/+="

func startServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client dials addr for every host, trusting the server's CA.
func client(t *testing.T, s *Server, addr string, h2 bool) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAPEM())
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: pool},
		DisableCompression: true,
		ForceAttemptHTTP2:  h2,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url, auth string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", auth)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

func TestTokenOf(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testToken))
	tests := []struct{ name, in, want string }{
		{"bearer", "Bearer " + testToken, testToken},
		{"token", "token " + testToken, testToken},
		{"basic", basic, testToken},
		{"raw", testToken, testToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TokenOf(tt.in); got != tt.want {
				t.Errorf("TokenOf(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	s := startServer(t)
	c := client(t, s, s.Addr(), false)
	a := "Bearer " + testToken

	t.Run("json", func(t *testing.T) {
		_, body := get(t, c, "https://echo.test/json", a)
		var m map[string]string
		if err := json.Unmarshal([]byte(body), &m); err != nil || m["auth"] != a {
			t.Errorf("/json = %q, %v; want auth %q", body, err, a)
		}
	})
	t.Run("encodings decode to the json echo", func(t *testing.T) {
		for _, enc := range []string{"gzip", "deflate", "deflate-raw", "br", "zstd"} {
			resp, body := get(t, c, "https://echo.test/"+enc, a)
			got, err := Decode(resp.Header.Get("Content-Encoding"), []byte(body))
			if err != nil || !strings.Contains(string(got), testToken) {
				t.Errorf("/%s decoded = %q, %v; want the token", enc, got, err)
			}
		}
	})
	t.Run("headers", func(t *testing.T) {
		resp, _ := get(t, c, "https://echo.test/headers", a)
		if got := resp.Header.Get("X-B64"); got != base64.StdEncoding.EncodeToString([]byte(testToken)) {
			t.Errorf("X-B64 = %q", got)
		}
		if got := resp.Header.Values("X-Split"); len(got) != 2 || got[0]+got[1] != testToken {
			t.Errorf("X-Split = %q, want the token's two halves", got)
		}
		if got := resp.Header.Get("X-Basic-Url"); !strings.Contains(got, "%3D") {
			t.Errorf("X-Basic-Url = %q, want URL-encoded padding", got)
		}
	})
	t.Run("header name when the token is a valid name", func(t *testing.T) {
		resp, _ := get(t, c, "https://echo.test/headers", "Bearer abc_DEF123")
		if resp.Header.Get("X-abc_DEF123") != "1" {
			t.Errorf("no X-abc_DEF123 header in %v", resp.Header)
		}
	})
	t.Run("sse", func(t *testing.T) {
		_, body := get(t, c, "https://echo.test/sse", a)
		want := "data: hello\n\ndata: " + testToken[:18] + "\n\ndata: " + testToken[18:] + "\n\ndata: " + a + "\n\n"
		if body != want {
			t.Errorf("/sse = %q, want %q", body, want)
		}
	})
	t.Run("slow head", func(t *testing.T) {
		start := time.Now()
		get(t, c, "https://echo.test/slow-head?d=200ms", a)
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("/slow-head?d=200ms answered after %v", d)
		}
	})
	t.Run("big head", func(t *testing.T) {
		resp, _ := get(t, c, "https://echo.test/big-head?n=100000", a)
		if n := len(resp.Header); n < 90 {
			t.Errorf("/big-head?n=100000 sent %d headers, want about 100", n)
		}
	})
	t.Run("requests are recorded", func(t *testing.T) {
		get(t, c, "https://ECHO.TEST/anything?x=1", a)
		got := s.RequestsTo("/anything")
		if len(got) != 1 || got[0].Host != "ECHO.TEST" || got[0].Header.Get("Authorization") != a || got[0].RequestURI != "/anything?x=1" {
			t.Errorf("RequestsTo(/anything) = %+v", got)
		}
	})
}

func TestHTTP2Trailers(t *testing.T) {
	s := startServer(t)
	c := client(t, s, s.H2Addr(), true)
	resp, _ := get(t, c, "https://h2.test/trailers", "Bearer "+testToken)
	if resp.ProtoMajor != 2 || resp.Trailer.Get("X-Echo") != "Bearer "+testToken {
		t.Errorf("h2 /trailers: proto %s, trailer %v; want HTTP/2 with X-Echo", resp.Proto, resp.Trailer)
	}
}

func TestWebSocket(t *testing.T) {
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover} {
		t.Run(map[websocket.CompressionMode]string{websocket.CompressionDisabled: "plain", websocket.CompressionContextTakeover: "compressed"}[mode], func(t *testing.T) {
			s := startServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := "Bearer " + testToken
			c, _, err := websocket.Dial(ctx, "wss://echo.test/ws", &websocket.DialOptions{
				HTTPClient:      client(t, s, s.Addr(), false),
				HTTPHeader:      http.Header{"Authorization": {a}},
				CompressionMode: mode,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			for _, want := range []string{"auth: " + a, a, "frag: " + a} {
				_, got, err := c.Read(ctx)
				if err != nil || string(got) != want {
					t.Fatalf("message = %q, %v; want %q", got, err, want)
				}
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("ping-me")); err != nil {
				t.Fatal(err)
			}
			if _, got, err := c.Read(ctx); err != nil || string(got) != "ping-me" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			if m := s.Messages(); len(m) != 1 || string(m[0].Data) != "ping-me" {
				t.Errorf("Messages() = %v", m)
			}
		})
	}
}

func TestTCPCounter(t *testing.T) {
	c, err := NewTCPCounter()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	conn, err := net.Dial("tcp", c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(make([]byte, 1000))
	conn.(*net.TCPConn).CloseWrite()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "got 1000 bytes" {
		t.Errorf("TCPCounter answered %q, %v; want %q", got, err, "got 1000 bytes")
	}
}
