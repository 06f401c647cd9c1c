package wsrelay

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

const (
	streamTotal    = 64 << 20
	streamFragment = 1<<20 + 7 // odd, so secrets straddle fragments
)

// pattern is the repeated payload: a secret every 4 KiB.
var pattern = append(bytes.Repeat([]byte("x"), 4096-len(secret)), secret...)

// fragmentSource generates one message of streamTotal bytes in fragments
// without holding it: frame headers and pattern bytes, masked when masked.
type fragmentSource struct {
	masked bool
	key    [4]byte
	sent   int // payload bytes produced
	left   int // payload bytes left in the current frame
	frame  int // length of the current frame
	hdr    []byte
}

func (s *fragmentSource) Read(p []byte) (int, error) {
	if len(s.hdr) == 0 && s.left == 0 {
		if s.sent == streamTotal {
			return 0, io.EOF
		}
		n := min(streamFragment, streamTotal-s.sent)
		op := byte(opBinary)
		if s.sent > 0 {
			op = opContinuation
		}
		if s.sent+n == streamTotal {
			op |= 0x80
		}
		b1 := byte(127)
		if s.masked {
			b1 |= 0x80
		}
		s.hdr = binary.BigEndian.AppendUint64(append(s.hdr[:0], op, b1), uint64(n))
		if s.masked {
			s.hdr = append(s.hdr, s.key[:]...)
		}
		s.left, s.frame = n, n
	}
	if len(s.hdr) > 0 {
		n := copy(p, s.hdr)
		s.hdr = s.hdr[n:]
		return n, nil
	}
	n := min(len(p), s.left)
	for i := 0; i < n; {
		i += copy(p[i:n], pattern[(s.sent+i)%len(pattern):])
	}
	if s.masked {
		maskBytes(s.key, s.frame-s.left, p[:n]) // the key position is the offset in the frame
	}
	s.sent += n
	s.left -= n
	return n, nil
}

// frameSink parses server frames from a pipe and checks their payloads.
func frameSink(r io.Reader) (payload int, secrets, placeholders int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var tail []byte // the end of the previous payload, to see across frames
	buf := make([]byte, 64<<10)
	hdr := make([]byte, 14)
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			if err == io.EOF {
				return payload, secrets, placeholders, nil
			}
			return payload, secrets, placeholders, err
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			io.ReadFull(br, hdr[2:4])
			n = uint64(binary.BigEndian.Uint16(hdr[2:]))
		case 127:
			io.ReadFull(br, hdr[2:10])
			n = binary.BigEndian.Uint64(hdr[2:])
		}
		if hdr[0]&0x0f >= opClose {
			io.CopyN(io.Discard, br, int64(n))
			continue
		}
		for n > 0 {
			k := int(min(n, uint64(len(buf)-len(tail))))
			copy(buf, tail)
			if _, err := io.ReadFull(br, buf[len(tail):len(tail)+k]); err != nil {
				return payload, secrets, placeholders, err
			}
			b := buf[:len(tail)+k]
			secrets += bytes.Count(b, []byte(secret))
			// tail is shorter than either string, so nothing is counted twice.
			placeholders += bytes.Count(b, []byte(placeholder))
			keep := min(len(b), len(secret)-1)
			tail = append(tail[:0], b[len(b)-keep:]...)
			payload += k
			n -= uint64(k)
		}
	}
}

func allocated() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// TestRelayMemoryBounded streams a 64 MiB message in 1 MiB fragments each
// way and checks that the relay allocates a small fraction of it in total:
// holding the message, or a fragment per chunk, would allocate far more.
func TestRelayMemoryBounded(t *testing.T) {
	if testing.Short() {
		// CI runs without -short; under CI=true a -short run fails here.
		testenv.Missing(t, "a run without -short: this test streams 128 MiB")
	}
	const budget = 4 << 20
	t.Run("server to client", func(t *testing.T) {
		up := &readOnlyUpstream{r: &fragmentSource{}}
		r := New(up, filterConfig())
		pr, pw := io.Pipe()
		type result struct {
			payload, secrets, placeholders int
			err                            error
		}
		done := make(chan result, 1)
		go func() {
			var res result
			res.payload, res.secrets, res.placeholders, res.err = frameSink(pr)
			io.Copy(io.Discard, pr)
			done <- res
		}()
		before := allocated()
		_, err := io.Copy(pw, r)
		pw.Close()
		used := allocated() - before
		res := <-done
		if err != nil || res.err != nil {
			t.Fatalf("copy: %v; sink: %v", err, res.err)
		}
		wantSecrets := streamTotal / len(pattern)
		if res.payload != streamTotal || res.secrets != 0 || res.placeholders != wantSecrets {
			t.Errorf("client got %d payload bytes, %d secrets, %d placeholders; want %d, 0, %d",
				res.payload, res.secrets, res.placeholders, streamTotal, wantSecrets)
		}
		t.Logf("allocated %d KiB for %d MiB", used>>10, streamTotal>>20)
		if used > budget {
			t.Errorf("relay allocated %d bytes for a %d byte message, want under %d", used, streamTotal, budget)
		}
	})
	t.Run("client to server", func(t *testing.T) {
		up := newFakeUpstream(nil, false)
		count := &countingUpstream{fakeUpstream: up}
		r := New(count, filterConfig())
		defer r.Close()
		before := allocated()
		n, err := io.Copy(r, &fragmentSource{masked: true, key: [4]byte{1, 2, 3, 4}})
		used := allocated() - before
		if err != nil {
			t.Fatalf("copy: %v", err)
		}
		if count.n < streamTotal || n < streamTotal {
			t.Errorf("upstream got %d bytes of %d written, want at least %d", count.n, n, streamTotal)
		}
		t.Logf("allocated %d KiB for %d MiB", used>>10, streamTotal>>20)
		if used > budget {
			t.Errorf("relay allocated %d bytes for a %d byte message, want under %d", used, streamTotal, budget)
		}
	})
}

type readOnlyUpstream struct{ r io.Reader }

func (u *readOnlyUpstream) Read(p []byte) (int, error)  { return u.r.Read(p) }
func (u *readOnlyUpstream) Write(p []byte) (int, error) { return len(p), nil }
func (u *readOnlyUpstream) Close() error                { return nil }

// countingUpstream counts what the relay writes instead of keeping it.
type countingUpstream struct {
	*fakeUpstream
	n int
}

func (u *countingUpstream) Write(p []byte) (int, error) {
	u.n += len(p)
	return len(p), nil
}
