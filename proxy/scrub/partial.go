package scrub

import (
	"bytes"
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
	return p
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
	for i := 0; i+p.k <= len(f); i++ {
		if _, ok := p.runs[string(f[i:i+p.k])]; ok {
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
