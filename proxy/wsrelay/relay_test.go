package wsrelay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// serverMessage is what an upstream sends: fragments of one message.
type serverMessage struct {
	typ   websocket.MessageType
	parts []string
}

func (m serverMessage) whole() string { return strings.Join(m.parts, "") }

func sendAll(msgs []serverMessage) func(ctx context.Context, c *websocket.Conn, u *upstream) {
	return func(ctx context.Context, c *websocket.Conn, u *upstream) {
		for _, m := range msgs {
			w, err := c.Writer(ctx, m.typ)
			if err != nil {
				return
			}
			for _, p := range m.parts {
				if _, err := io.WriteString(w, p); err != nil {
					return
				}
			}
			if err := w.Close(); err != nil {
				return
			}
		}
		echo(ctx, c, u)
	}
}

func pseudoText(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, seed))
	const words = "lorem ipsum dolor sit amet token bearer header frame deflate "
	var b strings.Builder
	for b.Len() < n {
		i := r.IntN(len(words) - 8)
		b.WriteString(words[i : i+1+r.IntN(7)])
	}
	return b.String()[:n]
}

func TestRelayScrubsServerMessages(t *testing.T) {
	big := pseudoText(1<<20, 1)
	big = big[:300_000] + secret + big[300_000:600_000] + secret + big[600_000:]
	split := len(secret) / 2
	cases := []struct {
		name string
		msgs []serverMessage
	}{
		{"text", []serverMessage{{websocket.MessageText, []string{"token=" + secret + " ok"}}}},
		{"binary", []serverMessage{{websocket.MessageBinary, []string{"\x00\x01" + secret + "\xff"}}}},
		{"large", []serverMessage{{websocket.MessageText, []string{big}}}},
		{"fragmented", []serverMessage{{websocket.MessageText, []string{"a " + secret, " b ", secret + " c"}}}},
		{"straddling fragments", []serverMessage{{websocket.MessageText, []string{"x " + secret[:split], secret[split:] + " y"}}}},
		{"straddling, one byte fragments", []serverMessage{{websocket.MessageBinary, strings.Split(secret+secret, "")}}},
		{"several", []serverMessage{
			{websocket.MessageText, []string{secret}},
			{websocket.MessageBinary, []string{"no token here"}},
			{websocket.MessageText, []string{""}},
			{websocket.MessageText, []string{pseudoText(5000, 2) + secret}},
		}},
	}
	for _, m := range modes {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				up := startUpstream(t, m.mode, sendAll(tc.msgs))
				p := startProxy(t, up.url, filterConfig())
				c := dial(t, p.url, m.mode)
				ctx := testContext(t)
				for i, want := range tc.msgs {
					typ, got, err := c.Read(ctx)
					if err != nil {
						t.Fatalf("message %d: Read: %v", i, err)
					}
					wantText := strings.ReplaceAll(want.whole(), secret, placeholder)
					if typ != want.typ || string(got) != wantText {
						t.Fatalf("message %d = (%v, %d bytes), want (%v, %d bytes); secret present: %t",
							i, typ, len(got), want.typ, len(wantText), bytes.Contains(got, []byte(secret)))
					}
				}
				raw := p.clientBytes()
				if m.mode == websocket.CompressionDisabled && bytes.Contains(raw, []byte(secret)) {
					t.Error("secret in the bytes sent to the client")
				}
				if m.mode != websocket.CompressionDisabled && !hasCompressedFrame(t, raw) {
					t.Error("no compressed frame reached the client; compression not exercised")
				}
			})
		}
	}
}

func hasCompressedFrame(t *testing.T, raw []byte) bool {
	t.Helper()
	for _, f := range parseFrames(t, raw) {
		if f.rsv1 {
			return true
		}
	}
	return false
}

