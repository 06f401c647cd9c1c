package wsrelay

// windowSize is the largest deflate window (RFC 7692: 2^15 bytes).
const windowSize = 32 << 10

// window keeps the last windowSize bytes a peer's compressor has seen, the
// dictionary for inflating its next message under context takeover. The zero
// value is empty and ready; it is not safe for concurrent use.
type window struct {
	buf []byte
}

func (w *window) write(p []byte) {
	if w.buf == nil {
		w.buf = make([]byte, 0, windowSize)
	}
	if len(p) >= windowSize {
		w.buf = append(w.buf[:0], p[len(p)-windowSize:]...)
		return
	}
	if over := len(w.buf) + len(p) - windowSize; over > 0 {
		w.buf = w.buf[:copy(w.buf, w.buf[over:])]
	}
	w.buf = append(w.buf, p...)
}
