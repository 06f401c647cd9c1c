package provision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// geminiErrVocabulary lists every error parseGeminiCreds can return,
// digits normalised.
func geminiErrVocabulary() map[string]bool {
	v := map[string]bool{}
	for _, msg := range []string{
		"invalid JSON at byte 0",
		"want a JSON object",
		"want a JSON object, got null",
		"access_token: missing or empty (sign in again with `gemini` on the host)",
		"access_token: want a string (sign in again with `gemini` on the host)",
		"expiry_date: want milliseconds since the epoch",
		"scope: want a string",
	} {
		v[normDigits(msg)] = true
	}
	return v
}

func FuzzParseGeminiCreds(f *testing.F) {
	data, err := os.ReadFile(filepath.Join(geminiFixture, ".gemini", "oauth_creds.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"access_token":"ya29.x","expiry_date":1.5}`))
	f.Add([]byte(`{"access_token":"ya29.x","expiry_date":-1,"scope":null}`))
	f.Add([]byte(`{"access_token":"ya29.x","expiry_date":1e300}`))
	f.Add([]byte(`{"access_token":"ya29.x","scope":["REALSCOPE"]}`))
	f.Add([]byte(`{"access_token":null,"refresh_token":"1//0gREALREFRESH"}`))
	f.Add([]byte(`["ya29.REALSECRETINALIST"]`))

	vocab := geminiErrVocabulary()
	var all strings.Builder
	for v := range vocab {
		all.WriteString(v + "\n")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseGeminiCreds(data)
		if err != nil {
			if !vocab[normDigits(err.Error())] {
				t.Fatalf("parseGeminiCreds(%q) error = %q, not one of the fixed messages", data, err)
			}
			for _, v := range stringValues(data) {
				if len(v) > 3 && strings.Contains(err.Error(), v) && !strings.Contains(all.String(), normDigits(v)) {
					t.Errorf("parseGeminiCreds(%q) error = %q contains input value %q", data, err, v)
				}
			}
			return
		}
		if c.accessToken == "" {
			t.Errorf("parseGeminiCreds(%q) = no access token, nil error", data)
		}
		if !c.expiry.IsZero() && c.expiry.UnixMilli() < 0 {
			t.Errorf("parseGeminiCreds(%q) expiry = %v, want not before 1970", data, c.expiry)
		}
	})
}