// TestRelayContextTakeover sends many similar messages, so that the
// upstream's compressor refers back to earlier ones.
func TestRelayContextTakeover(t *testing.T) {
	for _, m := range modes[1:] {
		t.Run(m.name, func(t *testing.T) {
			var msgs []serverMessage
			for i := range 60 {
				s := fmt.Sprintf(`{"seq":%d,"auth":"Bearer %s","body":"%s"}`, i, secret, pseudoText(200+i*37, uint64(i%3)))
				msgs = append(msgs, serverMessage{websocket.MessageText, []string{s}})
			}
			up := startUpstream(t, m.mode, sendAll(msgs))
			p := startProxy(t, up.url, filterConfig())
			c := dial(t, p.url, m.mode)
			ctx := testContext(t)
			for i, want := range msgs {
				_, got, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("message %d: Read: %v", i, err)
				}
				if w := strings.ReplaceAll(want.whole(), secret, placeholder); string(got) != w {
					t.Fatalf("message %d = %q, want %q", i, got, w)
				}
			}
			// Client to server too: the relay tracks the client's context.
			for i := range 40 {
				msg := fmt.Sprintf("client %d %s", i, pseudoText(300, uint64(i%2)))
				if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatalf("Write %d: %v", i, err)
				}
				if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
					t.Fatalf("echo %d = %q, %v; want %q", i, got, err, msg)
				}
			}
		})
	}
}

func closeStatus(err error) websocket.StatusCode { return websocket.CloseStatus(err) }

func TestRelayChecksClientMessages(t *testing.T) {
	cases := []struct {
		name  string
		parts []string
	}{
		{"whole", []string{"call " + forbidden + " now"}},
		{"straddling fragments", []string{"call FORBID", "DEN-PH now"}},
		{"at the end", []string{strings.Repeat("z", 70_000), forbidden}},
	}
	for _, m := range modes {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				up := startUpstream(t, m.mode, nil)
				p := startProxy(t, up.url, filterConfig())
				c := dial(t, p.url, m.mode)
				ctx := testContext(t)

				ok := "hello " + placeholder + " " + pseudoText(1000, 3)
				if err := c.Write(ctx, websocket.MessageText, []byte(ok)); err != nil {
					t.Fatalf("Write: %v", err)
				}
				if _, got, err := c.Read(ctx); err != nil || string(got) != ok {
					t.Fatalf("echo = %d bytes, %v; want %d bytes", len(got), err, len(ok))
				}

				w, err := c.Writer(ctx, websocket.MessageText)
				if err != nil {
					t.Fatal(err)
				}
				for _, part := range tc.parts {
					if _, err := io.WriteString(w, part); err != nil {
						break
					}
				}
				w.Close()
				_, _, err = c.Read(ctx)
				if got := closeStatus(err); got != websocket.StatusPolicyViolation {
					t.Fatalf("Read after forbidden message: %v, want close %d", err, websocket.StatusPolicyViolation)
				}
				if r := p.reason(t); r != ReasonPolicy {
					t.Errorf("OnClose reason = %q, want %q", r, ReasonPolicy)
				}
				time.Sleep(50 * time.Millisecond) // let anything in flight land
				for _, got := range up.received() {
					if strings.Contains(got, forbidden) {
						t.Fatal("upstream received the forbidden placeholder")
					}
				}
				if got := up.received(); len(got) != 1 || got[0] != ok {
					for _, g := range got {
						t.Logf("received %d bytes: %.40q", len(g), g)
					}
					t.Errorf("upstream received %d messages, want only the allowed one", len(got))
				}
			})
		}
	}
}

func TestRelayPingPongAndClose(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			serverGot := make(chan error, 1)
			up := startUpstream(t, m.mode, func(ctx context.Context, c *websocket.Conn, u *upstream) {
				ctx = c.CloseRead(ctx) // answers the client's pings
				if err := c.Ping(ctx); err != nil {
					serverGot <- fmt.Errorf("server ping: %w", err)
					return
				}
				serverGot <- nil
				<-ctx.Done()
			})
			p := startProxy(t, up.url, filterConfig())
			c := dial(t, p.url, m.mode)
			ctx := c.CloseRead(testContext(t)) // answers the server's pings
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("client ping: %v", err)
			}
			if err := <-serverGot; err != nil {
				t.Fatal(err)
			}
			if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
				t.Fatalf("close handshake: %v", err)
			}
			if r := p.reason(t); r != ReasonNormal {
				t.Errorf("OnClose reason = %q, want normal", r)
			}
		})
	}
}

