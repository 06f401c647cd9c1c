package proxy

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsEcho echoes messages; on "abort" it drops the TCP connection without a
// close frame. wantAuth, if set, must be the handshake's Authorization.
func wsEcho(t *testing.T, wantAuth string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if wantAuth != "" && r.Header.Get("Authorization") != wantAuth {
			t.Errorf("upstream handshake Authorization wrong (len %d)", len(r.Header.Get("Authorization")))
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionContextTakeover})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if string(msg) == "abort" {
				_ = c.CloseNow()
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}
}

func TestWebSocket(t *testing.T) {
	mitmUp := newUpstream(t, true, wsEcho(t, "Bearer "+tokAPI))
	tunnelUp := newUpstream(t, true, wsEcho(t, "Bearer "+phAPI)) // a blind tunnel touches nothing: but the tripwire can't see it either
	plainUp := newUpstream(t, false, wsEcho(t, ""))
	tp := startProxy(t, testPolicy, testTokens(), map[string]string{
		"api.example.test:443":    mitmUp.Addr(),
		"b.example.test:443":      tunnelUp.Addr(),
		"allowed.example.test:80": plainUp.Addr(),
	})
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB frame
	for _, tc := range []struct {
		name, url string
		cl        *http.Client
		hdr       http.Header
	}{
		{"MITM", "wss://api.example.test/backend-api/codex/responses", tp.client(), http.Header{"Authorization": {"Bearer " + phAPI}}},
		{"tunnel", "wss://b.example.test/ws", tp.tunnelClient(), http.Header{"Authorization": {"Bearer " + phAPI}}},
		{"plain", "ws://allowed.example.test/ws", tp.client(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, tc.url, &websocket.DialOptions{
				HTTPClient:      tc.cl,
				HTTPHeader:      tc.hdr,
				CompressionMode: websocket.CompressionContextTakeover,
			})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.CloseNow()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
				t.Errorf("extensions %q: permessage-deflate not negotiated through the proxy", ext)
			}
			c.SetReadLimit(1 << 20)
			for _, msg := range [][]byte{[]byte(`{"type":"response.create"}`), big, []byte("after big")} {
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					t.Fatalf("write: %v", err)
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
				}
			}
			// The upstream drops the connection: the client must see it promptly.
			if err := c.Write(ctx, websocket.MessageText, []byte("abort")); err != nil {
				t.Fatalf("write: %v", err)
			}
			start := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			defer rcancel()
			if _, _, err := c.Read(rctx); err == nil {
				t.Fatal("read after upstream abort succeeded")
			} else if rctx.Err() != nil {
				t.Fatalf("upstream abort not propagated to the client: %v", err)
			}
			t.Logf("client saw the abort after %v", time.Since(start))
		})
	}
	if !eventually(t, func() bool {
		logs := tp.logs.String()
		return strings.Contains(logs, `"decision":"inject"`) && strings.Contains(logs, `"status":101`)
	}) {
		t.Errorf("no audit line for the intercepted upgrade")
	}
}
