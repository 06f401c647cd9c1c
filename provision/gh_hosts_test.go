package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// ghFixture is the absolute fixture directory testdata/github/name, a gh
// config directory.
func ghFixture(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "github", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// stubGH is a fake host `gh`: it answers `gh auth token --hostname H`
// with tokens[H] and records its calls.
type stubGH struct {
	mu     sync.Mutex
	tokens map[string]string
	err    error
	calls  []string
}

func (s *stubGH) command(ctx context.Context, name string, args ...string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	call := strings.Join(append([]string{name}, args...), " ")
	s.calls = append(s.calls, call)
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	if s.err != nil {
		return nil, s.err
	}
	if len(args) == 4 && name == "gh" && args[0] == "auth" && args[1] == "token" && args[2] == "--hostname" {
		if tok, ok := s.tokens[args[3]]; ok {
			return []byte(tok + "\n"), nil
		}
	}
	return nil, fmt.Errorf("exit status 1")
}

func TestGHHostsPath(t *testing.T) {
	tests := []struct {
		name string
		home string
		env  map[string]string
		want string
	}{
		{"GH_CONFIG_DIR", "/home/u", map[string]string{"GH_CONFIG_DIR": "/cfg/gh", "XDG_CONFIG_HOME": "/xdg"}, "/cfg/gh/hosts.yml"},
		{"XDG_CONFIG_HOME", "/home/u", map[string]string{"XDG_CONFIG_HOME": "/xdg"}, "/xdg/gh/hosts.yml"},
		{"home", "/home/u", nil, "/home/u/.config/gh/hosts.yml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ghHostsPath(Options{HostHome: tt.home, HostEnv: tt.env}.withDefaults())
			if err != nil || got != tt.want {
				t.Errorf("ghHostsPath() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := ghHostsPath(Options{}.withDefaults()); err == nil || !strings.Contains(err.Error(), "GH_CONFIG_DIR") {
		t.Errorf("ghHostsPath() without home = %v, want an error naming GH_CONFIG_DIR", err)
	}
}

func TestParseGHHosts(t *testing.T) {
	tok := gitHubTokens(t)
	tests := []struct {
		name string
		data string
		host string
		want ghHostLogin
	}{
		{"gh 2.23", "github.com:\n    oauth_token: " + tok["oauth"] + "\n    user: monalisa\n    git_protocol: https\n", "github.com", ghHostLogin{user: "monalisa", token: tok["oauth"]}},
		{"host case", "GitHub.com:\n    oauth_token: " + tok["oauth"] + "\n    user: monalisa\n", "github.com", ghHostLogin{user: "monalisa", token: tok["oauth"]}},
		{"other host only", "ghe.example.com:\n    oauth_token: " + tok["oauth"] + "\n    user: monalisa\n", "github.com", ghHostLogin{}},
		{"enterprise host", "github.com:\n    user: a\nghe.example.com:\n    oauth_token: " + tok["classic"] + "\n    user: hubot\n", "ghe.example.com", ghHostLogin{user: "hubot", token: tok["classic"]}},
		{"multi-account, insecure storage", "github.com:\n    users:\n        monalisa:\n            oauth_token: " + tok["oauth"] + "\n        octocat:\n            oauth_token: " + tok["user_to_server"] + "\n    user: octocat\n", "github.com", ghHostLogin{user: "octocat", token: tok["user_to_server"]}},
		{"host token wins", "github.com:\n    oauth_token: " + tok["oauth"] + "\n    users:\n        octocat:\n            oauth_token: " + tok["user_to_server"] + "\n    user: octocat\n", "github.com", ghHostLogin{user: "octocat", token: tok["oauth"]}},
		{"keyring", "github.com:\n    users:\n        monalisa:\n    git_protocol: https\n    user: monalisa\n", "github.com", ghHostLogin{user: "monalisa"}},
		{"keyring, one user, none active", "github.com:\n    users:\n        monalisa: {}\n", "github.com", ghHostLogin{user: "monalisa"}},
		{"only git_protocol", "github.com:\n    git_protocol: ssh\n", "github.com", ghHostLogin{}},
		{"empty file", "", "github.com", ghHostLogin{}},
		{"null host", "github.com:\n", "github.com", ghHostLogin{}},
		{"comments only", "# nothing\n", "github.com", ghHostLogin{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGHHosts([]byte(tt.data), tt.host)
			if err != nil || got != tt.want {
				t.Errorf("parseGHHosts() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseGHHostsErrors(t *testing.T) {
	const secret = "gho_REALsecretSECRETsecretSECRETsecret42"
	tests := []struct {
		name, data, want string
	}{
		{"not YAML", "github.com:\n  oauth_token: " + secret + "\n user: [\n", "not valid YAML (line"},
		{"tab indent", "github.com:\n\toauth_token: " + secret + "\n", "not valid YAML"},
		{"a list", "- " + secret + "\n", "line 1: want a mapping of host names"},
		{"host is a string", "github.com: " + secret + "\n", "github.com: want a mapping (line 1)"},
		{"token is a map", "github.com:\n    oauth_token: {a: " + secret + "}\n", "github.com.oauth_token: want a string (line 2)"},
		{"user token is a list", "github.com:\n    user: a\n    users:\n        a:\n            oauth_token: [" + secret + "]\n", "github.com.users.(the active user).oauth_token: want a string (line 5)"},
		{"users is a list", "github.com:\n    users: [" + secret + "]\n", "github.com.users: want a mapping (line 2)"},
		{"token with a space", "github.com:\n    oauth_token: \"gho_REAL " + secret + "\"\n", "github.com.oauth_token: not a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseGHHosts([]byte(tt.data), "github.com")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseGHHosts() error = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "REAL") {
				t.Errorf("parseGHHosts() error = %q holds the token", err)
			}
		})
	}
}

func TestGHLogin(t *testing.T) {
	tok := gitHubTokens(t)
	tests := []struct {
		name    string
		fixture string
		host    string
		keyring map[string]string
		want    string
		calls   []string
	}{
		{"gh 2.23 file", "gh-2.23", "github.com", nil, tok["oauth"], nil},
		{"gh 2.23 enterprise", "gh-2.23", "ghe.example.com", nil, tok["classic"], nil},
		{"multi-account file", "gh-multi", "github.com", nil, tok["oauth"], nil},
		{"keyring", "gh-keyring", "github.com", map[string]string{"github.com": tok["user_to_server"]}, tok["user_to_server"], []string{"gh auth token --hostname github.com"}},
		{"keyring enterprise", "gh-keyring", "ghe.example.com", map[string]string{"ghe.example.com": tok["app_installation"]}, tok["app_installation"], []string{"gh auth token --hostname ghe.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := &stubGH{tokens: tt.keyring}
			dir := ghFixture(t, tt.fixture)
			opts := Options{HostEnv: map[string]string{"GH_CONFIG_DIR": dir}, Command: gh.command}.withDefaults()
			got, src, err := ghLogin(opts, tt.host)
			if err != nil || got != tt.want {
				t.Fatalf("ghLogin(%q) = %.12q..., %v; want %.12q...", tt.host, got, err, tt.want)
			}
			if !reflect.DeepEqual(gh.calls, tt.calls) {
				t.Errorf("commands = %q, want %q", gh.calls, tt.calls)
			}
			if src == nil || src.Path != filepath.Join(dir, "hosts.yml") {
				t.Fatalf("source = %+v, want one on %s", src, filepath.Join(dir, "hosts.yml"))
			}
			env, err := src.Read()
			if err != nil {
				t.Fatalf("Source.Read() error = %v", err)
			}
			if names := env.Names(); len(names) != 1 || names[0] != ghLoginEnv(tt.host) || env[names[0]].Reveal() != tt.want {
				t.Errorf("Source.Read() = %v, want %s = the token", names, ghLoginEnv(tt.host))
			}
		})
	}
}

func TestGHLoginMissing(t *testing.T) {
	dir := t.TempDir()
	opts := Options{HostEnv: map[string]string{"GH_CONFIG_DIR": dir}, Command: (&stubGH{}).command}.withDefaults()
	path := filepath.Join(dir, "hosts.yml")
	if _, _, err := ghLogin(opts, "github.com"); !errors.Is(err, errNoGHLogin) || err.Error() != path+" does not exist" {
		t.Errorf("ghLogin() without hosts.yml error = %v, want %q", err, path+" does not exist")
	}
	if err := os.WriteFile(path, []byte("ghe.example.com:\n    user: a\n    oauth_token: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ghLogin(opts, "github.com"); !errors.Is(err, errNoGHLogin) || err.Error() != path+" has no login for github.com" {
		t.Errorf("ghLogin() for another host error = %v, want %q", err, path+" has no login for github.com")
	}
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if _, _, err := ghLogin(opts, "github.com"); err == nil || errors.Is(err, errNoGHLogin) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("ghLogin() unreadable error = %v, want permission denied", err)
		}
	}
}

func TestGHLoginKeyringErrors(t *testing.T) {
	dir := ghFixture(t, "gh-keyring")
	tests := []struct {
		name string
		gh   *stubGH
		want string
	}{
		{"gh fails", &stubGH{err: errors.New("exit status 1")}, "hosts.yml: the github.com login of monalisa is in the system keyring: gh auth token --hostname github.com: exit status 1 (check `gh auth status` on the host)"},
		{"prints nothing", &stubGH{tokens: map[string]string{"github.com": "  "}}, "gh auth token --hostname github.com printed no token"},
		{"prints junk", &stubGH{tokens: map[string]string{"github.com": "gho_REAL secret"}}, "gh auth token --hostname github.com: not a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{HostEnv: map[string]string{"GH_CONFIG_DIR": dir}, Command: tt.gh.command}.withDefaults()
			_, _, err := ghLogin(opts, "github.com")
			if err == nil || errors.Is(err, errNoGHLogin) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ghLogin() error = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "REAL") {
				t.Errorf("ghLogin() error = %q holds the token", err)
			}
		})
	}
}

// TestGHLoginSourceRefresh: a re-login on the host (a new token in
// hosts.yml) is what the Source reads next; a logout is an error, so the
// launcher keeps the token it has.
func TestGHLoginSourceRefresh(t *testing.T) {
	tok := gitHubTokens(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts.yml")
	write := func(token string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("github.com:\n    oauth_token: "+token+"\n    user: monalisa\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tok["oauth"])
	opts := Options{HostEnv: map[string]string{"GH_CONFIG_DIR": dir}}.withDefaults()
	_, src, err := ghLogin(opts, "github.com")
	if err != nil {
		t.Fatal(err)
	}
	write(tok["user_to_server"])
	env, err := src.Read()
	if err != nil || env[GitHubLoginEnv].Reveal() != tok["user_to_server"] {
		t.Errorf("Source.Read() after a new login = %v, %v; want the new token", env, err)
	}
	if err := os.WriteFile(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Read(); !errors.Is(err, errNoGHLogin) {
		t.Errorf("Source.Read() after a logout error = %v, want no login", err)
	}
}

// TestHostCommand runs the default runner: stdout only, the host env,
// stderr kept out of the error.
func TestHostCommand(t *testing.T) {
	run := Options{HostEnv: map[string]string{"CORK_TEST_VALUE": "from-host-env", "PATH": os.Getenv("PATH")}}.withDefaults().Command
	out, err := run(context.Background(), "sh", "-c", `echo "$CORK_TEST_VALUE"; echo gho_REALstderr >&2`)
	if err != nil || string(out) != "from-host-env\n" {
		t.Errorf("Command(sh) = %q, %v; want the host env's value on stdout", out, err)
	}
	_, err = run(context.Background(), "sh", "-c", `echo gho_REALstdout; echo gho_REALstderr >&2; exit 3`)
	if err == nil || strings.Contains(err.Error(), "REAL") {
		t.Errorf("Command(failing sh) error = %v, want one without its output", err)
	}
}

// TestGHKeyringTokenRealGH runs the real gh with the arguments cork uses:
// gh 2.23 prints the token it finds for the host (here from the file; on a
// desktop, from the keyring), and fails for a host it has no login for.
func TestGHKeyringTokenRealGH(t *testing.T) {
	gh, err := exec.LookPath("gh")
	if err != nil {
		testenv.Missing(t, "gh not installed (Debian package gh)")
	}
	opts := Options{HostEnv: map[string]string{
		"GH_CONFIG_DIR": ghFixture(t, "gh-2.23"),
		"HOME":          t.TempDir(),
		"PATH":          filepath.Dir(gh),
	}}.withDefaults()
	got, err := ghKeyringToken(opts, "github.com")
	if want := gitHubTokens(t)["oauth"]; err != nil || got != want {
		t.Errorf("ghKeyringToken(github.com) = %.12q..., %v; want %.12q...", got, err, want)
	}
	if _, err := ghKeyringToken(opts, "nowhere.example.com"); err == nil || !strings.Contains(err.Error(), "gh auth token --hostname nowhere.example.com: exit status 1") {
		t.Errorf("ghKeyringToken(nowhere) error = %v, want gh's exit status", err)
	}
}
