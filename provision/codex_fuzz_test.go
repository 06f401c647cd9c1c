package provision

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// stringValues returns every JSON string literal in data that is not an
// object key, raw and decoded, found lexically so that it works on
// malformed input too.
func stringValues(data []byte) []string {
	var out []string
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		j := i + 1
		for j < len(data) && data[j] != '"' {
			if data[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(data) {
			out = append(out, string(data[i+1:]))
			break
		}
		raw, lit := data[i+1:j], data[i:j+1]
		i = j
		if k := bytes.IndexFunc(data[j+1:], func(r rune) bool { return !unicode.IsSpace(r) }); k >= 0 && data[j+1+k] == ':' {
			continue // a key: the parsers name fields, not input
		}
		out = append(out, string(raw))
		var s string
		if json.Unmarshal(lit, &s) == nil && s != string(raw) {
			out = append(out, s)
		}
	}
	return out
}

// Every error parseCodexAuth returns is a field path and a fixed phrase.
var (
	codexErrPaths = []string{
		"auth_mode", "OPENAI_API_KEY", "tokens", "tokens.id_token", "tokens.access_token",
		"tokens.refresh_token", "tokens.account_id", "last_refresh",
		"tokens.id_token: claim email",
		"tokens.id_token: claim https://api.openai.com/auth",
		"tokens.id_token: claim https://api.openai.com/auth.chatgpt_plan_type",
		"tokens.id_token: claim https://api.openai.com/auth.chatgpt_user_id",
		"tokens.id_token: claim https://api.openai.com/auth.chatgpt_account_id",
	}
	codexErrPhrases = []string{
		"invalid JSON at byte 0", "want a JSON object", "want a JSON object, got null",
		`want "chatgpt" or "apikey"`, "want a string", "want an object",
		"missing or empty in API-key mode", "missing (sign in again with `codex login` on the host)",
		"missing or empty", "missing", "want an RFC 3339 time",
		"malformed JWT: want 3 parts, got 0",
	}
	jwtPhrases = []string{
		"empty", "base64url padding is not allowed", "not base64url: invalid character at offset 0",
		"not base64url: bad length or trailing bits", "not a JSON object", "trailing data after the JSON object",
	}
)

// codexErrVocabulary lists every possible error, digits normalised.
func codexErrVocabulary() map[string]bool {
	phrases := append([]string(nil), codexErrPhrases...)
	for _, part := range []string{"header", "payload", "signature"} {
		for _, p := range jwtPhrases {
			phrases = append(phrases, "malformed JWT: "+part+": "+p)
		}
	}
	v := map[string]bool{}
	for _, p := range phrases {
		v[normDigits(p)] = true
		for _, path := range codexErrPaths {
			v[normDigits(path+": "+p)] = true
		}
	}
	return v
}

var digits = regexp.MustCompile(`[0-9]+`)

func normDigits(s string) string { return digits.ReplaceAllString(s, "0") }

func FuzzParseCodexAuth(f *testing.F) {
	for _, dir := range []string{"chatgpt", "chatgpt-noauthmode", "apikey"} {
		addFixture(f, dir)
	}
	bad, err := os.ReadDir(filepath.Join(fixtureDir, "bad"))
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range bad {
		addFixture(f, filepath.Join("bad", d.Name()))
	}
	f.Add([]byte(`{"auth_mode":"chatgpt","tokens":{"id_token":"abcd.efgh.ijkl"}}`))
	f.Add([]byte(`{"auth_mode":"secretmode"}`))
	f.Add([]byte(`{"OPENAI_API_KEY":12345678}`))
	f.Add([]byte(`null`))

	vocab := codexErrVocabulary()
	var all strings.Builder
	for v := range vocab {
		all.WriteString(v + "\n")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseCodexAuth(data)
		if err != nil {
			msg := normDigits(err.Error())
			if !vocab[msg] {
				t.Fatalf("parseCodexAuth(%q) error = %q, not one of the fixed messages", data, err)
			}
			for _, v := range stringValues(data) {
				if len(v) <= 3 || !strings.Contains(err.Error(), v) {
					continue
				}
				if !strings.Contains(all.String(), normDigits(v)) {
					t.Errorf("parseCodexAuth(%q) error = %q contains input value %q", data, err, v)
				}
			}
			return
		}
		switch a.mode {
		case codexAPIKey:
			if a.apiKey == "" {
				t.Errorf("parseCodexAuth(%q) = API-key mode without a key", data)
			}
		case codexChatGPT:
			if a.accessToken == "" || a.lastRefresh.IsZero() {
				t.Errorf("parseCodexAuth(%q) = ChatGPT mode without access token or last_refresh", data)
			}
		default:
			t.Errorf("parseCodexAuth(%q) mode = %v, want one", data, a.mode)
		}
	})
}

func addFixture(f *testing.F, name string) {
	f.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, name, "auth.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}
