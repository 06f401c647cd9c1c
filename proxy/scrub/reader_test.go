package scrub

import (
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestReader(t *testing.T) {
	rules := Pairs(testSecret, testPlaceholder, 1)
	s := New(rules)
	rng := rand.New(rand.NewPCG(17, 18))
	in := string(embed(rng, echoes(testSecret), 400))
	want, n := s.ReplaceString(in)
	if n == 0 {
		t.Fatal("no replacement in the test input")
	}
	readers := map[string]func() io.Reader{
		"whole":      func() io.Reader { return strings.NewReader(in) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"half":       func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
		"data + EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) },
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			hits := 0
			rd := NewReader(r(), s, func(int) { hits++ })
			if err := iotest.TestReader(rd, []byte(want)); err != nil {
				t.Fatalf("scrubbed reader: %v", err)
			}
			if hits != n {
				t.Errorf("onHit called %d times, want %d", hits, n)
			}
		})
	}
}

// TestReaderDoesNotWait checks that what can be released is returned
// without waiting for more input (SSE events must not be delayed).
func TestReaderDoesNotWait(t *testing.T) {
	s := New(Pairs(testSecret, testPlaceholder, 1))
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	rd := NewReader(pr, s, nil)
	t.Cleanup(func() { rd.Close() })
	writes := []struct{ write, want string }{
		{"data: one\n\n", "data: one\n\n"},
		{"data: " + testSecret + "\n\n", "data: " + testPlaceholder + "\n\n"},
		{"data: " + testSecret[:9], "data: "},
		{testSecret[9:] + "\n\n", testPlaceholder + "\n\n"},
	}
	for _, w := range writes {
		go func() { _, _ = pw.Write([]byte(w.write)) }()
		got := readWithin(t, rd, len(w.want), 5*time.Second)
		if got != w.want {
			t.Fatalf("after writing %d bytes, read %q, want %q", len(w.write), got, w.want)
		}
	}
}

// readWithin reads from r until it has n bytes, failing after d.
func readWithin(t *testing.T, r io.Reader, n int, d time.Duration) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		buf := make([]byte, 0, n)
		p := make([]byte, 64)
		for len(buf) < n {
			k, err := r.Read(p[:min(len(p), n-len(buf))])
			buf = append(buf, p[:k]...)
			if err != nil {
				break
			}
		}
		done <- string(buf)
	}()
	select {
	case s := <-done:
		return s
	case <-time.After(d):
		t.Fatalf("no %d bytes read within %v", n, d)
		return ""
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestReaderErrorDropsHeld(t *testing.T) {
	boom := errors.New("upstream reset")
	in := "ok " + testSecret[:12]
	r := &closeRecorder{Reader: io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom))}
	rd := NewReader(r, New(Pairs(testSecret, testPlaceholder, 1)), nil)
	got, err := io.ReadAll(rd)
	if !errors.Is(err, boom) {
		t.Errorf("ReadAll error = %v, want %v", err, boom)
	}
	if string(got) != "ok " {
		t.Errorf("ReadAll = %q, want %q (the held prefix of the secret dropped)", got, "ok ")
	}
	if err := rd.Close(); err != nil || !r.closed {
		t.Errorf("Close = %v, underlying closed = %v", err, r.closed)
	}
	if err := NewReader(strings.NewReader(""), nil, nil).Close(); err != nil {
		t.Errorf("Close of a reader without Close = %v", err)
	}
}
