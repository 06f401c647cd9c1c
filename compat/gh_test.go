package compat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/provision"
)

// The gh rows: Debian's gh (2.23) in the default local sandbox, the real
// token coming only from a hosts.yml in the host's GH_CONFIG_DIR — as for
// someone who ran `gh auth login` and never exported GH_TOKEN.

// ghLoginPlan writes a gh 2.23 hosts.yml holding a fresh real token into a
// new config directory and provisions the github profile from it, with
// forwarding on and no token variable. It returns the plan, the host env
// (GH_CONFIG_DIR only) and the real token.
func ghLoginPlan(t *testing.T) (provision.Plan, map[string]string, string) {
	t.Helper()
	real := "gho_" + strings.NewReplacer("-", "x", "_", "y").Replace(randomToken(t, "", 36))
	dir := t.TempDir()
	hosts := "github.com:\n    oauth_token: " + real + "\n    user: " + fakeupstream.GitHubUserLogin + "\n    git_protocol: https\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts.yml"), []byte(hosts), 0o600); err != nil {
		t.Fatal(err)
	}
	hostEnv := map[string]string{"GH_CONFIG_DIR": dir}
	plan, err := provision.Build(provision.Options{HostHome: t.TempDir(), HostEnv: hostEnv, ForwardHostCredentials: true}, provision.GitHub{})
	if err != nil {
		t.Fatalf("provision.Build(github) = %v", err)
	}
	if got := plan.Egress.TokenEnvMap[provision.GitHubSlot]; got != provision.GitHubLoginEnv {
		t.Fatalf("the github slot's variable = %s, want %s (the token from hosts.yml)", got, provision.GitHubLoginEnv)
	}
	return plan, hostEnv, real
}

// runGH runs gh with args in a local sandbox against the fakes, then
// checks that the sandbox could not read the host's hosts.yml. It checks
// what every gh row shares: exit 0, the real token in "token" form on
// every request that reached api.github.com, no placeholder there, and
// the real token nowhere in the sandbox, its output or the log.
func runGH(t *testing.T, row *row, args ...string) (*sandboxRun, *fakeupstream.Server) {
	t.Helper()
	plan, hostEnv, real := ghLoginPlan(t)
	placeholder := plan.Egress.Slots[provision.GitHubSlot].Placeholder
	fake := startFake(t, fakeupstream.Config{GitHubToken: real})
	hostsFile := filepath.Join(hostEnv["GH_CONFIG_DIR"], "hosts.yml")
	script := `gh "$@"; s=$?; if [ -r "` + hostsFile + `" ]; then echo "cork-compat: host hosts.yml readable" >&2; fi; exit $s`
	r := runSandbox(t, plan, fake, t.TempDir(), hostEnv, map[string]string{"GH_NO_UPDATE_NOTIFIER": "1", "GH_PROMPT_DISABLED": "1"},
		append([]string{"/bin/sh", "-c", script, "sh"}, args...)...)
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s\nproxy decisions:\n%s\ngh stdout:\n%s\ngh stderr:\n%s",
				fake.Summary(), egressSummary(r), tail(r.Stdout, 3000), tail(r.Stderr, 3000))
		}
	})
	if r.Code != 0 {
		t.Errorf("gh %s exit status = %d, want 0", strings.Join(args, " "), r.Code)
	}
	reqs := fake.Requests(fakeupstream.GitHubAPIHost)
	if len(reqs) == 0 {
		t.Errorf("no request reached api.github.com")
	}
	for _, q := range reqs {
		switch auth := q.Header.Get("Authorization"); auth {
		case "token " + real:
		case "token " + placeholder:
			t.Errorf("%s %s reached api.github.com with the placeholder", q.Method, q.Path)
		default:
			t.Errorf("%s %s reached api.github.com without the real token (%d bytes of Authorization)", q.Method, q.Path, len(auth))
		}
	}
	if r.Env[provision.GHTokenEnv] != placeholder {
		t.Errorf("sandbox %s is not the placeholder", provision.GHTokenEnv)
	}
	if isolateNet() && strings.Contains(r.Stderr, "host hosts.yml readable") {
		t.Errorf("the sandbox could read the host's %s", hostsFile)
	}
	checkNoSecret(t, r, "real token", real)
	return r, fake
}

func TestGHAPIUser(t *testing.T) {
	gh := requireCLI(t, "gh")
	version := cliVersion(t, gh)
	t.Parallel()
	row := report(t, 44, "gh api /user", version, "HTTPS, REST", "")
	r, _ := runGH(t, row, "api", "/user")
	if !strings.Contains(r.Stdout, `"login":"`+fakeupstream.GitHubUserLogin+`"`) {
		t.Errorf("gh api /user printed %q, want the user's login", tail(r.Stdout, 500))
	}
	if !t.Failed() {
		row.Notes = "github profile: the token only in the host's `hosts.yml` (gh 2.23 format, `GH_CONFIG_DIR`), read at provisioning; the sandbox gets a placeholder in `GH_TOKEN`; gh sends `token <placeholder>`, swapped in place"
	}
}

func TestGHRepoView(t *testing.T) {
	gh := requireCLI(t, "gh")
	version := cliVersion(t, gh)
	t.Parallel()
	row := report(t, 45, "gh repo view OWNER/REPO", version, "HTTPS, GraphQL + REST", "")
	r, fake := runGH(t, row, "repo", "view", "cork/demo")
	for _, want := range []string{"name:\tcork/demo", "description:\t" + fakeupstream.GitHubRepoDescription, fake.Reply()} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("gh repo view printed %q, want %q in it", tail(r.Stdout, 500), want)
		}
	}
	graphql := false
	for _, q := range fake.Requests(fakeupstream.GitHubAPIHost) {
		graphql = graphql || (q.Method == "POST" && q.Path == "/graphql" && q.Status == 200)
	}
	if !graphql {
		t.Errorf("no GraphQL query was answered")
	}
	if !t.Failed() {
		row.Notes = "github profile, token from `hosts.yml` as above: `POST /graphql` (the repository) and `GET /repos/OWNER/REPO/readme`; refused under `--github-read-only` (GraphQL is a POST)"
	}
}
