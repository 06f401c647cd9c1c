package wsrelay

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// startRawUpstream answers every request with a 101 carrying the headers
// head returns, whatever they are, and holds the connection open.
func startRawUpstream(t *testing.T, head func(r *http.Request) http.Header) string {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := head(r)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
		h.Write(brw)
		brw.WriteString("\r\n")
		brw.Flush()
		<-done
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	return srv.URL
}

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

func TestAcceptKey(t *testing.T) {
	// RFC 6455 section 1.3's example.
	if got, want := AcceptKey(testKey), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Errorf("AcceptKey(%q) = %q, want %q", testKey, got, want)
	}
}

func TestCheckHandshake(t *testing.T) {
	good := func() (*http.Request, *http.Response) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Sec-WebSocket-Key", testKey)
		req.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits; server_max_window_bits=12, permessage-deflate")
		req.Header.Set("Sec-WebSocket-Protocol", "chat, superchat")
		resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{}}
		resp.Header.Set("Upgrade", "WebSocket")
		resp.Header.Set("Connection", "keep-alive, Upgrade")
		resp.Header.Set("Sec-WebSocket-Accept", AcceptKey(testKey))
		return req, resp
	}
	cases := []struct {
		name    string
		edit    func(req *http.Request, resp *http.Response)
		wantErr error // nil = accepted
	}{
		{"minimal", func(*http.Request, *http.Response) {}, nil},
		{"deflate", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
		}, nil},
		{"deflate with all parameters", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", `permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits="10"; client_max_window_bits=9`)
		}, nil},
		{"subprotocol offered", func(_ *http.Request, r *http.Response) { r.Header.Set("Sec-WebSocket-Protocol", "superchat") }, nil},
		{"status 200", func(_ *http.Request, r *http.Response) { r.StatusCode = 200 }, ErrHandshake},
		{"wrong accept", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Accept", AcceptKey("AAAAAAAAAAAAAAAAAAAAAA=="))
		}, ErrHandshake},
		{"two accepts", func(_ *http.Request, r *http.Response) {
			r.Header.Add("Sec-WebSocket-Accept", AcceptKey(testKey))
		}, ErrHandshake},
		{"no accept", func(_ *http.Request, r *http.Response) { r.Header.Del("Sec-WebSocket-Accept") }, ErrHandshake},
		{"no key", func(req *http.Request, _ *http.Response) { req.Header.Del("Sec-WebSocket-Key") }, ErrHandshake},
		{"missing Upgrade", func(_ *http.Request, r *http.Response) { r.Header.Del("Upgrade") }, ErrHandshake},
		{"Upgrade h2c", func(_ *http.Request, r *http.Response) { r.Header.Set("Upgrade", "h2c") }, ErrHandshake},
		{"Connection without upgrade", func(_ *http.Request, r *http.Response) { r.Header.Set("Connection", "keep-alive") }, ErrHandshake},
		{"extension not offered", func(req *http.Request, r *http.Response) {
			req.Header.Del("Sec-WebSocket-Extensions")
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
		}, ErrExtension},
		{"unknown extension", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")
		}, ErrExtension},
		{"two extensions", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate, permessage-deflate")
		}, ErrExtension},
		{"unknown parameter", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; mystery")
		}, ErrExtension},
		{"repeated parameter", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover; server_no_context_takeover")
		}, ErrExtension},
		{"window bits out of range", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=16")
		}, ErrExtension},
		{"window bits without value", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
		}, ErrExtension},
		{"no_context_takeover with a value", func(_ *http.Request, r *http.Response) {
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover=1")
		}, ErrExtension},
		{"client window bits not offered", func(req *http.Request, r *http.Response) {
			req.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=10")
		}, ErrExtension},
		{"server window over the offer", func(req *http.Request, r *http.Response) {
			req.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=10")
			r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=12")
		}, ErrExtension},
		{"subprotocol not offered", func(_ *http.Request, r *http.Response) { r.Header.Set("Sec-WebSocket-Protocol", "mqtt") }, ErrHandshake},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, resp := good()
			tc.edit(req, resp)
			err := CheckHandshake(req, resp)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("CheckHandshake = %v, want nil", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("CheckHandshake = %v, want %v", err, tc.wantErr)
			case err != nil && !errors.Is(err, ErrHandshake):
				t.Fatalf("CheckHandshake = %v, does not wrap ErrHandshake", err)
			}
			if err != nil {
				values := append(resp.Header.Values("Sec-WebSocket-Accept"), resp.Header.Values("Sec-WebSocket-Protocol")...)
				for _, v := range append(values, testKey, "mystery", "16", "=10", "=12") {
					if strings.Contains(err.Error(), v) {
						t.Errorf("error %q holds the header value %q", err, v)
					}
				}
			}
		})
	}
}

func TestIsUpgrade(t *testing.T) {
	cases := []struct {
		name          string
		method        string
		header        map[string]string
		wantWS, other bool
	}{
		{"websocket", "GET", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, true, false},
		{"case and lists", "GET", map[string]string{"Connection": "keep-alive, UPGRADE", "Upgrade": "WebSocket"}, true, false},
		{"plain", "GET", nil, false, false},
		{"h2c", "GET", map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c"}, false, true},
		{"websocket and h2c", "GET", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket, h2c"}, true, true},
		{"Connection upgrade alone", "GET", map[string]string{"Connection": "Upgrade"}, false, true},
		{"Upgrade without Connection", "GET", map[string]string{"Upgrade": "websocket"}, false, true},
		{"POST websocket", "POST", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, false, true},
		{"keep-alive", "GET", map[string]string{"Connection": "keep-alive"}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			ws, other := IsUpgrade(req)
			if ws != tc.wantWS || other != tc.other {
				t.Errorf("IsUpgrade(%v) = %t, %t; want %t, %t", tc.header, ws, other, tc.wantWS, tc.other)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"deflate", Config{Extensions: "permessage-deflate; server_max_window_bits=9"}, true},
		{"negative max", Config{MaxMessage: -1}, false},
		{"unknown extension", Config{Extensions: "x-frame-deflate"}, false},
		{"malformed", Config{Extensions: "permessage-deflate; =3"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%t", err, tc.ok)
			}
			if err == nil {
				return
			}
			r := New(nopConn{}, tc.cfg)
			if _, rerr := r.Read(make([]byte, 10)); rerr == nil {
				t.Error("Read on a relay with a bad config succeeded")
			}
			if _, werr := r.Write([]byte{0x81, 0x80, 0, 0, 0, 0}); werr == nil {
				t.Error("Write on a relay with a bad config succeeded")
			}
		})
	}
}

type nopConn struct{}

func (nopConn) Read([]byte) (int, error)    { return 0, errors.New("nop") }
func (nopConn) Write(p []byte) (int, error) { return len(p), nil }
func (nopConn) Close() error                { return nil }
