package scrub

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestReplaceString(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		in    string
		want  string
		n     int
	}{
		{"no rules", nil, "abc", "abc", 0},
		{"no match", []Rule{{Find: "secret", Replace: "xx"}}, "a secre t", "a secre t", 0},
		{"exact", []Rule{{Find: "secret", Replace: "PLACEH"}}, "a secret b", "a PLACEH b", 1},
		{"input upper", []Rule{{Find: "secret", Replace: "p"}}, "SeCrEt", "p", 1},
		{"find upper", []Rule{{Find: "SECRET", Replace: "p"}}, "x secret y", "x p y", 1},
		{"replace keeps its case", []Rule{{Find: "abc", Replace: "XyZ"}}, "ABC", "XyZ", 1},
		{"only A-Z fold", []Rule{{Find: "a@[", Replace: "_"}}, "A`{ a@[ A@[", "A`{ _ _", 2},
		{"non-ASCII bytes untouched", []Rule{{Find: "k1", Replace: "_"}}, "\u212a1 k1 K1", "\u212a1 _ _", 2},
		{"at start and end", []Rule{{Find: "tok", Replace: "P"}}, "tok middle tok", "P middle P", 2},
		{"whole input", []Rule{{Find: "tok", Replace: "P"}}, "tok", "P", 1},
		{"adjacent", []Rule{{Find: "ab", Replace: "X"}}, "ababab", "XXX", 3},
		{"overlapping self", []Rule{{Find: "aa", Replace: "X"}}, "aaaaa", "XXa", 2},
		{"overlapping candidates leftmost wins", []Rule{{Find: "bcd", Replace: "2"}, {Find: "abc", Replace: "1"}}, "abcd", "1d", 1},
		{"longest at a position wins", []Rule{{Find: "ab", Replace: "S"}, {Find: "abcd", Replace: "L"}}, "abcdx abx", "Lx Sx", 2},
		{"longest wins whatever the order", []Rule{{Find: "abcd", Replace: "L"}, {Find: "ab", Replace: "S"}}, "abcdx abx", "Lx Sx", 2},
		{"leftmost beats longer later", []Rule{{Find: "bcdef", Replace: "L"}, {Find: "abc", Replace: "S"}}, "abcdef", "Sdef", 1},
		{"resume after match", []Rule{{Find: "abc", Replace: "1"}, {Find: "cde", Replace: "2"}}, "abcde", "1de", 1},
		{"replace longer", []Rule{{Find: "ab", Replace: "0123456789"}}, "xaby", "x0123456789y", 1},
		{"replace shorter", []Rule{{Find: "0123456789", Replace: "a"}}, "x0123456789y", "xay", 1},
		{"replace empty", []Rule{{Find: "ab", Replace: ""}}, "xabyab", "xy", 2},
		{"replace equal counts", []Rule{{Find: "ab", Replace: "ab"}}, "xABy", "xaby", 1},
		{"empty find dropped", []Rule{{Find: "", Replace: "!"}, {Find: "b", Replace: "B"}}, "abc", "aBc", 1},
		{"duplicate folded find first wins", []Rule{{Find: "Ab", Replace: "1"}, {Find: "aB", Replace: "2"}}, "ab", "1", 1},
		{"one-byte find", []Rule{{Find: "a", Replace: "1"}, {Find: "abc", Replace: "3"}}, "aabcab", "131b", 3},
		{"long and short finds", []Rule{{Find: strings.Repeat("x", 100), Replace: "L"}, {Find: "xx", Replace: "s"}},
			strings.Repeat("x", 103), "Lsx", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.rules)
			got, n := s.ReplaceString(tt.in)
			if got != tt.want || n != tt.n {
				t.Errorf("ReplaceString(%q) = %q, %d, want %q, %d", tt.in, got, n, tt.want, tt.n)
			}
			var ids []int
			s.FindString(tt.in, func(id int) { ids = append(ids, id) })
			if len(ids) != tt.n {
				t.Errorf("FindString(%q) found %d, want %d", tt.in, len(ids), tt.n)
			}
		})
	}
}

