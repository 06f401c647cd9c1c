package provision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// claudeErrVocabulary lists every error parseClaudeCredentials can return,
// digits normalised.
func claudeErrVocabulary() map[string]bool {
	v := map[string]bool{}
	for _, msg := range []string{
		"invalid JSON at byte 0",
		"want a JSON object",
		"want a JSON object, got null",
		"claudeAiOauth: missing (sign in on the host with `claude`)",
		"claudeAiOauth: want a JSON object",
		"claudeAiOauth: want a JSON object, got null",
		"claudeAiOauth.accessToken: missing or empty",
		"claudeAiOauth.accessToken: want a string",
		"claudeAiOauth.expiresAt: want milliseconds since the epoch",
		"claudeAiOauth.scopes: want a list of strings",
		"claudeAiOauth.scopes: no user:inference scope, so this sign-in cannot call the API " +
			"(run `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN, or set ANTHROPIC_API_KEY)",
	} {
		v[normDigits(msg)] = true
	}
	return v
}

func FuzzParseClaudeCredentials(f *testing.F) {
	for _, dir := range []string{"oauth", "minimal"} {
		addClaudeFixture(f, dir)
	}
	bad, err := os.ReadDir(filepath.Join(claudeFixtureDir, "bad"))
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range bad {
		addClaudeFixture(f, filepath.Join("bad", d.Name()))
	}
	f.Add([]byte(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-x","expiresAt":1.5}}`))
	f.Add([]byte(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-x","expiresAt":-1,"scopes":null}}`))
	f.Add([]byte(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-x","scopes":["user:inference",7]}}`))
	f.Add([]byte(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-x","expiresAt":1e300}}`))
	f.Add([]byte(`{"claudeAiOauth":null}`))
	f.Add([]byte(`["sk-ant-oat01-REALSECRETINALIST"]`))

	vocab := claudeErrVocabulary()
	var all strings.Builder
	for v := range vocab {
		all.WriteString(v + "\n")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseClaudeCredentials(data)
		if err != nil {
			if !vocab[normDigits(err.Error())] {
				t.Fatalf("parseClaudeCredentials(%q) error = %q, not one of the fixed messages", data, err)
			}
			for _, v := range stringValues(data) {
				if len(v) > 3 && strings.Contains(err.Error(), v) && !strings.Contains(all.String(), normDigits(v)) {
					t.Errorf("parseClaudeCredentials(%q) error = %q contains input value %q", data, err, v)
				}
			}
			return
		}
		if c.accessToken == "" {
			t.Errorf("parseClaudeCredentials(%q) = no access token, nil error", data)
		}
		if !c.expiresAt.IsZero() && c.expiresAt.UnixMilli() < 0 {
			t.Errorf("parseClaudeCredentials(%q) expiresAt = %v, want not before 1970", data, c.expiresAt)
		}
	})
}

func addClaudeFixture(f *testing.F, name string) {
	f.Helper()
	data, err := os.ReadFile(filepath.Join(claudeFixtureDir, name, ".credentials.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}
