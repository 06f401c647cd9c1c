package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cork-sh/cork/resolve"
)

// gh's stored login (docs/AGENTS.md, "GitHub"): hosts.yml in gh's config
// directory maps each host to its login. gh 2.23 (Debian's) writes
//
//	github.com:
//	    oauth_token: gho_...
//	    user: monalisa
//	    git_protocol: https
//
// gh 2.40 and later add a users map, keep the active account in user, and
// by default keep the token in the system keyring instead of the file:
//
//	github.com:
//	    users:
//	        monalisa:
//	            oauth_token: gho_...   # only with --insecure-storage
//	    user: monalisa
//	    git_protocol: https
//
// gh reads the host's oauth_token first, then the keyring; cork does the
// same, reaching the keyring through `gh auth token --hostname HOST`.

// Provisioned env variables for a token read from gh's login: one for
// github.com, one for any other (GitHub Enterprise Server) host.
const (
	// GitHubLoginEnv holds the github.com token read from gh's login.
	GitHubLoginEnv = "CORK_GITHUB_TOKEN"
	// GitHubEnterpriseLoginEnv holds a GitHub Enterprise Server host's
	// token read from gh's login.
	GitHubEnterpriseLoginEnv = "CORK_GITHUB_ENTERPRISE_TOKEN"
)

// ghLoginEnv is the provisioned env variable of host's token from gh's
// login.
func ghLoginEnv(host string) string {
	if host == gitHubDotCom {
		return GitHubLoginEnv
	}
	return GitHubEnterpriseLoginEnv
}

// errNoGHLogin is wrapped by ghLogin's error when gh has no login for the
// host: hosts.yml is absent or does not name it.
var errNoGHLogin = errors.New("no gh login")

// ghNoLoginError says which hosts.yml was looked at.
type ghNoLoginError struct {
	path, host string
	noFile     bool
}

func (e *ghNoLoginError) Error() string {
	if e.noFile {
		return e.path + " does not exist"
	}
	return e.path + " has no login for " + e.host
}

func (e *ghNoLoginError) Is(target error) bool { return target == errNoGHLogin }

// ghHostsPath is gh's hosts.yml on the host: $GH_CONFIG_DIR, else
// $XDG_CONFIG_HOME/gh, else ~/.config/gh, as gh finds it.
func ghHostsPath(opts Options) (string, error) {
	if d := opts.HostEnv["GH_CONFIG_DIR"]; d != "" {
		return filepath.Join(d, "hosts.yml"), nil
	}
	if d := opts.HostEnv["XDG_CONFIG_HOME"]; d != "" {
		return filepath.Join(d, "gh", "hosts.yml"), nil
	}
	if opts.HostHome == "" {
		return "", errors.New("cannot find gh's hosts.yml: neither GH_CONFIG_DIR, XDG_CONFIG_HOME nor the host home directory is set")
	}
	return filepath.Join(opts.HostHome, ".config", "gh", "hosts.yml"), nil
}

// ghLogin reads gh's stored login for host (lower case, e.g.
// "github.com") from the host's hosts.yml, for the profiles that reuse
// gh's sign-in (github, copilot). The caller checks
// Options.ForwardHostCredentials first: ghLogin reads the file regardless.
//
// It returns the token, and a Source on hosts.yml whose Read yields the
// token again as {ghLoginEnv(host): token}, so that a `gh auth refresh` or
// a new `gh auth login` on the host reaches the running proxy. When the
// file names the host's login but holds no token (gh 2.40+ keeps it in the
// keyring), the token is what `gh auth token --hostname HOST` prints, run
// through Options.Command.
//
// No login for host (no file, or no entry naming a user or a token) is an
// error wrapping errNoGHLogin whose message is "<path> does not exist" or
// "<path> has no login for <host>". Errors name the file, the host and the
// field; never a token.
func ghLogin(opts Options, host string) (token string, src *Source, err error) {
	path, err := ghHostsPath(opts)
	if err != nil {
		return "", nil, err
	}
	if token, err = readGHLogin(opts, path, host); err != nil {
		return "", nil, err
	}
	env := ghLoginEnv(host)
	return token, &Source{Path: path, Read: func() (resolve.Env, error) {
		tok, err := readGHLogin(opts, path, host)
		if err != nil {
			return nil, err
		}
		return resolve.Env{env: resolve.NewSecret(tok)}, nil
	}}, nil
}

