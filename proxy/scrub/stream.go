package scrub

import (
	"fmt"
	"io"
)

// Stream is one streaming pass of a Set over a byte stream (one response
// body, one WebSocket message). Its output, over any split of the input into
// Writes followed by Flush, equals Set.ReplaceString of the whole input. Its
// memory is O(MaxLen). A Stream is not safe for concurrent use; a Stream of a
// nil or empty Set passes everything through. The zero Stream is not usable:
// make one with Set.NewStream.
type Stream struct {
	set   *Set
	onHit func(id int)
	held  []byte // undecided suffix, a proper prefix of some Find
	seam  []byte // held + the start of the next Write
	hits  int
}

// NewStream starts a streaming pass. onHit, if not nil, is called with the
// rule's ID for every replacement, when the replaced bytes are released.
func (s *Set) NewStream(onHit func(id int)) *Stream {
	return &Stream{set: s, onHit: onHit}
}

// Write processes p and appends to dst every byte that can no longer be part
// of a match, with replacements applied, and returns dst. It holds back only
// the longest suffix of the data seen so far (and not yet replaced) that is a
// proper prefix, case-folded, of some Find, so Held() < MaxLen() after every
// Write. dst must not overlap p. Write does not allocate once its buffers
// have grown to 3×MaxLen, apart from growing dst.
func (st *Stream) Write(dst, p []byte) []byte {
	if st.set.Len() == 0 {
		return append(dst, p...)
	}
	if len(st.held) == 0 {
		return st.process(dst, p)
	}
	ml := st.set.maxLen
	if len(p) < ml {
		st.seam = append(append(st.seam[:0], st.held...), p...)
		st.held = st.held[:0]
		return st.process(dst, st.seam)
	}
	// Decide the held positions with MaxLen bytes of p after them, then go
	// on with p itself, without copying it.
	h := len(st.held)
	st.seam = append(append(st.seam[:0], st.held...), p[:ml]...)
	st.held = st.held[:0]
	t, cur := st.seam, 0
	for {
		// Every start below h has more than MaxLen bytes after it, so
		// next finds complete matches only.
		at, ri, k := st.set.next(t, cur, h, false)
		if k != found {
			break
		}
		dst = st.replace(dst, t[cur:at], ri)
		cur = at + len(st.set.rules[ri].find)
	}
	if cur < h {
		dst = append(dst, t[cur:h]...)
		cur = h
	}
	return st.process(dst, p[cur-h:])
}

// Flush ends the stream: it releases what was held back, with replacements
// applied, appends it to dst and returns dst. The Stream may be reused for a
// new pass afterwards.
func (st *Stream) Flush(dst []byte) []byte {
	if st.set.Len() == 0 || len(st.held) == 0 {
		return dst
	}
	t, cur := st.held, 0
	for {
		at, ri, k := st.set.next(t, cur, len(t), true)
		if k != found {
			break
		}
		dst = st.replace(dst, t[cur:at], ri)
		cur = at + len(st.set.rules[ri].find)
	}
	dst = append(dst, t[cur:]...)
	st.held = st.held[:0]
	return dst
}

// process runs over t, which follows everything decided so far.
func (st *Stream) process(dst, t []byte) []byte {
	for cur := 0; ; {
		at, ri, k := st.set.next(t, cur, len(t), false)
		switch k {
		case none:
			return append(dst, t[cur:]...)
		case hold:
			if st.held == nil {
				// Made on the first hold: most streams never hold a byte.
				st.held = make([]byte, 0, st.set.maxLen)
			}
			st.held = append(st.held[:0], t[at:]...)
			return append(dst, t[cur:at]...)
		}
		dst = st.replace(dst, t[cur:at], ri)
		cur = at + len(st.set.rules[ri].find)
	}
}

func (st *Stream) replace(dst, before []byte, ri int) []byte {
	r := &st.set.rules[ri]
	dst = append(dst, before...)
	dst = append(dst, r.replace...)
	st.hits++
	if st.onHit != nil {
		st.onHit(r.id)
	}
	return dst
}

// passes reports whether Write(dst, p) would append p unchanged and hold
// nothing back: nothing is held and p holds no match and ends in no
// possible start of one.
func (st *Stream) passes(p []byte) bool {
	if st.set.Len() == 0 {
		return true
	}
	if len(st.held) > 0 {
		return false
	}
	_, _, k := st.set.next(p, 0, len(p), false)
	return k == none
}

// Held returns the number of bytes currently held back.
func (st *Stream) Held() int { return len(st.held) }

// Hits returns the number of replacements released so far.
func (st *Stream) Hits() int { return st.hits }

// String implements fmt.Stringer; it prints counts only. Its receiver is a
// value so that a dereferenced Stream is redacted too.
func (st Stream) String() string {
	return fmt.Sprintf("scrub.Stream{rules: %d, held: %d, hits: %d}", st.set.Len(), len(st.held), st.hits)
}

// GoString implements fmt.GoStringer like String.
func (st Stream) GoString() string { return st.String() }

// Format implements fmt.Formatter so that every verb prints String.
func (st Stream) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, st.String()) }

var (
	_ fmt.Formatter  = Stream{}
	_ fmt.GoStringer = Stream{}
)
