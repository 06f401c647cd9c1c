package scrub

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// benchRules returns n rules: the Pairs of secrets of realistic lengths
// (a GitHub-like token, JWT-ish and API-key-ish strings of 20 to 2000 bytes).
func benchRules(tb testing.TB, n int) []Rule {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{40, 20, 64, 120, 300, 2000, 51, 88, 36, 200}
	var rules []Rule
	for i := 0; len(rules) < n; i++ {
		secret := "tok_" + randomToken(rng, lengths[i%len(lengths)]-4)
		rules = append(rules, Pairs(secret, "cork_"+strings.Repeat("0", len(secret)-5), i)...)
	}
	return rules[:n]
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_."

func randomToken(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = tokenAlphabet[rng.IntN(len(tokenAlphabet))]
	}
	return string(b)
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

var words = strings.Fields(`the quick brown fox jumps over lazy dog lorem ipsum dolor sit amet
consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua
request response model token stream content delta choice index message role assistant user
function arguments name value status created object completion usage prompt total`)

// jsonText returns n bytes of JSON-like ASCII: records with ids, words,
// numbers and booleans, as an API would stream them.
func jsonText(rng *rand.Rand, n int) []byte {
	var b strings.Builder
	for b.Len() < n {
		fmt.Fprintf(&b, `{"id":"chatcmpl-%016x","object":"chat.completion.chunk","created":%d,`,
			rng.Uint64(), 1700000000+rng.IntN(1e8))
		b.WriteString(`"choices":[{"index":0,"delta":{"role":"assistant","content":"`)
		for range 5 + rng.IntN(20) {
			w := words[rng.IntN(len(words))]
			if rng.IntN(8) == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteString(w)
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, `"},"finish_reason":null}],"usage":{"total_tokens":%d,"ok":%t}}`+"\n",
			rng.IntN(5000), rng.IntN(2) == 0)
	}
	return []byte(b.String()[:n])
}

// benchStream streams data through 50 rules (and, as a sub-benchmark, 150)
// in writes of 32 KiB, as a response body would arrive.
func benchStream(b *testing.B, data []byte) {
	for _, n := range []int{50, 150} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { benchStreamRules(b, n, data) })
	}
}

func benchStreamRules(b *testing.B, rules int, data []byte) {
	s := New(benchRules(b, rules))
	const chunk = 32 << 10
	st := s.NewStream(nil)
	dst := make([]byte, 0, 2*chunk)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	b.ResetTimer()
	for range b.N {
		for off := 0; off < len(data); off += chunk {
			dst = st.Write(dst[:0], data[off:min(off+chunk, len(data))])
		}
		dst = st.Flush(dst[:0])
	}
	b.StopTimer()
	// The wall-clock MB/s suffers when other processes share the cores;
	// CPU-MB/s counts only this thread's CPU time.
	if cpu := threadCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(len(data))*float64(b.N)/1e6/cpu.Seconds(), "CPU-MB/s")
	}
	if st.Hits() != 0 {
		b.Fatalf("Hits() = %d on data without secrets, want 0", st.Hits())
	}
}

func BenchmarkStreamRandom(b *testing.B) {
	benchStream(b, randomBytes(rand.New(rand.NewPCG(3, 4)), 4<<20))
}

func BenchmarkStreamText(b *testing.B) {
	benchStream(b, jsonText(rand.New(rand.NewPCG(5, 6)), 4<<20))
}

func BenchmarkReplaceStringHeader(b *testing.B) {
	s := New(benchRules(b, 50))
	v := "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"
	b.ReportAllocs()
	for range b.N {
		if _, n := s.ReplaceString(v); n != 0 {
			b.Fatal("unexpected match")
		}
	}
}
