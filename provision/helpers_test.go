package provision

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/resolve"
)

// fixtureDir is the shared Codex fixtures directory.
var fixtureDir = filepath.Join("..", "testdata", "codex")

// testNow is the fixed clock of these tests.
var testNow = time.Date(2026, 11, 2, 8, 30, 0, 0, time.UTC)

// codexHome returns the absolute fixture directory name, for CODEX_HOME.
func codexHome(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// forwardOpts reads the host auth.json from the fixture directory name.
func forwardOpts(t *testing.T, name string) Options {
	t.Helper()
	return Options{
		HostHome:               t.TempDir(),
		HostEnv:                map[string]string{"CODEX_HOME": codexHome(t, name)},
		ForwardHostCredentials: true,
		Now:                    func() time.Time { return testNow },
	}
}

// seeded returns a deterministic random source.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

func mustBuild(t *testing.T, opts Options) Plan {
	t.Helper()
	plan, err := Build(opts, Codex{})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	return plan
}

func file(t *testing.T, plan Plan, path string) File {
	t.Helper()
	for _, f := range plan.Files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("plan has no file %s; files: %v", path, plan)
	return File{}
}

// hostAuth is a fixture auth.json, decoded loosely.
type hostAuth struct {
	AuthMode     string  `json:"auth_mode"`
	OpenAIAPIKey *string `json:"OPENAI_API_KEY"`
	Tokens       *struct {
		IDToken      string  `json:"id_token"`
		AccessToken  string  `json:"access_token"`
		RefreshToken string  `json:"refresh_token"`
		AccountID    *string `json:"account_id"`
	} `json:"tokens"`
	LastRefresh *string `json:"last_refresh"`
}

func decodeAuth(t *testing.T, data []byte) hostAuth {
	t.Helper()
	var a hostAuth
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&a); err != nil {
		t.Fatalf("decode auth.json: %v\n%s", err, data)
	}
	return a
}

func readHostAuth(t *testing.T, name string) hostAuth {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, name, "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	return decodeAuth(t, data)
}

// secrets lists every secret string of the fixture name: whole tokens,
// each JWT's payload and signature segments, and the markers of claims
// that must never be copied.
func secrets(t *testing.T, name string) []string {
	t.Helper()
	a := readHostAuth(t, name)
	out := []string{
		"REALSESSIONID", "REALIDJTI", "REALATHASH", "REALORGID", "REALACCESSJTI",
		"REALIDKID", "REALACCESSKID", "authsess_REALSESSION", "REALIDSIG", "REALACCESSSIG",
		"rt_REALREFRESH", "REALAPIKEY",
	}
	if a.OpenAIAPIKey != nil {
		out = append(out, *a.OpenAIAPIKey)
	}
	if tk := a.Tokens; tk != nil {
		out = append(out, tk.IDToken, tk.AccessToken, tk.RefreshToken)
		for _, jwt := range []string{tk.IDToken, tk.AccessToken} {
			parts := strings.Split(jwt, ".")
			out = append(out, parts[1], parts[2])
		}
	}
	return out
}

// sandboxView is everything the sandbox (and the policy file) can see of
// plan, with the payloads of the JWTs in auth.json decoded, since a copied
// claim would otherwise hide in base64.
func sandboxView(t *testing.T, plan Plan) string {
	t.Helper()
	var b strings.Builder
	for _, f := range plan.Files {
		b.WriteString(f.Path + "\n")
		b.Write(f.Data)
		if f.Path == CodexAuthFile {
			a := decodeAuth(t, f.Data)
			if a.Tokens != nil {
				for _, jwt := range []string{a.Tokens.IDToken, a.Tokens.AccessToken} {
					for _, p := range strings.Split(jwt, ".")[:2] {
						d, err := base64.RawURLEncoding.DecodeString(p)
						if err != nil {
							t.Fatalf("dummy JWT part %q: %v", p, err)
						}
						b.Write(d)
					}
				}
			}
		}
	}
	for k, v := range plan.Env {
		b.WriteString(k + "=" + v + "\n")
	}
	pol, err := plan.Egress.Policy()
	if err != nil {
		t.Fatal(err)
	}
	y, err := policy.Marshal(*pol)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(y)
	return b.String()
}

// jwtClaims decodes a JWT payload strictly: base64url without padding.
func jwtClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT has %d parts, want 3", len(parts))
	}
	for i, p := range parts {
		if p == "" || strings.ContainsAny(p, "=+/") {
			t.Fatalf("JWT part %d = %q, want non-empty base64url without padding", i, p)
		}
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// revealed is e with its values revealed, for comparisons.
func revealed(e resolve.Env) map[string]string {
	m := make(map[string]string, len(e))
	for k, v := range e {
		m[k] = v.Reveal()
	}
	return m
}

// testUnreadable checks p's errors for a host credential file (name, in
// the directory homeEnv points to) that is missing, is a directory, or has
// no directory to be in: each names the path and, when missing, how to
// sign in (hint).
func testUnreadable(t *testing.T, p Profile, homeEnv, name, hint string) {
	missing := t.TempDir()
	dirAsFile := t.TempDir()
	if err := os.Mkdir(filepath.Join(dirAsFile, name), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, home, want string
		is               error
	}{
		{"missing", missing, "no such file or directory (" + hint, os.ErrNotExist},
		{"directory", dirAsFile, "is a directory", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{HostEnv: map[string]string{homeEnv: tt.home}, ForwardHostCredentials: true}
			_, err := Build(opts, p)
			want := p.Name() + ": read " + filepath.Join(tt.home, name) + ": " + tt.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Build() error = %v, want prefix %q", err, want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Build() error = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
	t.Run("no home", func(t *testing.T) {
		_, err := Build(Options{ForwardHostCredentials: true}, p)
		if err == nil || !strings.Contains(err.Error(), "neither "+homeEnv+" nor the host home") {
			t.Errorf("Build() error = %v, want it to say where %s would be", err, name)
		}
	})
}

// checkReadError checks Build's error for a malformed host credential file
// at path: "<profile>: read <path>: " then want, one line, and none of the
// file's string values or of secrets after the path (which may spell a
// value, say "apikey").
func checkReadError(t *testing.T, profile, path string, err error, want string, secrets []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Build error = nil, want %q", want)
	}
	prefix := profile + ": read " + path
	if !strings.HasPrefix(err.Error(), prefix+": "+want) {
		t.Errorf("Build error = %q, want prefix %q", err, prefix+": "+want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("Build error = %q, want one line", err)
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	rest := strings.TrimPrefix(err.Error(), prefix)
	for _, s := range append(secrets, stringValues(data)...) {
		if len(s) > 3 && strings.Contains(rest, s) {
			t.Errorf("Build error = %q, contains input value %.24q", err, s)
		}
	}
}
