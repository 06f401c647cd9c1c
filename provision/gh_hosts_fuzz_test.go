package provision

import (
	"os"
	"path/filepath"
	"testing"
)

// ghHostsErrVocabulary lists every error parseGHHosts can return for host
// github.com, digits normalised.
func ghHostsErrVocabulary() map[string]bool {
	v := map[string]bool{}
	for _, msg := range []string{
		"not valid YAML (line 0)",
		"not valid YAML",
		"line 0: want a mapping of host names",
		"github.com: want a mapping (line 0)",
		"github.com.oauth_token: want a string (line 0)",
		"github.com.user: want a string (line 0)",
		"github.com.users: want a mapping (line 0)",
		"github.com.users.(the active user).oauth_token: want a string (line 0)",
		"github.com.oauth_token: not a token: it holds spaces or control characters",
	} {
		v[normDigits(msg)] = true
	}
	return v
}

// FuzzParseGHHosts: whatever hosts.yml holds, parseGHHosts returns one of
// its fixed messages (so never a value of the file), or a login whose
// token is usable in a header.
func FuzzParseGHHosts(f *testing.F) {
	for _, dir := range []string{"gh-2.23", "gh-multi", "gh-keyring"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "github", dir, "hosts.yml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("github.com: gho_REALSECRETASASTRING\n"))
	f.Add([]byte("github.com:\n    oauth_token: [gho_REALSECRETINALIST]\n"))
	f.Add([]byte("github.com:\n    user: gho_REALSECRETUSER\n    users:\n        gho_REALSECRETUSER:\n            oauth_token: {a: b}\n"))
	f.Add([]byte("github.com:\n    oauth_token: \"gho_REAL SECRET\"\n"))
	f.Add([]byte("github.com:\n\toauth_token: gho_REALTAB\n"))
	f.Add([]byte("- gho_REALSECRETLIST\n"))
	f.Add([]byte("github.com: &a\n    oauth_token: *a\n"))
	vocab := ghHostsErrVocabulary()
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseGHHosts(data, "github.com")
		if err != nil {
			if !vocab[normDigits(err.Error())] {
				t.Fatalf("parseGHHosts(%q) error = %q, not one of the fixed messages", data, err)
			}
			return
		}
		if l.token != "" && checkToken(l.token) != nil {
			t.Errorf("parseGHHosts(%q) token %q: not usable in a header", data, l.token)
		}
	})
}
