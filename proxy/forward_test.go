package proxy

import (
	"io"
	"net/http"
	"testing"
)

func TestRemoveProxyHeaders(t *testing.T) {
	tests := []struct {
		name     string
		h        http.Header
		keepConn bool
	}{
		{"plain", http.Header{"Connection": {"keep-alive"}}, false},
		{"websocket", http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"upgrade to something else", http.Header{"Connection": {"upgrade"}, "Upgrade": {"h2c"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "https://api.example.test/", nil)
			r.RequestURI = "/"
			r.Header = tt.h
			r.Header.Set("Proxy-Connection", "keep-alive")
			r.Header.Set("Proxy-Authorization", "Basic eDp5")
			r.Header.Set("Proxy-Authenticate", "Basic")
			r.Header.Set("Accept-Encoding", "gzip")
			removeProxyHeaders(r)
			for _, k := range []string{"Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate"} {
				if v, ok := r.Header[k]; ok {
					t.Errorf("removeProxyHeaders: %s = %q, want it removed", k, v)
				}
			}
			if _, ok := r.Header["Connection"]; ok != tt.keepConn {
				t.Errorf("removeProxyHeaders: Connection kept = %v, want %v", ok, tt.keepConn)
			}
			if r.Header.Get("Accept-Encoding") != "gzip" {
				t.Errorf("removeProxyHeaders: Accept-Encoding = %q, want it kept (docs/DESIGN.md, trap 9)", r.Header.Get("Accept-Encoding"))
			}
			if r.RequestURI != "" {
				t.Errorf("removeProxyHeaders: RequestURI = %q, want empty", r.RequestURI)
			}
		})
	}
}

func TestIsWebSocketHandshake(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"canonical", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"tokens and case", http.Header{"Connection": {"keep-alive,  UPGRADE "}, "Upgrade": {"h2c, WebSocket"}}, true},
		{"keys not canonical", http.Header{"connection": {"upgrade"}, "upgrade": {"websocket"}}, true},
		{"second value", http.Header{"Connection": {"keep-alive", "upgrade"}, "Upgrade": {"websocket"}}, true},
		{"no upgrade token", http.Header{"Connection": {"keep-alive"}, "Upgrade": {"websocket"}}, false},
		{"other protocol", http.Header{"Connection": {"upgrade"}, "Upgrade": {"h2c"}}, false},
		{"token inside a word", http.Header{"Connection": {"upgraded"}, "Upgrade": {"websockets"}}, false},
		{"empty", http.Header{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isWebSocketHandshake(tt.h); got != tt.want {
				t.Errorf("isWebSocketHandshake(%v) = %v, want %v", tt.h, got, tt.want)
			}
		})
	}
}

// An answer that is not 101 is passed on whole, whatever its Upgrade
// headers say: only a 101 turns the connection into a WebSocket relay.
func TestUpgradeHeadersWithout101(t *testing.T) {
	e := newStdEnv(t)
	e.apiSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "upgrade")
		w.Header().Set("Upgrade", "websocket")
		_, _ = io.WriteString(w, "a whole answer")
	})
	resp, err := e.tp.client().Get("https://api.example.test/x")
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); resp.StatusCode != 200 || got != "a whole answer" {
		t.Errorf("got %d %q, want 200 and the whole body", resp.StatusCode, got)
	}
}
