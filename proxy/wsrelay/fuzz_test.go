package wsrelay

import (
	"bytes"
	"compress/flate"
	"io"
	"testing"
)

// FuzzClientBytes feeds arbitrary client bytes to a relay: it must not
// panic, and no message, control payload or close reason the upstream
// receives may hold the forbidden placeholder.
func FuzzClientBytes(f *testing.F) {
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestSpeed)
	zw.Write([]byte("say " + forbidden))
	zw.Flush()
	zForbidden := bytes.TrimSuffix(z.Bytes(), deflateTail)
	zFrame := appendFrame(nil, true, true, opText, true, zForbidden)

	f.Add(clientFrame(true, opText, "hello"), false, uint8(0))
	f.Add(cat(clientFrame(false, opText, "FORBID"), clientFrame(true, opContinuation, "DEN-PH")), false, uint8(2))
	f.Add(cat(clientFrame(true, opPing, forbidden), clientFrame(true, opClose, "\x03\xe8"+forbidden)), false, uint8(5))
	f.Add(zFrame, true, uint8(1))
	f.Add(cat(clientFrame(true, opBinary, "ok"), zFrame[:len(zFrame)-3]), true, uint8(200))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), false, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, deflate bool, step uint8) {
		cfg := filterConfig()
		if deflate {
			cfg.Extensions = "permessage-deflate"
		}
		up := newFakeUpstream(nil, false)
		r, done := drained(up, cfg)
		for n := int(step) + 1; len(data) > 0; data = data[min(n, len(data)):] {
			if _, err := r.Write(data[:min(n, len(data))]); err != nil {
				break
			}
		}
		r.Close()
		<-done
		for i, msg := range upstreamMessages(t, up.got()) {
			if bytes.Contains(msg, []byte(forbidden)) {
				t.Fatalf("upstream message %d holds the forbidden placeholder", i)
			}
		}
	})
}

// upstreamMessages reassembles what a relay wrote upstream: the payloads of
// whole or partial messages (inflated with the client's context) and of
// control frames.
func upstreamMessages(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var (
		msgs   [][]byte
		cur    []byte
		zipped bool
		dict   window
	)
	finish := func() {
		if zipped {
			zr := flate.NewReaderDict(io.MultiReader(bytes.NewReader(cur), bytes.NewReader(deflateTail)), dict.buf)
			plain, _ := io.ReadAll(zr)
			dict.write(plain)
			cur = plain
		}
		msgs = append(msgs, cur)
		cur, zipped = nil, false
	}
	for _, f := range parseFrames(t, b) {
		switch {
		case isControl(f.op):
			msgs = append(msgs, f.payload)
		case f.op == opContinuation:
			cur = append(cur, f.payload...)
		default:
			cur, zipped = append([]byte(nil), f.payload...), f.rsv1
		}
		if f.fin && !isControl(f.op) {
			finish()
		}
	}
	if cur != nil {
		finish()
	}
	return msgs
}

// A client that leaves a deflate block unfinished in one message, so that
// an upstream inflating all messages as one stream (Python's websockets,
// Node's ws) reads the next message's bytes as the rest of that block: the
// relay forwards only what it inflated and checked, re-deflated, so the
// upstream can never read past it.
func TestCompressedClientUnfinishedBlock(t *testing.T) {
	cfg := filterConfig()
	cfg.Extensions = "permessage-deflate"
	up := newFakeUpstream(nil, false)
	r, done := drained(up, cfg)
	m1 := append([]byte{0x00, 200, 0, 0xff ^ 200, 0xff}, "hello"...) // a stored block of 200 bytes, 5 sent
	m2 := append([]byte{0x01, 0x00, 0x00, 0xff, 0xff}, " leak "+forbidden+" "...)
	for _, m := range [][]byte{m1, m2} {
		if _, err := r.Write(appendFrame(nil, true, true, opBinary, true, m)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	r.Close()
	<-done
	// The upstream's view as one continuous inflate stream.
	var stream []byte
	for _, f := range parseFrames(t, up.got()) {
		if f.rsv1 {
			stream = append(append(stream, f.payload...), deflateTail...)
		}
	}
	plain, _ := io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
	if bytes.Contains(plain, []byte(forbidden)) {
		t.Errorf("a continuous inflate of what the upstream got holds the placeholder")
	}
	if !bytes.Contains(plain, []byte("hello")) {
		t.Errorf("upstream stream %q: want the checked first message", plain)
	}
}

// drained is a relay over up whose client side is read and discarded;
// done closes when that reading ends.
func drained(up io.ReadWriteCloser, cfg Config) (*Relay, <-chan struct{}) {
	r := New(up, cfg)
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	return r, done
}
