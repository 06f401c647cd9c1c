package scrub

import (
	"bytes"
	"strings"
	"testing"
)

// This file holds a deliberately naive reference matcher, written without
// the package's fold table or tables, that the tests compare the engine with.

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func lowerAll(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = lower(c)
	}
	return out
}

// containsFold reports whether b contains sub, ASCII case-insensitively.
func containsFold(b []byte, sub string) bool {
	return bytes.Contains(lowerAll(b), lowerAll([]byte(sub)))
}

type refRule struct {
	find    []byte // lower-cased
	replace string
	id      int
}

// refCompile keeps the rules New keeps.
func refCompile(rules []Rule) []refRule {
	var out []refRule
	seen := map[string]bool{}
	for _, r := range rules {
		f := lowerAll([]byte(r.Find))
		if len(f) == 0 || seen[string(f)] {
			continue
		}
		seen[string(f)] = true
		out = append(out, refRule{find: f, replace: r.Replace, id: r.ID})
	}
	return out
}

// refRun scans x position by position. Unless final, it stops at the first
// position where a Find longer than the rest of x starts with that rest, and
// returns how many bytes that leaves held back.
func refRun(rules []refRule, x []byte, final bool) (out []byte, held int, ids []int) {
	lx := lowerAll(x)
	cur := 0
	for p := 0; p < len(x); {
		best := -1
		for i, r := range rules {
			n := min(len(r.find), len(x)-p)
			if !bytes.Equal(lx[p:p+n], r.find[:n]) {
				continue
			}
			if n < len(r.find) {
				if final {
					continue
				}
				return append(out, x[cur:p]...), len(x) - p, ids
			}
			if best < 0 || len(r.find) > len(rules[best].find) {
				best = i
			}
		}
		if best < 0 {
			p++
			continue
		}
		out = append(out, x[cur:p]...)
		out = append(out, rules[best].replace...)
		ids = append(ids, rules[best].id)
		cur = p + len(rules[best].find)
		p = cur
	}
	return append(out, x[cur:]...), 0, ids
}

// streamChunks writes x to a new Stream of s cut at cuts (increasing
// offsets) and returns the flushed output and the IDs hit. After every Write
// it checks that the output so far is a prefix of ReplaceString(x), that
// Held() < MaxLen(), and, for inputs up to refMax bytes, that output and
// Held agree exactly with the reference run on the input so far.
func streamChunks(t *testing.T, s *Set, ref []refRule, x []byte, cuts []int) ([]byte, []int) {
	t.Helper()
	const refMax = 1000
	final, _ := s.ReplaceString(string(x))
	var ids []int
	st := s.NewStream(func(id int) { ids = append(ids, id) })
	var out []byte
	prev := 0
	for _, c := range append(cuts, len(x)) {
		out = st.Write(out, x[prev:c])
		prev = c
		if !strings.HasPrefix(final, string(out)) {
			t.Fatalf("after Write up to %d (cuts %v): output is not a prefix of the one-shot result", c, cuts)
		}
		if len(x) <= refMax {
			want, held, _ := refRun(ref, x[:c], false)
			if !bytes.Equal(out, want) {
				t.Fatalf("after Write up to %d (cuts %v): output %q, want %q", c, cuts, out, want)
			}
			if st.Held() != held {
				t.Fatalf("after Write up to %d (cuts %v): Held() = %d, want %d", c, cuts, st.Held(), held)
			}
		}
		if s.MaxLen() > 0 && st.Held() >= s.MaxLen() {
			t.Fatalf("Held() = %d, want < MaxLen() = %d", st.Held(), s.MaxLen())
		}
	}
	out = st.Flush(out)
	if st.Held() != 0 {
		t.Fatalf("Held() after Flush = %d, want 0", st.Held())
	}
	if st.Hits() != len(ids) {
		t.Fatalf("Hits() = %d, onHit called %d times", st.Hits(), len(ids))
	}
	return out, ids
}
