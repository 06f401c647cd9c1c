package scrub

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"unsafe"
)

// Rule asks for every occurrence of Find (ASCII case-insensitive) to be
// replaced by Replace. ID is the caller's, for example a slot index; it is
// what hit callbacks receive. A Rule holds secrets, so it formats as its ID
// only.
type Rule struct {
	Find, Replace string
	ID            int
}

// String implements fmt.Stringer without printing Find or Replace.
func (r Rule) String() string { return fmt.Sprintf("scrub.Rule{id: %d}", r.ID) }

// GoString implements fmt.GoStringer like String.
func (r Rule) GoString() string { return r.String() }

// Format implements fmt.Formatter so that every verb prints String.
func (r Rule) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, r.String()) }

// maxWindow caps the Wu–Manber window: a longer window gives longer shifts on
// random bytes but fills the shift table, which shortens them on text.
const maxWindow = 32

// fold maps A-Z to a-z and every other byte to itself.
var fold = func() (t [256]byte) {
	for i := range t {
		b := byte(i)
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		t[i] = b
	}
	return t
}()

type rule struct {
	find    []byte // folded
	replace []byte
	id      int
}

// Set is a compiled, immutable rule set, safe for concurrent use. A nil,
// empty or zero Set matches nothing.
//
// Matching is ASCII case-insensitive (A-Z fold to a-z on both sides). The
// leftmost match wins; at one position the longest Find wins; matches do not
// overlap; scanning resumes after a match.
//
// Sets whose shortest Find has at least 2 bytes are scanned with Wu–Manber
// (blocks of 2 bytes, a shift table indexed by the raw byte pair with every
// case variant filled in, so the hot loop does no folding); a Set with a
// 1-byte Find checks every position. The tables take about 200 KiB per Set,
// whatever the number of rules.
type Set struct {
	rules          []rule
	minLen, maxLen int

	// byFirst lists, per folded first byte, the rules that start with it,
	// longest first.
	byFirst [256][]int32

	// Wu–Manber tables, nil when m < 2. shift is indexed by a raw byte pair
	// ending a window of m bytes; 0 means some rule's m-byte prefix ends with
	// that pair (folded), and bucket (indexed by the folded pair) gives
	// 1 + the index in buckets of those rules, longest first. There are
	// fewer than 65535 folded pairs, so the index fits.
	m       int
	shift   *[1 << 16]uint8
	bucket  *[1 << 16]uint16
	buckets [][]int32
}

// New compiles rules. Rules with an empty Find are dropped; of rules whose
// Finds are equal once folded, the first wins. New never fails: any rule set
// compiles.
func New(rules []Rule) *Set {
	s := &Set{}
	seen := make(map[string]bool, len(rules))
	for _, r := range rules {
		if r.Find == "" {
			continue
		}
		f := foldString(r.Find)
		if seen[string(f)] {
			continue
		}
		seen[string(f)] = true
		s.rules = append(s.rules, rule{find: f, replace: []byte(r.Replace), id: r.ID})
	}
	if len(s.rules) == 0 {
		return s
	}
	s.minLen = len(s.rules[0].find)
	for i, r := range s.rules {
		s.minLen = min(s.minLen, len(r.find))
		s.maxLen = max(s.maxLen, len(r.find))
		s.byFirst[r.find[0]] = append(s.byFirst[r.find[0]], int32(i))
	}
	for i := range s.byFirst {
		s.sortLongestFirst(s.byFirst[i])
	}
	if s.minLen >= 2 {
		s.buildWuManber(min(s.minLen, maxWindow))
	}
	return s
}

func (s *Set) sortLongestFirst(l []int32) {
	slices.SortStableFunc(l, func(a, b int32) int {
		return len(s.rules[b].find) - len(s.rules[a].find)
	})
}

func (s *Set) buildWuManber(m int) {
	s.m = m
	s.shift = new([1 << 16]uint8)
	s.bucket = new([1 << 16]uint16)
	for i := range s.shift {
		s.shift[i] = uint8(m - 1)
	}
	for i, r := range s.rules {
		for j := 1; j < m; j++ {
			d := uint8(m - 1 - j)
			for _, a := range cases(r.find[j-1]) {
				for _, b := range cases(r.find[j]) {
					k := uint16(a)<<8 | uint16(b)
					s.shift[k] = min(s.shift[k], d)
				}
			}
		}
		k := uint16(r.find[m-2])<<8 | uint16(r.find[m-1])
		if s.bucket[k] == 0 {
			s.buckets = append(s.buckets, nil)
			s.bucket[k] = uint16(len(s.buckets))
		}
		b := s.bucket[k] - 1
		s.buckets[b] = append(s.buckets[b], int32(i))
	}
	for _, l := range s.buckets {
		s.sortLongestFirst(l)
	}
}

// cases returns the raw bytes that fold to the folded byte b.
func cases(b byte) []byte {
	if 'a' <= b && b <= 'z' {
		return []byte{b, b - ('a' - 'A')}
	}
	return []byte{b}
}

func foldString(v string) []byte {
	b := make([]byte, len(v))
	for i := range len(v) {
		b[i] = fold[v[i]]
	}
	return b
}

