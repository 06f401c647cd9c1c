package wsrelay

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUpstream hands the relay data, then io.EOF (eof) or blocks until
// closed; it records what the relay writes.
type fakeUpstream struct {
	data   []byte
	eof    bool
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	written bytes.Buffer
}

func newFakeUpstream(data []byte, eof bool) *fakeUpstream {
	return &fakeUpstream{data: data, eof: eof, closed: make(chan struct{})}
}

func (u *fakeUpstream) Read(p []byte) (int, error) {
	select {
	case <-u.closed:
		return 0, net.ErrClosed
	default:
	}
	if len(u.data) > 0 {
		n := copy(p, u.data)
		u.data = u.data[n:]
		return n, nil
	}
	if u.eof {
		return 0, io.EOF
	}
	<-u.closed
	return 0, net.ErrClosed
}

func (u *fakeUpstream) Write(p []byte) (int, error) {
	select {
	case <-u.closed:
		return 0, net.ErrClosed
	default:
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written.Write(p)
}

func (u *fakeUpstream) Close() error {
	u.once.Do(func() { close(u.closed) })
	return nil
}

func (u *fakeUpstream) got() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return bytes.Clone(u.written.Bytes())
}

type relayRun struct {
	toClient, toUpstream []byte
	writeErr             error
	reason               string
}

// runRelay relays server bytes (then EOF) and client bytes (written in
// pieces of step bytes) through one Relay, like the proxy's two copies.
func runRelay(t *testing.T, cfg Config, server, client []byte, step int) relayRun {
	t.Helper()
	up := newFakeUpstream(server, client == nil)
	reasons := make(chan string, 2)
	cfg.OnClose = func(r string) { reasons <- r }
	r := New(up, cfg)
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- b
	}()
	var run relayRun
	for len(client) > 0 && run.writeErr == nil {
		n := min(step, len(client))
		_, run.writeErr = r.Write(client[:n])
		client = client[n:]
	}
	if client != nil && run.writeErr == nil {
		time.Sleep(20 * time.Millisecond) // let Read pass on what it has
		r.Close()
	}
	select {
	case run.toClient = <-out:
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not end")
	}
	r.Close()
	run.toUpstream = up.got()
	run.reason = <-reasons
	return run
}

func serverFrame(fin bool, op byte, payload string) []byte {
	return appendFrame(nil, fin, false, op, false, []byte(payload))
}

