package scrub

import (
	"fmt"
	"io"
)

// readSize is how much NewReader asks of the underlying reader at a time.
const readSize = 32 << 10

// NewReader returns a reader of r's bytes scrubbed by s through a Stream.
// Read returns output as soon as the underlying Read returned data that can
// be released; it blocks for more input only when all it has is held back.
// At r's io.EOF it flushes the Stream and then returns io.EOF. Another error
// of r is returned as is, after the output released before it; what was
// held back is then dropped, never released unscrubbed. Close closes r if r
// is an io.Closer. onHit is as for NewStream. The reader is not safe for
// concurrent use.
func NewReader(r io.Reader, s *Set, onHit func(id int)) io.ReadCloser {
	rd := &reader{r: r}
	rd.st = Stream{set: s, onHit: onHit} // one allocation with the reader
	return rd
}

type reader struct {
	r   io.Reader
	st  Stream
	in  []byte
	out []byte
	off int   // out[off:] is yet to be returned
	err error // sticky: r's error, io.EOF after the flush
}

func (rd *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if rd.off == len(rd.out) && rd.err == nil && rd.st.Held() == 0 {
		// The common case, nothing to replace or hold: read into p and
		// scan it there, without a copy.
		n, err := rd.r.Read(p)
		if (err == nil || err == io.EOF) && rd.st.passes(p[:n]) {
			// Nothing held: at io.EOF the flush would add nothing.
			rd.err = err
			return n, err
		}
		rd.out, rd.off = rd.st.Write(rd.out[:0], p[:n]), 0
		if err == io.EOF {
			rd.out = rd.st.Flush(rd.out)
		}
		rd.err = err
	}
	for rd.off == len(rd.out) {
		if rd.err != nil {
			return 0, rd.err
		}
		if rd.in == nil {
			rd.in = make([]byte, readSize)
		}
		n, err := rd.r.Read(rd.in)
		rd.out, rd.off = rd.st.Write(rd.out[:0], rd.in[:n]), 0
		if err == io.EOF {
			rd.out = rd.st.Flush(rd.out)
		}
		rd.err = err
	}
	n := copy(p, rd.out[rd.off:])
	rd.off += n
	return n, nil
}

func (rd *reader) Close() error {
	if c, ok := rd.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// String implements fmt.Stringer; it prints counts only.
func (rd reader) String() string {
	return fmt.Sprintf("scrub.Reader{rules: %d, held: %d, hits: %d}", rd.st.set.Len(), rd.st.Held(), rd.st.Hits())
}

// GoString implements fmt.GoStringer like String.
func (rd reader) GoString() string { return rd.String() }

// Format implements fmt.Formatter so that every verb prints String.
func (rd reader) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, rd.String()) }

var (
	_ io.ReadCloser = (*reader)(nil)
	_ fmt.Formatter = reader{}
)
