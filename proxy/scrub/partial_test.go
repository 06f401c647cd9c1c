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
