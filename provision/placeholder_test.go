package provision

import (
	"bytes"
	"strings"
	"testing"
)

func TestPlaceholderLike(t *testing.T) {
	tests := []struct {
		real, prefix string
		wantLen      int
	}{
		{"sk-proj-" + strings.Repeat("x", 156), "sk-proj-", 164},
		{"sk-svcacct-" + strings.Repeat("x", 40), "sk-svcacct-", 51},
		{"sk-" + strings.Repeat("x", 48), "sk-", 51},
		{"rt_" + strings.Repeat("x", 80), "rt_", 83},
		{"opaque" + strings.Repeat("x", 40), "", 46},
		{"sk-short", "sk-", 3 + minRandom}, // never fewer than minRandom random characters
	}
	for _, tt := range tests {
		got, err := placeholderLike(seededReader(), tt.real, append(apiKeyPrefixes, refreshPrefixes...))
		if err != nil {
			t.Fatalf("placeholderLike(%q) error = %v", tt.real, err)
		}
		if !strings.HasPrefix(got, tt.prefix) || len(got) != tt.wantLen || got == tt.real {
			t.Errorf("placeholderLike(%q) = %q, want prefix %q and length %d", tt.real, got, tt.prefix, tt.wantLen)
		}
		if strings.Trim(got[len(tt.prefix):], alnum) != "" {
			t.Errorf("placeholderLike(%q) = %q, want alphanumerics after the prefix", tt.real, got)
		}
	}
}

func TestPlaceholderLikeNeverTheReal(t *testing.T) {
	// A broken source that yields the real key's characters must fail,
	// not hand the real key to the sandbox.
	zeros := bytes.NewReader(make([]byte, 1<<16))
	real := "sk-" + strings.Repeat("A", 30)
	if got, err := placeholderLike(zeros, real, apiKeyPrefixes); err == nil {
		t.Errorf("placeholderLike(zero source) = %q, nil; want an error", got)
	}
}

func TestRandomStringUniform(t *testing.T) {
	s, err := randomString(seededReader(), alnum, 62*200)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range alnum {
		if n := strings.Count(s, string(c)); n < 100 || n > 320 {
			t.Errorf("randomString: %q appears %d times in %d, want about 200", c, n, len(s))
		}
	}
}

func seededReader() *bytes.Reader {
	b := make([]byte, 1<<16)
	if _, err := seeded(3).Read(b); err != nil {
		panic(err)
	}
	return bytes.NewReader(b)
}
