//go:build linux

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/internal/testing/testenv"
)

// ghLoginEnv is the environment of a host user whose only GitHub
// credential is `gh auth login`'s ~/.config/gh/hosts.yml (gh 2.23's
// format) for host, with the fakes routed (the Enterprise one serving an
// empty repository cork/demo.git): it returns the env, the fake and the
// real token.
func ghLoginEnv(t *testing.T, host string) ([]string, *fakeupstream.Server, string) {
	t.Helper()
	real := "gho_" + (rand.Text() + rand.Text())[:36] // base32: letters and digits
	home := liveHome(t)
	hosts := filepath.Join(home, ".config", "gh", "hosts.yml")
	if err := os.MkdirAll(filepath.Dir(hosts), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, []byte(host+":\n    oauth_token: "+real+"\n    user: "+fakeupstream.GitHubUserLogin+"\n    git_protocol: https\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(root, "cork", "demo.git")).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	fake, err := fakeupstream.Start(fakeupstream.Config{GitHubToken: real, GitProjectRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, fake.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"CORK_RESOLVE=" + fakeupstream.GitHubAPIHost + ":443=" + fake.Addr() + "," + fakeupstream.GitHubEnterpriseHost + ":443=" + fake.Addr(),
		"CORK_UPSTREAM_CA_FILE=" + caFile,
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"GH_NO_UPDATE_NOTIFIER=1",
	}, fake, real
}

// TestRunGitHubFromGHLogin is the case of someone who ran `gh auth login`
// and never exported GH_TOKEN: `cork run --agent github -- gh api /user`,
// the real binary in the default local sandbox, whose only credential is
// the token in ~/.config/gh/hosts.yml. The fake api.github.com accepts only
// that token; the sandbox never sees it. With --github-read-only, the
// REST GET still works and gh's GraphQL POST is refused by the proxy. With
// --github-host, gh's API calls (token scheme) and git's clone (Basic) go
// to one Enterprise host through one route.
func TestRunGitHubFromGHLogin(t *testing.T) {
	requireSandbox(t)
	gh, err := exec.LookPath("gh")
	if err != nil {
		testenv.Missing(t, "gh not installed (Debian package gh)")
	}
	cork := corkBinary(t)
	tests := []struct {
		name     string
		host     string
		flags    []string
		script   string
		wantCode int
		wantOut  []string
		denied   bool // the proxy refused gh's GraphQL POST (method_not_allowed)
	}{
		{"gh api /user", "github.com", nil, `"$GH" api /user`, 0, []string{`"login":"` + fakeupstream.GitHubUserLogin + `"`}, false},
		{"read-only", "github.com", []string{"--github-read-only"}, `"$GH" api /user && echo READ-OK && "$GH" repo view cork/demo`, 1,
			[]string{`"login":"` + fakeupstream.GitHubUserLogin + `"`, "READ-OK"}, true},
		{"enterprise", fakeupstream.GitHubEnterpriseHost, []string{"--github-host", fakeupstream.GitHubEnterpriseHost},
			`"$GH" api /user && cd "$HOME" && git clone -q https://` + fakeupstream.GitHubEnterpriseHost + `/cork/demo.git demo 2>&1 && echo CLONED`, 0,
			[]string{`"login":"` + fakeupstream.GitHubUserLogin + `"`, "CLONED"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, fake, real := ghLoginEnv(t, tt.host)
			args := append([]string{"run", "--agent", "github"}, tt.flags...)
			script := strings.ReplaceAll(tt.script, `"$GH"`, shq(gh))
			cmd := exec.Command(cork, append(args, "--", "/bin/sh", "-c", script)...)
			cmd.Env = env
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || t.Failed() || testing.Verbose() {
				t.Logf("stdout:\n%s\nstderr:\n%s\nfake saw:\n%s", stdout.String(), stderr.String(), fake.Summary())
			}
			if code != tt.wantCode {
				t.Errorf("cork run %v exit = %d, want %d", tt.flags, code, tt.wantCode)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout = %q, want %q in it", stdout.String(), want)
				}
			}
			if strings.Contains(stdout.String()+stderr.String(), real) {
				t.Errorf("the real token is in cork's or gh's output")
			}
			apiHost, apiPrefix := fakeupstream.GitHubAPIHost, ""
			if tt.host != "github.com" {
				apiHost, apiPrefix = tt.host, "/api/"
			}
			api, git := 0, 0
			for _, q := range fake.Requests(apiHost) {
				switch auth := q.Header.Get("Authorization"); {
				case strings.HasSuffix(q.Path, "/graphql"):
					t.Errorf("a GraphQL query reached the fake")
				case strings.HasPrefix(q.Path, apiPrefix) && auth == "token "+real:
					api++
				case !strings.HasPrefix(q.Path, "/api/") && auth == "":
					// git's first try, answered 401
				case !strings.HasPrefix(q.Path, "/api/") && auth == "Basic "+base64.StdEncoding.EncodeToString([]byte("x-access-token:"+real)):
					git++
				default:
					t.Errorf("%s %s reached %s without the real token", q.Method, q.Path, apiHost)
				}
			}
			if api == 0 || (tt.host != "github.com" && git == 0) {
				t.Errorf("the fake saw %d API and %d git requests with the real token", api, git)
			}
			if denied := strings.Contains(stderr.String(), `"path":"/graphql","status":403,`) && strings.Contains(stderr.String(), `"reason":"method_not_allowed"`); denied != tt.denied {
				t.Errorf("the audit log has a method_not_allowed deny of POST /graphql: %v, want %v", denied, tt.denied)
			}
		})
	}
}

