package scrub

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Partial detects an echo of part of a secret, which would be an oracle for
// guessing the rest: any run of at least k bytes (ASCII case-folded) of one
// of its secrets. A secret shorter than k is detected whole. It is meant for
// short values such as headers. A Partial is immutable and safe for
// concurrent use; a nil Partial detects nothing.
type Partial struct {
	k      int
	n      int                 // secrets
	runs   map[string]struct{} // every folded k-byte run
	shorts [][]byte            // folded secrets shorter than k
	// filter has the bit filterIndex(q) set for the first four bytes q of
	// every run (k >= 4): a window whose bit is clear is no run, without
	// the map lookup (hashing k bytes) that Has did for every window of
	// every response header value.
	filter []uint64
	shift  uint // 64 - log2(len(filter)*64)
}

// NewPartial compiles secrets; empty ones are ignored and k < 1 counts as 1.
func NewPartial(secrets []string, k int) *Partial {
	k = max(k, 1)
	p := &Partial{k: k, runs: map[string]struct{}{}}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		p.n++
		f := foldString(s)
		if len(f) < k {
			p.shorts = append(p.shorts, f)
			continue
		}
		fs := string(f)
		for i := 0; i+k <= len(fs); i++ {
			p.runs[fs[i:i+k]] = struct{}{}
		}
	}
	if k >= 4 && len(p.runs) > 0 {
		// About 16 bits per run: few false positives, each a map lookup.
		bits, log := 1024, 10
		for bits < 16*len(p.runs) && bits < 1<<22 {
			bits, log = bits<<1, log+1
		}
		p.filter, p.shift = make([]uint64, bits/64), uint(64-log)
		for r := range p.runs {
			i := p.filterIndex(binary.LittleEndian.Uint32([]byte(r[:4])))
			p.filter[i/64] |= 1 << (i % 64)
		}
	}
	return p
}

// filterIndex spreads a window's first four bytes over the filter's bits
// (Fibonacci hashing).
func (p *Partial) filterIndex(q uint32) uint64 {
	return (uint64(q) * 0x9e3779b97f4a7c15) >> p.shift
}

// Has reports whether v contains a run of at least k bytes of a secret.
func (p *Partial) Has(v string) bool {
	if p == nil || p.n == 0 {
		return false
	}
	var small [256]byte
	f := small[:0]
	if len(v) > len(small) {
		f = make([]byte, 0, len(v))
	}
	for i := range len(v) {
		f = append(f, fold[v[i]])
	}
	k := p.k
	for i := 0; i+k <= len(f); i++ {
		if p.filter != nil {
			b := p.filterIndex(binary.LittleEndian.Uint32(f[i:]))
			if p.filter[b/64]&(1<<(b%64)) == 0 {
				continue
			}
		}
		if _, ok := p.runs[string(f[i:i+k])]; ok {
			return true
		}
	}
	for _, s := range p.shorts {
		if bytes.Contains(f, s) {
			return true
		}
	}
	return false
}

// String implements fmt.Stringer; it prints counts only. Its receiver is a
// value so that a dereferenced Partial is redacted too.
func (p Partial) String() string {
	return fmt.Sprintf("scrub.Partial{secrets: %d, k: %d}", p.n, p.k)
}

// GoString implements fmt.GoStringer like String.
func (p Partial) GoString() string { return p.String() }

// Format implements fmt.Formatter so that every verb prints String.
func (p Partial) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

var (
	_ fmt.Formatter  = Partial{}
	_ fmt.GoStringer = Partial{}
)
