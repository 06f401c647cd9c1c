package scrub

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const (
	testSecret      = "ghs_Rk9PYmFyLzEyMys0NTY3ODkw&a<b>c\"d/e"
	testPlaceholder = "ghs_cork000000000000000000000000000000"
)

// echoes returns texts in which a server reflects secret: its encodings in
// another case, inside JSON, HTML, SSE, URL and Basic credentials.
func echoes(secret string) []string {
	var out []string
	for _, e := range Encodings(secret) {
		out = append(out, e, strings.ToUpper(e), strings.ToLower(e))
	}
	return append(out,
		`{"headers":{"Authorization":"Bearer `+jsonString(secret)+`"}}`,
		"data: {\"token\":\""+secret+"\"}\n\n",
		"<pre>"+strings.ToUpper(secret)+"</pre>",
	)
}

// embed returns random filler with the given pieces at random places.
func embed(rng *rand.Rand, pieces []string, n int) []byte {
	var b []byte
	for range n {
		b = append(b, randomString(rng, "ghs_ABCabc0123 \n\"{}:=+/%", rng.IntN(12))...)
		if rng.IntN(3) > 0 {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
	}
	return b
}

// checkScrubbed fails if out holds any encoding of secret.
func checkScrubbed(t *testing.T, out []byte, secret string) {
	t.Helper()
	for _, e := range Encodings(secret) {
		if containsFold(out, e) {
			t.Fatalf("output holds an encoding of the secret (%d bytes long)", len(e))
		}
	}
}

func TestStreamEverySplit(t *testing.T) {
	t.Parallel()
	rules := Pairs(testSecret, testPlaceholder, 1)
	rules = append(rules, Pairs("sk-other-0123456789abcdef", "sk-cork-00000000000000000", 2)...)
	s := New(rules)
	ref := refCompile(rules)
	rng := rand.New(rand.NewPCG(9, 10))
	pieces := append(echoes(testSecret), echoes("sk-other-0123456789abcdef")...)
	inputs := [][]byte{
		[]byte(testSecret),
		[]byte(testSecret + testSecret),
		[]byte("x" + strings.ToLower(testSecret) + "y"),
		[]byte(testSecret[:len(testSecret)-1]), // a prefix only: released at Flush
		embed(rng, pieces, 3),
		embed(rng, pieces, 6),
		embed(rng, pieces, 12),
		embed(rng, pieces, 30),
	}
	for i, in := range inputs {
		want, n := s.ReplaceString(string(in))
		wantRef, _, wantIDs := refRun(ref, in, true)
		if want != string(wantRef) || n != len(wantIDs) {
			t.Fatalf("input %d: ReplaceString differs from the reference", i)
		}
		checkScrubbed(t, []byte(want), testSecret)
		for c := 0; c <= len(in); c++ {
			got, ids := streamChunks(t, s, ref, in, []int{c})
			if string(got) != want || !slices.Equal(ids, wantIDs) {
				t.Fatalf("input %d split at %d: stream output differs from ReplaceString", i, c)
			}
		}
		for c := 0; c <= len(in) && len(in) <= 80; c++ {
			for d := c; d <= len(in); d++ {
				if got, _ := streamChunks(t, s, ref, in, []int{c, d}); string(got) != want {
					t.Fatalf("input %d split at %d, %d: stream output differs from ReplaceString", i, c, d)
				}
			}
		}
	}
}

func randomCuts(rng *rand.Rand, n int) []int {
	var cuts []int
	for c := 0; c < n; {
		c += rng.IntN(max(2, n/(1+rng.IntN(20))))
		if c < n {
			cuts = append(cuts, c)
		}
	}
	return cuts
}

func TestStreamRandomSplits(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	cases := 500
	if testing.Short() {
		cases = 50
	}
	for i := range cases {
		var rules []Rule
		var pieces []string
		for j := range 1 + rng.IntN(4) {
			secret := randomString(rng, "abcXYZ0189+/-_", 1+rng.IntN(30))
			rules = append(rules, Pairs(secret, randomString(rng, "pq", len(secret)), j)...)
			pieces = append(pieces, echoes(secret)...)
		}
		if i%3 == 0 { // overlapping small rules too
			rules = append(rules, randomRules(rng, 4, 1, 6)...)
		}
		s := New(rules)
		ref := refCompile(rules)
		in := embed(rng, pieces, 1+rng.IntN(10))
		want, _ := s.ReplaceString(string(in))
		for range 10 {
			if got, _ := streamChunks(t, s, ref, in, randomCuts(rng, len(in))); string(got) != want {
				t.Fatalf("case %d: stream output differs from ReplaceString", i)
			}
		}
	}
}

func TestStreamLongWrites(t *testing.T) {
	t.Parallel()
	rules := benchRules(t, 50)
	s := New(rules)
	ref := refCompile(rules)
	rng := rand.New(rand.NewPCG(13, 14))
	var pieces []string
	for _, r := range rules {
		pieces = append(pieces, r.Find, strings.ToUpper(r.Find))
	}
	in := embed(rng, pieces, 200)
	want, n := s.ReplaceString(string(in))
	if n == 0 {
		t.Fatal("no replacement in the test input")
	}
	for _, size := range []int{1, 7, 1000, 4095, 4096, 4097, 32 << 10} {
		var cuts []int
		for c := size; c < len(in); c += size {
			cuts = append(cuts, c)
		}
		if size == 1 {
			cuts = cuts[:min(len(cuts), 3000)]
		}
		if got, _ := streamChunks(t, s, ref, in, cuts); string(got) != want {
			t.Fatalf("writes of %d bytes: stream output differs from ReplaceString", size)
		}
	}
}

func TestStreamReleasesSSE(t *testing.T) {
	s := New(Pairs(testSecret, testPlaceholder, 1))
	st := s.NewStream(nil)
	var out []byte
	events := []string{
		"data: {\"delta\":\"hello\"}\n\n",
		"event: ping\ndata: " + testSecret + "\n\n",
		"data: ends with a prefix " + testSecret[:10] + "\n\n",
		": comment\n\n",
	}
	for _, ev := range events {
		before := len(out)
		out = st.Write(out, []byte(ev))
		want, _ := s.ReplaceString(ev)
		if st.Held() != 0 || string(out[before:]) != want {
			t.Fatalf("Write(event) released %q, held %d; want %q, 0", out[before:], st.Held(), want)
		}
	}
	// A Write ending in a prefix of a Find holds exactly that prefix.
	out = st.Write(out[:0], []byte("data: "+testSecret[:7]))
	if st.Held() != 7 || string(out) != "data: " {
		t.Errorf("Write(data + 7 bytes of the secret) released %q, held %d; want %q, 7", out, st.Held(), "data: ")
	}
	out = st.Write(out[:0], []byte("x\n\n"))
	if st.Held() != 0 || string(out) != testSecret[:7]+"x\n\n" {
		t.Errorf("Write after a false start released %q, held %d", out, st.Held())
	}
}

func TestStreamNilSet(t *testing.T) {
	for _, s := range []*Set{nil, New(nil), New([]Rule{{Find: ""}})} {
		st := s.NewStream(nil)
		out := st.Write(nil, []byte("anything"))
		out = st.Flush(out)
		if string(out) != "anything" || st.Held() != 0 || st.Hits() != 0 {
			t.Errorf("empty Set stream = %q, held %d, hits %d", out, st.Held(), st.Hits())
		}
	}
}

func TestStreamReuseAfterFlush(t *testing.T) {
	s := New([]Rule{{Find: "secret-value", Replace: "placeholder!", ID: 3}})
	var ids []int
	st := s.NewStream(func(id int) { ids = append(ids, id) })
	out := st.Flush(st.Write(nil, []byte("a secret-")))
	if string(out) != "a secret-" {
		t.Fatalf("first pass = %q", out)
	}
	out = st.Flush(st.Write(nil, []byte("secret-value")))
	if string(out) != "placeholder!" || st.Hits() != 1 || !slices.Equal(ids, []int{3}) {
		t.Errorf("second pass = %q, hits %d, ids %v", out, st.Hits(), ids)
	}
}

func TestStreamNoAllocs(t *testing.T) {
	s := New(benchRules(t, 50))
	rng := rand.New(rand.NewPCG(15, 16))
	data := jsonText(rng, 64<<10)
	// End chunks inside a Find, so that the seam path runs.
	find := []byte(s.rules[0].find)
	copy(data[32<<10-5:], find)
	st := s.NewStream(nil)
	dst := make([]byte, 0, 256<<10)
	write := func() {
		dst = st.Write(dst[:0], data[:32<<10])
		dst = st.Write(dst[:0], data[32<<10:])
		dst = st.Flush(dst[:0])
	}
	write()
	if n := testing.AllocsPerRun(20, write); n != 0 {
		t.Errorf("Write in steady state allocated %v times per run", n)
	}
	if st.Hits() == 0 {
		t.Fatal("the Find across the two writes was not replaced")
	}
}
