package scrub

import (
	"strings"
	"testing"
)

func TestPartial(t *testing.T) {
	p := NewPartial([]string{"ghp_SECRETvalue1234", "", "xyz"}, 6)
	tests := []struct {
		name string
		v    string
		want bool
	}{
		{"whole secret", "Bearer ghp_SECRETvalue1234", true},
		{"run of exactly k", "x SECRET y", true},
		{"run of k other case", "secret", true},
		{"run at the end", "TOKEN=e1234", false},
		{"run of k at the end", "TOKEN=ue1234", true},
		{"run longer than k", "prefix-ETvalue12-suffix", true},
		{"run of k-1", "SECRE", false},
		{"two short runs", "ghp_S alue1 e1234", false},
		{"short secret whole", "aXYZb", true},
		{"short secret partial", "xy", false},
		{"empty", "", false},
		{"long value", strings.Repeat("ghp_S ", 60) + "value1", true},
		{"long value without a run", strings.Repeat("ghp_S ", 60), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Has(tt.v); got != tt.want {
				t.Errorf("Has(%q) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
	var nilPartial *Partial
	if nilPartial.Has("ghp_SECRETvalue1234") || NewPartial(nil, 4).Has("abcd") {
		t.Error("empty Partial found a run")
	}
	if !NewPartial([]string{"abc"}, 0).Has("xbx") {
		t.Error("k = 0 did not count as 1")
	}
}

// FuzzPartial checks Has (its rolling-hash filter in front of the map)
// against the definition: v holds, case-folded, k bytes in a row of a
// secret, or a whole secret shorter than k.
func FuzzPartial(f *testing.F) {
	f.Add("sk-abcdefghijklmnop", "x-request-id: ABCDEFGHIJKL", 12)
	f.Add("short", "a SHORT one", 12)
	f.Add("sk-abcdefghijklmnop", "no echo here, just text of some length", 4)
	f.Add("aaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaa", 12)
	f.Fuzz(func(t *testing.T, secret, v string, k int) {
		k = max(1, min(k, 64))
		p := NewPartial([]string{secret}, k)
		want := false
		fs, fv := string(lowerAll([]byte(secret))), string(lowerAll([]byte(v)))
		switch {
		case secret == "":
		case len(fs) < k:
			want = strings.Contains(fv, fs)
		default:
			for i := 0; i+k <= len(fs) && !want; i++ {
				want = strings.Contains(fv, fs[i:i+k])
			}
		}
		if got := p.Has(v); got != want {
			t.Errorf("NewPartial(secret, %d).Has(%q) = %v, want %v", k, v, got, want)
		}
	})
}

// BenchmarkPartialHeaders: Has over the values of an API answer's
// headers, none an echo (the usual case, every window looked at).
func BenchmarkPartialHeaders(b *testing.B) {
	p := NewPartial([]string{"sk-proj-" + strings.Repeat("Abc123XyZ", 18)}, 12)
	vals := []string{
		"application/json; charset=utf-8", "Mon, 07 Dec 2026 14:42:55 GMT", "req_8f3a9c2e1b7d4f6a0e5c",
		"max-age=31536000; includeSubDomains; preload", "cf-ray=8a1b2c3d4e5f6789-AMS",
		"__cf_bm=Zx9.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG-1733582575-1.0.1.1-abcdefghijklmnop; path=/; expires=Mon, 07-Dec-26 15:12:55 GMT; domain=.api.example.test; HttpOnly; Secure; SameSite=None",
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range vals {
			if p.Has(v) {
				b.Fatal("echo")
			}
		}
	}
}