// readGHLogin is one read of host's token from the hosts.yml at path, or
// from the keyring by way of gh.
func readGHLogin(opts Options, path, host string) (string, error) {
	data, err := opts.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", &ghNoLoginError{path: path, host: host, noFile: true}
		}
		return "", fmt.Errorf("read %s: %w", path, unwrapPath(err))
	}
	login, err := parseGHHosts(data, host)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	switch {
	case login.token != "":
		return login.token, nil
	case login.user == "":
		return "", &ghNoLoginError{path: path, host: host}
	}
	tok, err := ghKeyringToken(opts, host)
	if err != nil {
		return "", fmt.Errorf("%s: the %s login of %s is in the system keyring: %w", path, host, login.user, err)
	}
	return tok, nil
}

// ghKeyringToken runs `gh auth token --hostname host` on the host. Its
// output is the token: it never reaches an error.
func ghKeyringToken(opts Options, host string) (string, error) {
	args := []string{"auth", "token", "--hostname", host}
	what := "gh " + strings.Join(args, " ")
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCommandTimeout)
	defer cancel()
	out, err := opts.Command(ctx, "gh", args...)
	if err != nil {
		return "", fmt.Errorf("%s: %w (check `gh auth status` on the host)", what, err)
	}
	tok := strings.TrimSpace(string(out))
	if tok == "" {
		return "", fmt.Errorf("%s printed no token", what)
	}
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return tok, nil
}

// ghHostLogin is what cork needs of one hosts.yml entry. It holds a real
// credential: never print it.
type ghHostLogin struct {
	user  string // the active account; "" for none
	token string // "" when not in the file
}

// parseGHHosts finds host's login in a hosts.yml: the host's oauth_token,
// else the active user's users.<user>.oauth_token. Host names compare
// without regard to case, as gh's do. Errors name the field, never a value:
// the file is parsed into nodes, so the YAML library never quotes one.
func parseGHHosts(data []byte, host string) (ghHostLogin, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return ghHostLogin{}, ghYAMLError(err)
	}
	if doc.Kind == 0 { // an empty file
		return ghHostLogin{}, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
			return ghHostLogin{}, nil
		}
		return ghHostLogin{}, fmt.Errorf("line %d: want a mapping of host names", top.Line)
	}
	var entry *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if strings.EqualFold(top.Content[i].Value, host) {
			entry = top.Content[i+1]
		}
	}
	if entry == nil || (entry.Kind == yaml.ScalarNode && entry.Tag == "!!null") {
		return ghHostLogin{}, nil
	}
	if entry.Kind != yaml.MappingNode {
		return ghHostLogin{}, fmt.Errorf("%s: want a mapping (line %d)", host, entry.Line)
	}
	var l ghHostLogin
	var err error
	if l.token, err = yamlScalar(entry, "oauth_token", host+".oauth_token"); err != nil {
		return ghHostLogin{}, err
	}
	if l.user, err = yamlScalar(entry, "user", host+".user"); err != nil {
		return ghHostLogin{}, err
	}
	users := yamlField(entry, "users")
	if users != nil && users.Kind != yaml.MappingNode && users.Tag != "!!null" {
		return ghHostLogin{}, fmt.Errorf("%s.users: want a mapping (line %d)", host, users.Line)
	}
	if l.user == "" && users != nil && len(users.Content) == 2 {
		// One account and no active one named: it is the active one.
		l.user = users.Content[0].Value
	}
	if l.token == "" && l.user != "" && users != nil {
		if u := yamlField(users, l.user); u != nil && u.Kind == yaml.MappingNode {
			if l.token, err = yamlScalar(u, "oauth_token", host+".users.(the active user).oauth_token"); err != nil {
				return ghHostLogin{}, err
			}
		}
	}
	if l.token != "" {
		if err := checkToken(l.token); err != nil {
			return ghHostLogin{}, fmt.Errorf("%s.oauth_token: %w", host, err)
		}
	}
	return l, nil
}

// yamlField returns the value of key in mapping m, or nil.
func yamlField(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// yamlScalar returns the string value of key in mapping m ("" when absent
// or null); place names it in errors.
func yamlScalar(m *yaml.Node, key, place string) (string, error) {
	n := yamlField(m, key)
	if n == nil || n.Tag == "!!null" {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("%s: want a string (line %d)", place, n.Line)
	}
	return n.Value, nil
}

// ghYAMLError keeps only the position of a YAML syntax error: the library
// may quote the text around it.
func ghYAMLError(err error) error {
	var line int
	if _, serr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); serr == nil {
		return fmt.Errorf("not valid YAML (line %d)", line)
	}
	return errors.New("not valid YAML")
}

// checkToken refuses a value that cannot be an HTTP credential (spaces,
// control characters): it would break the header it is injected in.
func checkToken(tok string) error {
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7f {
			return errors.New("not a token: it holds spaces or control characters")
		}
	}
	return nil
}