func clientFrame(fin bool, op byte, payload string) []byte {
	return appendFrame(nil, fin, false, op, true, []byte(payload))
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func closeCode(t *testing.T, f wireFrame) int {
	t.Helper()
	if f.op != opClose || len(f.payload) < 2 {
		t.Fatalf("frame %v is not a close frame with a code", f)
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

func TestRelayKeepsFragments(t *testing.T) {
	server := cat(
		serverFrame(false, opText, "a SECRET-TO"),
		serverFrame(true, opPing, "p"),
		serverFrame(false, opContinuation, "KEN-1234 b"),
		serverFrame(false, opContinuation, ""),
		serverFrame(true, opContinuation, "SECRET"),
	)
	run := runRelay(t, filterConfig(), server, nil, 0)
	got := parseFrames(t, run.toClient)
	want := []wireFrame{
		{fin: false, op: opText, payload: []byte("a ")},
		{fin: true, op: opPing, payload: []byte("p")},
		{fin: false, op: opContinuation, payload: []byte(placeholder + " b")},
		{fin: false, op: opContinuation, payload: []byte("")},
		{fin: true, op: opContinuation, payload: []byte("SECRET")},
	}
	if len(got) != len(want) {
		t.Fatalf("client got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].fin != want[i].fin || got[i].op != want[i].op || !bytes.Equal(got[i].payload, want[i].payload) {
			t.Errorf("frame %d = %v %q, want %v %q", i, got[i], got[i].payload, want[i], want[i].payload)
		}
	}
	if run.reason != ReasonNormal {
		t.Errorf("reason = %q, want normal", run.reason)
	}
}

func TestRelayControlFrames(t *testing.T) {
	long := strings.Repeat("é", 60) // 120 bytes
	expand := func() Filter { return &matcher{needle: []byte("é"), repl: []byte("EEE")} }
	cases := []struct {
		name    string
		filter  func() Filter
		frame   []byte
		wantOp  byte
		wantLen int
		check   func(t *testing.T, p []byte)
	}{
		{"ping scrubbed", scrubber, serverFrame(true, opPing, secret), opPing, len(placeholder), func(t *testing.T, p []byte) {
			if string(p) != placeholder {
				t.Errorf("ping payload %q, want %q", p, placeholder)
			}
		}},
		{"pong unchanged", scrubber, serverFrame(true, opPong, "pong-data"), opPong, 9, nil},
		{"empty close", scrubber, serverFrame(true, opClose, ""), opClose, 0, nil},
		{"close reason truncated", expand, serverFrame(true, opClose, "\x03\xe8"+long), opClose, 125, func(t *testing.T, p []byte) {
			if string(p[2:]) != strings.Repeat("EEE", 60)[:123] {
				t.Errorf("reason %q", p[2:])
			}
		}},
		{"close reason truncated on a character", func() Filter { return &matcher{needle: []byte("x"), repl: []byte("é")} },
			serverFrame(true, opClose, "\x03\xe8"+strings.Repeat("x", 100)), opClose, 124, nil},
		{"ping truncated", expand, serverFrame(true, opPing, long), opPing, 125, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := runRelay(t, Config{Server: tc.filter}, tc.frame, nil, 0)
			got := parseFrames(t, run.toClient)
			if len(got) != 1 || got[0].op != tc.wantOp || len(got[0].payload) != tc.wantLen {
				t.Fatalf("client got %v, want one op=%d frame of %d bytes", got, tc.wantOp, tc.wantLen)
			}
			if tc.check != nil {
				tc.check(t, got[0].payload)
			}
		})
	}
}

func TestRelayProtocolErrors(t *testing.T) {
	rsv := func(b []byte, bits byte) []byte { b[0] |= bits; return b }
	unmasked := serverFrame(true, opText, "hi")
	cases := []struct {
		name   string
		ext    string
		server []byte // frames from upstream (nil: none)
		client []byte // frames from the client
	}{
		{"unmasked client frame", "", nil, unmasked},
		{"HTTP request", "", nil, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"reserved opcode", "", nil, clientFrame(true, 0x3, "x")},
		{"reserved control opcode", "", nil, clientFrame(true, 0xb, "x")},
		{"RSV2", "", nil, rsv(clientFrame(true, opText, "x"), 0x20)},
		{"RSV3", "permessage-deflate", nil, rsv(clientFrame(true, opText, "x"), 0x10)},
		{"RSV1 without deflate", "", nil, rsv(clientFrame(true, opText, "x"), 0x40)},
		{"RSV1 on a continuation", "permessage-deflate", nil, cat(clientFrame(false, opText, "x"), rsv(clientFrame(true, opContinuation, "y"), 0x40))},
		{"RSV1 on a ping", "permessage-deflate", nil, rsv(clientFrame(true, opPing, ""), 0x40)},
		{"fragmented ping", "", nil, clientFrame(false, opPing, "x")},
		{"long ping", "", nil, clientFrame(true, opPing, strings.Repeat("p", 126))},
		{"stray continuation", "", nil, clientFrame(true, opContinuation, "x")},
		{"message inside a message", "", nil, cat(clientFrame(false, opText, "x"), clientFrame(true, opBinary, "y"))},
		{"one byte close", "", nil, clientFrame(true, opClose, "\x03")},
		{"close code 1005", "", nil, clientFrame(true, opClose, "\x03\xed")},
		{"close code 999", "", nil, clientFrame(true, opClose, "\x03\xe7")},
		{"64-bit length top bit", "", nil, []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}},
		{"corrupt compressed message", "permessage-deflate", nil, rsv(clientFrame(true, opText, "\xff\xff\xff\xff"), 0x40)},
		{"masked server frame", "", clientFrame(true, opText, "x"), nil},
		{"server reserved opcode", "", serverFrame(true, 0x7, "x"), nil},
		{"corrupt compressed server message", "permessage-deflate", rsv(serverFrame(true, opBinary, "\xff\xff\xff\xff"), 0x40), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filterConfig()
			cfg.Extensions = tc.ext
			run := runRelay(t, cfg, tc.server, tc.client, 3)
			if tc.client != nil && !errors.Is(run.writeErr, ErrProtocol) {
				t.Errorf("Write error = %v, want ErrProtocol", run.writeErr)
			}
			if run.reason != ReasonProtocol {
				t.Errorf("reason = %q, want %q", run.reason, ReasonProtocol)
			}
			frames := parseFrames(t, run.toClient)
			if len(frames) != 1 || closeCode(t, frames[0]) != StatusProtocolError {
				t.Fatalf("client got %v, want one close 1002", frames)
			}
			up := parseFrames(t, run.toUpstream)
			if tc.client == nil {
				if len(up) != 0 {
					t.Errorf("upstream got %v, want nothing", up)
				}
				return
			}
			// What came before the bad frame may pass; then a close 1002.
			if len(up) == 0 || closeCode(t, up[len(up)-1]) != StatusProtocolError {
				t.Fatalf("upstream got %v, want a close 1002 last", up)
			}
			for _, f := range up[:len(up)-1] {
				if f.op != opText || string(f.payload) != "x" {
					t.Errorf("upstream got %v %q before the close", f, f.payload)
				}
			}
		})
	}
}