func TestRelayScrubsCloseReason(t *testing.T) {
	up := startUpstream(t, websocket.CompressionDisabled, func(ctx context.Context, c *websocket.Conn, u *upstream) {
		c.Close(websocket.StatusGoingAway, "rotated "+secret+" "+strings.Repeat("r", 80))
	})
	p := startProxy(t, up.url, filterConfig())
	c := dial(t, p.url, websocket.CompressionDisabled)
	_, _, err := c.Read(testContext(t))
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("Read = %v, want a close error", err)
	}
	if ce.Code != websocket.StatusGoingAway || !strings.HasPrefix(ce.Reason, "rotated "+placeholder+" ") {
		t.Errorf("close = %d %q, want %d with the placeholder", ce.Code, ce.Reason, websocket.StatusGoingAway)
	}
	if bytes.Contains(p.clientBytes(), []byte(secret)) {
		t.Error("secret in the bytes sent to the client")
	}
}

func TestRelayRefusesNonFrames(t *testing.T) {
	up := startUpstream(t, websocket.CompressionDisabled, nil)
	p := startProxy(t, up.url, filterConfig())
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	head := make([]byte, 0, 512)
	buf := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := conn.Read(buf); err != nil {
			t.Fatalf("reading 101: %v", err)
		}
		head = append(head, buf[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		t.Fatalf("handshake answer %q", head)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: evil\r\n\r\n")
	rest, _ := io.ReadAll(conn)
	frames := parseFrames(t, rest)
	if len(frames) != 1 || frames[0].op != opClose || len(frames[0].payload) < 2 ||
		int(frames[0].payload[0])<<8|int(frames[0].payload[1]) != StatusProtocolError {
		t.Fatalf("client got %v, want one close frame 1002", frames)
	}
	if r := p.reason(t); r != ReasonProtocol {
		t.Errorf("OnClose reason = %q, want %q", r, ReasonProtocol)
	}
	if got := up.received(); len(got) != 0 {
		t.Errorf("upstream received %d messages, want none", len(got))
	}
}

func TestRelayTooBig(t *testing.T) {
	const limit = 64 << 10
	noise := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{7}).Read(noise) // incompressible
	t.Run("server to client", func(t *testing.T) {
		up := startUpstream(t, websocket.CompressionNoContextTakeover, func(ctx context.Context, c *websocket.Conn, u *upstream) {
			c.Write(ctx, websocket.MessageBinary, noise)
			c.Read(ctx)
		})
		cfg := filterConfig()
		cfg.MaxMessage = limit
		p := startProxy(t, up.url, cfg)
		c := dial(t, p.url, websocket.CompressionNoContextTakeover)
		_, _, err := c.Read(testContext(t))
		if got := closeStatus(err); got != websocket.StatusMessageTooBig {
			t.Fatalf("Read = %v, want close %d", err, websocket.StatusMessageTooBig)
		}
		if r := p.reason(t); r != ReasonTooBig {
			t.Errorf("OnClose reason = %q, want %q", r, ReasonTooBig)
		}
	})
	t.Run("client to server", func(t *testing.T) {
		up := startUpstream(t, websocket.CompressionNoContextTakeover, nil)
		cfg := filterConfig()
		cfg.MaxMessage = limit
		p := startProxy(t, up.url, cfg)
		c := dial(t, p.url, websocket.CompressionNoContextTakeover)
		ctx := testContext(t)
		c.Write(ctx, websocket.MessageBinary, noise)
		_, _, err := c.Read(ctx)
		if got := closeStatus(err); got != websocket.StatusMessageTooBig {
			t.Fatalf("Read = %v, want close %d", err, websocket.StatusMessageTooBig)
		}
		if got := up.received(); len(got) != 0 {
			t.Errorf("upstream received %d messages, want none", len(got))
		}
	})
}

func TestProxyHandshakeRefused(t *testing.T) {
	// An upstream that accepts an extension the client never offered.
	srv := startRawUpstream(t, func(r *http.Request) http.Header {
		return http.Header{
			"Upgrade":                  {"websocket"},
			"Connection":               {"Upgrade"},
			"Sec-Websocket-Accept":     {AcceptKey(r.Header.Get("Sec-WebSocket-Key"))},
			"Sec-Websocket-Extensions": {"permessage-deflate"},
		}
	})
	p := startProxy(t, srv, filterConfig())
	ctx := testContext(t)
	_, _, err := websocket.Dial(ctx, p.url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{}}})
	if err == nil {
		t.Fatal("Dial succeeded, want the proxy to refuse")
	}
	select {
	case err := <-p.handshakeErr:
		if !errors.Is(err, ErrExtension) {
			t.Errorf("CheckHandshake = %v, want ErrExtension", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("CheckHandshake did not refuse")
	}
}
