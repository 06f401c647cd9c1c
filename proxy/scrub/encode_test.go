package scrub

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strings"
	"testing"
)

var encodingSecrets = []string{
	"ghp_0123456789abcdefABCDEF0123456789abcd",
	"sk-proj-\xfb\xff\xbe+/==?&x",
	testSecret,
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjb3JrIn0.c2lnbmF0dXJl",
	"a/b\"c<d>e&f'g h+i%j\n",
}

// reflections returns the texts in which a server may echo secret.
func reflections(secret string) map[string]string {
	out := map[string]string{
		"exact":      secret,
		"query":      url.QueryEscape(secret),
		"path":       url.PathEscape(secret),
		"hex":        hex.EncodeToString([]byte(secret)),
		"HEX":        strings.ToUpper(hex.EncodeToString([]byte(secret))),
		"html":       html.EscapeString(secret),
		"json":       mustJSON(secret),
		"json slash": strings.ReplaceAll(mustJSON(secret), "/", `\/`),
	}
	encs := map[string]*base64.Encoding{
		"std": base64.StdEncoding, "url": base64.URLEncoding,
		"rawstd": base64.RawStdEncoding, "rawurl": base64.RawURLEncoding,
	}
	for _, user := range []string{"", "u", "us", "usr", "user", "x-acc"} {
		for name, enc := range encs {
			b := enc.EncodeToString([]byte(user + ":" + secret))
			out["basic "+name+" "+user] = "Basic " + b
			out["basic query "+name+" "+user] = url.QueryEscape(b)
			out["bare "+name+" "+user] = enc.EncodeToString([]byte(user + secret + "tail"))
		}
	}
	return out
}

func mustJSON(v string) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestEncodingsCoverReflections(t *testing.T) {
	for _, secret := range encodingSecrets {
		encs := Encodings(secret)
		for name, text := range reflections(secret) {
			if !slices.ContainsFunc(encs, func(e string) bool { return containsFold([]byte(text), e) }) {
				t.Errorf("Encodings(secret of %d bytes): no form found in its %s reflection", len(secret), name)
			}
		}
	}
}

func TestEncodingsShortSecret(t *testing.T) {
	// Too short for base64 cores of MinFind bytes at every alignment, and
	// an exact string shorter than MinFind is kept.
	const secret = "short1"
	encs := Encodings(secret)
	want := []string{secret, hex.EncodeToString([]byte(secret)), base64.StdEncoding.EncodeToString([]byte(secret))}
	if !slices.Equal(encs, want) {
		t.Errorf("Encodings(%q) = %q, want %q", secret, encs, want)
	}
	if got := Encodings("ab"); !slices.Equal(got, []string{"ab"}) {
		t.Errorf("Encodings(%q) = %q, want only the exact string", "ab", got)
	}
	if got := Encodings(""); !slices.Equal(got, []string{""}) {
		t.Errorf("Encodings(\"\") = %q", got)
	}
}

func TestEncodingsShape(t *testing.T) {
	for _, secret := range append(encodingSecrets, "short1", "x") {
		encs := Encodings(secret)
		if encs[0] != secret {
			t.Errorf("Encodings(secret)[0] is not the secret")
		}
		seen := map[string]bool{}
		for i, e := range encs {
			k := strings.ToLower(e)
			if seen[k] {
				t.Errorf("Encodings(secret of %d bytes)[%d] repeats an earlier form", len(secret), i)
			}
			seen[k] = true
			if i > 0 && len(e) < MinFind {
				t.Errorf("Encodings(secret of %d bytes)[%d] has %d bytes, want >= %d", len(secret), i, len(e), MinFind)
			}
		}
		if !slices.Equal(encs, Encodings(secret)) {
			t.Errorf("Encodings is not deterministic")
		}
	}
}

func TestPairs(t *testing.T) {
	const secret, repl = "tok/en+1234567890<abc>", "plh/ld+0000000000<xyz>"
	pairs := Pairs(secret, repl, 7)
	encs := Encodings(secret)
	if len(pairs) != len(encs) {
		t.Fatalf("len(Pairs) = %d, want len(Encodings) = %d", len(pairs), len(encs))
	}
	kinds := map[string]func(string) string{
		"exact": func(v string) string { return v },
		"query": url.QueryEscape,
		"path":  url.PathEscape,
		"hex":   func(v string) string { return hex.EncodeToString([]byte(v)) },
		"html":  html.EscapeString,
		"json":  func(v string) string { return strings.Trim(mustJSON(v), `"`) },
		"base64 core at 0": func(v string) string {
			return base64.StdEncoding.EncodeToString([]byte(v))[:len(v)*8/6]
		},
	}
	matched := map[string]bool{}
	for i, p := range pairs {
		if p.Find != encs[i] || p.ID != 7 {
			t.Errorf("Pairs[%d] does not line up with Encodings[%d]", i, i)
		}
		for name, f := range kinds {
			if p.Find == f(secret) {
				matched[name] = true
				if p.Replace != f(repl) {
					t.Errorf("Pairs[%d] (%s): Replace is not the %s form of the replacement", i, name, name)
				}
			}
		}
	}
	for name := range kinds {
		if !matched[name] {
			t.Errorf("no pair of kind %s", name)
		}
	}
	for _, p := range Pairs(secret, "", 1) {
		if p.Replace != p.Find {
			t.Errorf("detection-only pair has Replace != Find")
		}
	}
}

// TestPairsReplaceBasic replaces secret inside Basic credentials and checks
// that the secret is gone and, where the base64 alignment allows, that the
// credentials now decode to the placeholder.
func TestPairsReplaceBasic(t *testing.T) {
	for _, secret := range []string{"ghp_0123456789abcdefABCDEF0123456789abcd", "gho_x?>>y~~z/+0123456789abcdefgh"} {
		placeholder := secret[:4] + strings.Repeat("0", len(secret)-5) + secret[len(secret)-1:]
		s := New(Pairs(secret, placeholder, 1))
		encs := map[string]*base64.Encoding{
			"std": base64.StdEncoding, "url": base64.URLEncoding,
			"rawstd": base64.RawStdEncoding, "rawurl": base64.RawURLEncoding,
		}
		for _, user := range []string{"", "u", "us", "usr", "user", "x-acc"} {
			for name, enc := range encs {
				in := enc.EncodeToString([]byte(user + ":" + secret))
				for _, wrap := range []func(string) string{func(v string) string { return v }, url.QueryEscape} {
					out, n := s.ReplaceString("Basic " + wrap(in))
					if n != 1 {
						t.Fatalf("%s user %q: %d replacements, want 1", name, user, n)
					}
					checkScrubbed(t, []byte(out), secret)
					got, err := url.QueryUnescape(strings.TrimPrefix(out, "Basic "))
					if err != nil {
						t.Fatalf("unescape: %v", err)
					}
					dec, err := enc.DecodeString(got)
					if err != nil {
						t.Fatalf("%s user %q: the replaced credentials do not decode: %v", name, user, err)
					}
					// The first and last bytes of the secret share base64
					// characters with their neighbours, which stay as they
					// were; the placeholder has the same first and last bytes.
					if want := user + ":" + placeholder; string(dec) != want {
						t.Errorf("%s user %q: credentials decode to %q, want %q", name, user, dec, want)
					}
				}
			}
		}
	}
}
