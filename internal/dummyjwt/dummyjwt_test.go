package dummyjwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestMintParseRoundTrip(t *testing.T) {
	claims := map[string]any{"email": "a@example.com", "exp": 1234567890, "jti": "x"}
	tok, err := Mint(claims, nil)
	if err != nil {
		t.Fatalf("Mint() error = %v", err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("Mint() = %d parts, want 3", len(parts))
	}
	if strings.Contains(tok, "=") {
		t.Errorf("Mint() = %q contains padding", tok)
	}
	if got, want := parts[0], base64.RawURLEncoding.EncodeToString([]byte(Header)); got != want {
		t.Errorf("Mint() header = %q, want %q", got, want)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != SignatureSize {
		t.Errorf("Mint() signature = %d bytes (err %v), want %d", len(sig), err, SignatureSize)
	}
	got, err := Parse(tok)
	if err != nil {
		t.Fatalf("Parse(Mint()) error = %v", err)
	}
	if got["email"] != "a@example.com" || got["jti"] != "x" || got["exp"] != json.Number("1234567890") {
		t.Errorf("Parse(Mint()) = %v, want %v", got, claims)
	}
}

func TestMintRandomSignature(t *testing.T) {
	a, err := Mint(map[string]any{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Mint(map[string]any{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("Mint() twice = %q both times, want different signatures", a)
	}
}

func TestMintShortRand(t *testing.T) {
	if _, err := Mint(map[string]any{}, bytes.NewReader(make([]byte, 10))); err == nil {
		t.Error("Mint(short reader) error = nil, want error")
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestParseMalformed(t *testing.T) {
	const secret = "SECRETCLAIMVALUE"
	h := b64(Header)
	p := b64(`{"sub":"` + secret + `"}`)
	padded := base64.URLEncoding.EncodeToString([]byte(`{"sub":"` + secret + `xy"}`))
	if !strings.HasSuffix(padded, "=") {
		t.Fatalf("test setup: %q has no padding", padded)
	}
	tests := []struct {
		name, token, want string
	}{
		{"empty", "", "want 3 parts, got 1"},
		{"two parts", h + "." + p, "want 3 parts, got 2"},
		{"four parts", h + "." + p + ".c2ln.eA", "want 3 parts, got 4"},
		{"padded payload", h + "." + padded + ".c2ln", "payload: base64url padding is not allowed"},
		{"std alphabet", h + "." + p + "+/.c2ln", "payload: not base64url: invalid character"},
		{"newline", h + "." + p[:4] + "\n" + p[4:] + ".c2ln", "payload: not base64url: invalid character"},
		{"empty signature", h + "." + p + ".", "signature: empty"},
		{"empty header", "." + p + ".c2ln", "header: empty"},
		{"bad length", h + ".eyJ9A.c2ln", "payload: not base64url: bad length"},
		{"payload not object", h + "." + b64(`["`+secret+`"]`) + ".c2ln", "payload: not a JSON object"},
		{"payload null", h + "." + b64(`null`) + ".c2ln", "payload: not a JSON object"},
		{"payload trailing", h + "." + b64(`{"a":1} {"b":"`+secret+`"}`) + ".c2ln", "payload: trailing data"},
		{"header not json", b64("nope "+secret) + "." + p + ".c2ln", "header: not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.token)
			if err == nil {
				t.Fatalf("Parse(%q) error = nil, want %q", tt.token, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%q) error = %v, want it to wrap ErrMalformed", tt.token, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.token, err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), p) {
				t.Errorf("Parse(%q) error = %q, leaks token content", tt.token, err)
			}
		})
	}
}

var errTemplate = regexp.MustCompile(`^malformed JWT: (want 3 parts, got \d+|(header|payload|signature): (empty|base64url padding is not allowed|not base64url: invalid character at offset \d+|not base64url: bad length or trailing bits|not a JSON object|trailing data after the JSON object))$`)

func FuzzParse(f *testing.F) {
	tok, err := Mint(map[string]any{"email": "a@example.com"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("a.b.c")
	f.Add("eyJ9.eyJ9.eA==")
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := Parse(token)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%q) error = %v, want ErrMalformed", token, err)
			}
			// Every error is one of a few fixed templates, so none can
			// carry any of the token.
			if !errTemplate.MatchString(err.Error()) {
				t.Errorf("Parse(%q) error = %q, want a fixed template", token, err)
			}
			return
		}
		if claims == nil {
			t.Errorf("Parse(%q) = nil claims, nil error", token)
		}
		if strings.Count(token, ".") != 2 || strings.Contains(token, "=") {
			t.Errorf("Parse(%q) accepted a token of the wrong shape", token)
		}
	})
}