// Len returns the number of rules kept by New; 0 for a nil Set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// MaxLen returns the length of the longest Find; 0 for a nil or empty Set.
func (s *Set) MaxLen() int {
	if s == nil {
		return 0
	}
	return s.maxLen
}

// String implements fmt.Stringer; it prints the number of rules only. Its
// receiver is a value so that a dereferenced Set is redacted too.
func (s Set) String() string { return fmt.Sprintf("scrub.Set{rules: %d}", len(s.rules)) }

// GoString implements fmt.GoStringer like String.
func (s Set) GoString() string { return s.String() }

// Format implements fmt.Formatter so that every verb prints String.
func (s Set) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// ReplaceString returns v with every match replaced, and the number of
// replacements. It does not allocate when nothing matches.
func (s *Set) ReplaceString(v string) (string, int) {
	if s.Len() == 0 {
		return v, 0
	}
	t := bytesOf(v)
	var b strings.Builder
	n, cur := 0, 0
	for {
		at, ri, k := s.next(t, cur, len(t), true)
		if k == none {
			break
		}
		if n == 0 {
			b.Grow(len(v) + len(s.rules[ri].replace))
		}
		r := &s.rules[ri]
		b.Write(t[cur:at])
		b.Write(r.replace)
		cur = at + len(r.find)
		n++
	}
	if n == 0 {
		return v, 0
	}
	b.Write(t[cur:])
	return b.String(), n
}

// Find calls fn with the ID of every match in b, in order, as ReplaceString
// would replace them. fn must not be nil when the Set is not empty.
func (s *Set) Find(b []byte, fn func(id int)) {
	if s.Len() == 0 {
		return
	}
	for cur := 0; ; {
		at, ri, k := s.next(b, cur, len(b), true)
		if k == none {
			return
		}
		fn(s.rules[ri].id)
		cur = at + len(s.rules[ri].find)
	}
}

// FindString is Find for a string; it does not copy v.
func (s *Set) FindString(v string, fn func(id int)) { s.Find(bytesOf(v), fn) }

// bytesOf returns v's bytes without copying; they must not be modified.
func bytesOf(v string) []byte { return unsafe.Slice(unsafe.StringData(v), len(v)) }

type kind uint8

const (
	none  kind = iota
	found      // a complete match
	hold       // the rest of the input is a proper prefix of a longer Find
)

// next returns the leftmost position at in [from, limit) where a Find starts
// in t, the index of the rule, and what was found there: the longest
// complete match (found) or, unless final, a Find longer than what is left
// of t whose prefix is all of t[at:] (hold). At a position where both exist,
// hold wins: the longer Find may still complete. kind is none if nothing
// starts in [from, limit).
func (s *Set) next(t []byte, from, limit int, final bool) (at, ri int, k kind) {
	if m := s.m; m >= 2 {
		// Windows that fit in t: starts in [from, wmEnd).
		wmEnd := min(limit, len(t)-m+1)
		end := wmEnd + m - 1
		sh, full := s.shift, m-1
		for pos := from + m - 1; pos < end; {
			d := int(sh[uint16(t[pos-1])<<8|uint16(t[pos])])
			// Most shifts are full: look up the next window too before
			// knowing, so that the two loads overlap.
			if next := pos + full; d == full && next < end {
				d = int(sh[uint16(t[next-1])<<8|uint16(t[next])])
				pos = next
			}
			if d != 0 {
				pos += d
				continue
			}
			at := pos - m + 1
			b := s.bucket[uint16(fold[t[pos-1]])<<8|uint16(fold[t[pos]])]
			if ri, k := s.try(t, at, s.buckets[b-1], final); k != none {
				return at, ri, k
			}
			pos++
		}
		if final {
			return -1, -1, none // no Find (all ≥ m bytes) fits in the rest
		}
		from = max(from, wmEnd)
	}
	for at := from; at < limit; at++ {
		if l := s.byFirst[fold[t[at]]]; len(l) > 0 {
			if ri, k := s.try(t, at, l, final); k != none {
				return at, ri, k
			}
		}
	}
	return -1, -1, none
}

// try checks the rules l (longest first) at t[at:].
func (s *Set) try(t []byte, at int, l []int32, final bool) (int, kind) {
	rest := t[at:]
	for _, i := range l {
		f := s.rules[i].find
		n := min(len(f), len(rest))
		if !hasFoldedPrefix(rest, f[:n]) {
			continue
		}
		if n == len(f) {
			return int(i), found
		}
		if !final {
			return int(i), hold
		}
	}
	return -1, none
}

// hasFoldedPrefix reports whether t starts with the folded bytes f, ignoring
// case; len(t) >= len(f).
func hasFoldedPrefix(t, f []byte) bool {
	t = t[:len(f)]
	for i, c := range f {
		if fold[t[i]] != c {
			return false
		}
	}
	return true
}

var (
	_ fmt.Formatter  = Rule{}
	_ fmt.GoStringer = Rule{}
	_ fmt.Formatter  = Set{}
	_ fmt.GoStringer = Set{}
)