func TestFindIDs(t *testing.T) {
	s := New([]Rule{{Find: "one", ID: 1}, {Find: "two", ID: 2}, {Find: "three", ID: 3}})
	var ids []int
	s.Find([]byte("TWO one three two-three"), func(id int) { ids = append(ids, id) })
	if want := []int{2, 1, 3, 2, 3}; !slices.Equal(ids, want) {
		t.Errorf("Find IDs = %v, want %v", ids, want)
	}
	var nilSet *Set
	nilSet.Find([]byte("one"), func(int) { t.Error("nil Set matched") })
	if got, n := nilSet.ReplaceString("one"); got != "one" || n != 0 {
		t.Errorf("nil Set ReplaceString = %q, %d", got, n)
	}
}

func TestLenMaxLen(t *testing.T) {
	s := New([]Rule{{Find: "abc"}, {Find: ""}, {Find: "ABC"}, {Find: "abcdef"}})
	if s.Len() != 2 || s.MaxLen() != 6 {
		t.Errorf("Len, MaxLen = %d, %d, want 2, 6", s.Len(), s.MaxLen())
	}
	var nilSet *Set
	if nilSet.Len() != 0 || nilSet.MaxLen() != 0 || New(nil).Len() != 0 {
		t.Errorf("nil or empty Set has rules")
	}
}

func TestReplaceStringNoAlloc(t *testing.T) {
	s := New(benchRules(t, 50))
	v := strings.Repeat("Authorization: Bearer placeholder-value; ", 20)
	if n := testing.AllocsPerRun(100, func() { s.ReplaceString(v) }); n != 0 {
		t.Errorf("ReplaceString without a match allocated %v times", n)
	}
}

// randomRules returns rules over a small alphabet (so that they overlap,
// share prefixes and occur by chance), mixed case.
func randomRules(rng *rand.Rand, n, minLen, maxLen int) []Rule {
	var rules []Rule
	for i := range n {
		rules = append(rules, Rule{
			Find:    randomString(rng, "abcAB-_", minLen+rng.IntN(maxLen-minLen+1)),
			Replace: randomString(rng, "XYZ", rng.IntN(6)),
			ID:      i,
		})
	}
	return rules
}

func randomString(rng *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func TestReplaceStringMatchesReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	cases := 1000
	if testing.Short() {
		cases = 200
	}
	for i := range cases {
		minLen := 1 + rng.IntN(4)
		rules := randomRules(rng, 1+rng.IntN(8), minLen, minLen+rng.IntN(40))
		in := randomString(rng, "abcABC-_ ", rng.IntN(300))
		ref := refCompile(rules)
		want, _, wantIDs := refRun(ref, []byte(in), true)
		s := New(rules)
		got, n := s.ReplaceString(in)
		if got != string(want) || n != len(wantIDs) {
			t.Fatalf("case %d: ReplaceString(%q) = %q, %d, want %q, %d", i, in, got, n, want, len(wantIDs))
		}
		var ids []int
		s.FindString(in, func(id int) { ids = append(ids, id) })
		if !slices.Equal(ids, wantIDs) {
			t.Fatalf("case %d: FindString IDs = %v, want %v", i, ids, wantIDs)
		}
	}
}

func TestFormatRedacts(t *testing.T) {
	const secret, placeholder = "s3cr3t-T0KEN-value", "placeholder-value0"
	rules := Pairs(secret, placeholder, 4)
	s := New(rules)
	st := s.NewStream(nil)
	st.Write(nil, []byte("xx "+secret[:5])) // holds part of the secret
	rd := NewReader(strings.NewReader(secret), s, nil)
	p := NewPartial([]string{secret}, 4)
	values := map[string]any{
		"Set": s, "Stream": st, "Reader": rd, "Partial": p, "Rule": rules[0], "Rules": rules,
		"Set value": *s, "Stream value": *st, "Partial value": *p, "nil Set": (*Set)(nil),
		"nil Partial": (*Partial)(nil),
	}
	for name, v := range values {
		outs := []string{}
		if g, ok := v.(fmt.GoStringer); ok && !strings.HasPrefix(name, "nil") {
			outs = append(outs, g.GoString())
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		for i, out := range outs {
			verb := fmt.Sprint(i)
			for _, r := range rules {
				for _, bad := range []string{r.Find, r.Replace, secret[:5], strings.ToLower(secret[:5])} {
					if strings.Contains(out, bad) {
						t.Errorf("format %s of %s shows a secret or placeholder (%d bytes of output)", verb, name, len(out))
					}
				}
			}
		}
	}
	if got, want := fmt.Sprint(s), fmt.Sprintf("scrub.Set{rules: %d}", len(rules)); got != want {
		t.Errorf("Sprint(Set) = %q, want %q", got, want)
	}
}
