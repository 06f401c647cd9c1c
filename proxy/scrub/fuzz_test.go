package scrub

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzStream checks, for arbitrary data, rules and write boundaries, that a
// Stream's output equals the one-shot result and the reference, and, for
// rules whose Replace is inert (not empty, built from a byte no Find contains,
// so that it cannot complete a Find with its neighbours), that the output holds no
// Find at all.
func FuzzStream(f *testing.F) {
	f.Add([]byte("a secret in the middle, SECRET at the end: secret"), "secret", "cret in", "ab", []byte{3, 17, 1})
	f.Add([]byte("ghp_abcghp_abcdghp_ab"), "ghp_abcd", "ghp_a", "b", []byte{5, 5, 5})
	f.Add([]byte("data: x\n\ndata: tok\n\n"), "tok", "\n\n", "t", []byte{9, 1})
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaa"), "aaa", "aa", "a", []byte{1, 2, 3, 4})
	f.Add([]byte("Z2hwX3NlY3JldA== 6768705f736563726574"), "ghp_secret", "", "Zz", []byte{20})
	f.Fuzz(func(t *testing.T, data []byte, find1, find2, find3 string, cuts []byte) {
		var offs []int
		for c := 0; len(offs) < len(cuts); {
			c += int(cuts[len(offs)])
			if c > len(data) {
				break
			}
			offs = append(offs, c)
		}
		// Detection rules (Replace == Find) and Pairs with a placeholder.
		mixed := append([]Rule{
			{Find: find1, Replace: find2, ID: 1},
			{Find: find2, Replace: find3, ID: 2},
			{Find: find3, Replace: find3, ID: 3},
		}, Pairs(find1, "", 4)...)
		mixed = append(mixed, Pairs(find2, find3, 5)...)
		checkStream(t, mixed, data, offs)

		inert, ok := unusedByte(find1, find2, find3)
		if !ok {
			return
		}
		var rules []Rule
		for i, fs := range []string{find1, find2, find3} {
			rules = append(rules, Rule{Find: fs, Replace: string(bytes.Repeat([]byte{inert}, i+1)), ID: i})
		}
		got := checkStream(t, rules, data, offs)
		for _, r := range refCompile(rules) {
			if containsFold(got, string(r.find)) {
				t.Fatalf("output %q holds Find %q", got, r.find)
			}
		}
	})
}

// checkStream streams data through New(rules), cut at offs, and checks it
// against ReplaceString and the reference; it returns the output.
func checkStream(t *testing.T, rules []Rule, data []byte, offs []int) []byte {
	t.Helper()
	s := New(rules)
	ref := refCompile(rules)
	want, n := s.ReplaceString(string(data))
	wantRef, _, refIDs := refRun(ref, data, true)
	if want != string(wantRef) || n != len(refIDs) {
		t.Fatalf("ReplaceString = %q, %d, reference %q, %d", want, n, wantRef, len(refIDs))
	}
	got, ids := streamChunks(t, s, ref, data, offs)
	if string(got) != want || !slices.Equal(ids, refIDs) {
		t.Fatalf("stream = %q, ids %v, want %q, %v", got, ids, want, refIDs)
	}
	return got
}

// unusedByte returns a byte that appears in none of finds, in any case.
func unusedByte(finds ...string) (byte, bool) {
	var used [256]bool
	for _, fs := range finds {
		for i := range len(fs) {
			used[lower(fs[i])] = true
			used[fs[i]] = true
			if 'a' <= lower(fs[i]) && lower(fs[i]) <= 'z' {
				used[lower(fs[i])-('a'-'A')] = true
			}
		}
	}
	for c := range 256 {
		if !used[c] {
			return byte(c), true
		}
	}
	return 0, false
}
