//go:build linux

package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/internal/testing/testenv"
)

// TestRunGitHubFromGHLogin is the case of someone who ran `gh auth login`
// and never exported GH_TOKEN: `cork run --agent github -- gh api /user`,
// the real binary in the default local sandbox, whose only credential is
// the token in ~/.config/gh/hosts.yml (gh 2.23's format). The fake
// api.github.com accepts only that token; the sandbox never sees it.
func TestRunGitHubFromGHLogin(t *testing.T) {
	requireSandbox(t)
	gh, err := exec.LookPath("gh")
	if err != nil {
		testenv.Missing(t, "gh not installed (Debian package gh)")
	}
	cork := corkBinary(t)
	real := "gho_" + (rand.Text() + rand.Text())[:36] // base32: letters and digits
	home := liveHome(t)
	hosts := filepath.Join(home, ".config", "gh", "hosts.yml")
	if err := os.MkdirAll(filepath.Dir(hosts), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, []byte("github.com:\n    oauth_token: "+real+"\n    user: "+fakeupstream.GitHubUserLogin+"\n    git_protocol: https\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake, err := fakeupstream.Start(fakeupstream.Config{GitHubToken: real})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, fake.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(cork, "run", "--agent", "github", "--", gh, "api", "/user")
	cmd.Env = []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"CORK_RESOLVE=" + fakeupstream.GitHubAPIHost + ":443=" + fake.Addr(),
		"CORK_UPSTREAM_CA_FILE=" + caFile,
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"GH_NO_UPDATE_NOTIFIER=1",
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("cork run: %v\nstdout:\n%s\nstderr:\n%s\nfake saw:\n%s", err, stdout.String(), stderr.String(), fake.Summary())
	if err != nil {
		t.Fatalf("cork run --agent github -- gh api /user: %v", err)
	}
	if !strings.Contains(stdout.String(), `"login":"`+fakeupstream.GitHubUserLogin+`"`) {
		t.Errorf("stdout = %q, want the user's login", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), real) {
		t.Errorf("the real token is in cork's or gh's output")
	}
	reqs := fake.Requests(fakeupstream.GitHubAPIHost)
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "token "+real {
		t.Errorf("api.github.com saw %d requests, want one GET /user with the real token", len(reqs))
	}
}