func TestRelayClientPasses(t *testing.T) {
	client := cat(
		clientFrame(false, opText, "hello FORBIDDEN"),
		clientFrame(true, opPing, "ping"),
		clientFrame(true, opContinuation, "-P world"),
		clientFrame(true, opBinary, strings.Repeat("b", 70_000)),
		clientFrame(true, opClose, "\x03\xe8bye"),
		clientFrame(true, opText, "after close: dropped"),
	)
	run := runRelay(t, filterConfig(), nil, client, 1000)
	if run.writeErr != nil {
		t.Fatalf("Write = %v", run.writeErr)
	}
	var text, binary []byte
	var ops []byte
	for _, f := range parseFrames(t, run.toUpstream) {
		ops = append(ops, f.op)
		switch f.op {
		case opText:
			text = append(text, f.payload...)
		case opContinuation:
			if binary != nil {
				binary = append(binary, f.payload...)
			} else {
				text = append(text, f.payload...)
			}
		case opBinary:
			binary = append(binary, f.payload...)
		case opClose:
			if string(f.payload) != "\x03\xe8bye" {
				t.Errorf("close payload %q", f.payload)
			}
		}
	}
	if string(text) != "hello FORBIDDEN-P world" || len(binary) != 70_000 {
		t.Errorf("upstream got text %q and %d binary bytes (ops %v)", text, len(binary), ops)
	}
	if bytes.Contains(run.toUpstream, []byte("dropped")) {
		t.Error("a frame after the client's close was forwarded")
	}
}

func TestRelayHuffmanOnlyForSmallWindow(t *testing.T) {
	plain := []byte(strings.Repeat("abcdefgh", 4096) + secret)
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestCompression)
	zw.Write(plain)
	zw.Flush()
	payload := bytes.TrimSuffix(z.Bytes(), deflateTail)
	server := appendFrame(nil, true, true, opText, false, payload)
	for _, tc := range []struct {
		ext     string
		huffman bool
	}{
		{"permessage-deflate", false},
		{"permessage-deflate; server_max_window_bits=10", true},
	} {
		t.Run(tc.ext, func(t *testing.T) {
			run := runRelay(t, Config{Extensions: tc.ext, Server: scrubber}, server, nil, 0)
			frames := parseFrames(t, run.toClient)
			if len(frames) == 0 || !frames[0].rsv1 {
				t.Fatalf("client got %v, want a compressed message", frames)
			}
			var zmsg []byte
			for _, f := range frames {
				zmsg = append(zmsg, f.payload...)
			}
			got, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(zmsg), bytes.NewReader(deflateTail))))
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("inflate: %v", err)
			}
			if want := bytes.ReplaceAll(plain, []byte(secret), []byte(placeholder)); !bytes.Equal(got, want) {
				t.Fatalf("inflated %d bytes, want %d", len(got), len(want))
			}
			// Huffman-only coding cannot go below a bit per byte; with
			// back-references this input shrinks a hundredfold.
			if small := len(zmsg) < len(plain)/8; small == tc.huffman {
				t.Errorf("compressed to %d of %d bytes; want Huffman only: %t", len(zmsg), len(plain), tc.huffman)
			}
		})
	}
}

func TestRelayRedactsFormat(t *testing.T) {
	up := newFakeUpstream(serverFrame(true, opText, "token "+secret), false)
	r := New(up, Config{})
	buf := make([]byte, 4)
	if _, err := r.Read(buf); err != nil { // the rest stays buffered
		t.Fatal(err)
	}
	defer r.Close()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		if got := fmt.Sprintf(verb, r); strings.Contains(got, secret) || strings.Contains(got, "SECRET") ||
			strings.Contains(got, fmt.Sprintf("%x", "SECRET")) {
			t.Errorf("Sprintf(%q, relay) = %q, holds the payload", verb, got)
		}
	}
}