// TestRunGitHubLoginRefresh: a new `gh auth login` (or `gh auth refresh`)
// on the host while the sandbox runs rewrites hosts.yml; the proxy sends
// the new token from then on, and the sandbox is not restarted.
func TestRunGitHubLoginRefresh(t *testing.T) {
	requireSandbox(t)
	gh, err := exec.LookPath("gh")
	if err != nil {
		testenv.Missing(t, "gh not installed (Debian package gh)")
	}
	env, fake, first := ghLoginEnv(t, "github.com")
	home := strings.TrimPrefix(env[0], "HOME=")
	second := "gho_" + (rand.Text() + rand.Text())[:36]
	script := shq(gh) + " api /user >/dev/null; echo FIRST; IFS= read -r go; " + shq(gh) + " api /user >/dev/null; echo END"
	cmd := exec.Command(corkBinary(t), "run", "--agent", "github", "--", "/bin/sh", "-c", script)
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	refreshed := make(chan struct{})
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		sc := bufio.NewScanner(errPipe)
		once := false
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "proxy tokens refreshed") {
				once = true
				close(refreshed)
			}
		}
	}()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "FIRST" {
		cmd.Process.Kill()
		<-errDone
		t.Fatalf("no FIRST line (%q); stderr:\n%s", out.Text(), stderr.String())
	}
	hosts := filepath.Join(home, ".config", "gh", "hosts.yml")
	if err := os.WriteFile(hosts+".new", []byte("github.com:\n    oauth_token: "+second+"\n    user: "+fakeupstream.GitHubUserLogin+"\n    git_protocol: https\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hosts+".new", hosts); err != nil {
		t.Fatal(err)
	}
	select {
	case <-refreshed:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-errDone
		t.Fatalf("no refresh within 30s; stderr:\n%s", stderr.String())
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	for out.Scan() {
	}
	err = cmd.Wait()
	<-errDone
	if err != nil {
		t.Fatalf("cork run: %v; stderr:\n%s", err, stderr.String())
	}
	var got []string
	for _, q := range fake.Requests(fakeupstream.GitHubAPIHost) {
		switch q.Header.Get("Authorization") {
		case "token " + first:
			got = append(got, "first")
		case "token " + second:
			got = append(got, "second")
		default:
			got = append(got, "other")
		}
	}
	if strings.Join(got, ",") != "first,second" {
		t.Errorf("api.github.com saw tokens %v, want [first second]; stderr:\n%s", got, stderr.String())
	}
	if strings.Contains(stderr.String(), first) || strings.Contains(stderr.String(), second) {
		t.Errorf("a real token is in cork's output")
	}
}
