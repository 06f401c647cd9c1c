package compat

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
)

// TestGitPushPolicy: git in the sandbox, the github profile with push
// rules on github.com (docs/POLICY.md, "Git push rules"): a push to
// agent/x arrives, a push to main is refused with git's own output.
func TestGitPushPolicy(t *testing.T) {
	git := requireCLI(t, "git")
	version := cliVersion(t, git)
	t.Parallel()
	row := report(t, 43, "git push (push policy)", version, "HTTPS, Basic auth, `push: {branches: [\"agent/*\"]}`", "")
	real := "ghp_" + strings.NewReplacer("-", "x", "_", "y").Replace(randomToken(t, "", 36))
	plan, err := provision.Build(provision.Options{HostEnv: map[string]string{provision.GHTokenEnv: real}}, provision.GitHub{})
	if err != nil {
		t.Fatalf("provision.Build(github) = %v", err)
	}
	restricted := false
	for i := range plan.Egress.Routes {
		if plan.Egress.Routes[i].Host == fakeupstream.GitHubHost {
			plan.Egress.Routes[i].Push = &policy.Push{Branches: []string{"agent/*"}}
			restricted = true
		}
	}
	if !restricted {
		t.Fatalf("the github profile has no route for %s", fakeupstream.GitHubHost)
	}

	root := t.TempDir()
	bare := filepath.Join(root, "cork", "demo.git")
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", bare},
		{"-C", bare, "config", "http.receivepack", "true"},
		{"-C", bare, "-c", "user.name=cork", "-c", "user.email=cork@example.invalid", "commit-tree", "-m", "start", "4b825dc642cb6eb9a060e54bf8d69288fbee4904"},
	} {
		out, err := exec.Command(git, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		if args[len(args)-1] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904" {
			if out, err := exec.Command(git, "-C", bare, "update-ref", "refs/heads/main", strings.TrimSpace(string(out))).CombinedOutput(); err != nil {
				t.Fatalf("git update-ref: %v\n%s", err, out)
			}
		}
	}
	main0 := revParse(t, git, bare, "main")
	fake := startFake(t, fakeupstream.Config{GitHubToken: real, GitProjectRoot: root})
	const script = `set -e
git clone -q https://github.com/cork/demo.git repo 2>&1
cd repo
echo compat > file.txt
git add file.txt
git -c user.name=cork -c user.email=cork@example.invalid commit -qm "cork push policy"
git push origin HEAD:agent/x 2>&1
echo "--- push to main"
if git push origin HEAD:main 2>&1; then echo "PUSH-MAIN-OK"; else echo "PUSH-MAIN-FAILED $?"; fi`
	r := runSandbox(t, plan, fake, t.TempDir(), map[string]string{provision.GHTokenEnv: real}, nil, "/bin/sh", "-c", script)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s\nproxy decisions:\n%s\ngit stdout:\n%s\ngit stderr:\n%s",
				fake.Summary(), egressSummary(r), tail(r.Stdout, 3000), tail(r.Stderr, 3000))
		}
	}()
	if r.Code != 0 {
		t.Errorf("script exit status = %d, want 0", r.Code)
	}
	if got := revParse(t, git, bare, "agent/x"); got == "" || got == main0 {
		t.Errorf("the fake's agent/x = %q, want the pushed commit", got)
	}
	if got := revParse(t, git, bare, "main"); got != main0 {
		t.Errorf("the fake's main = %s, want it unchanged at %s", got, main0)
	}
	_, refusal, _ := strings.Cut(r.Stdout, "--- push to main")
	for _, want := range []string{
		"remote: cork: push to refs/heads/main denied by policy",
		"! [remote rejected] HEAD -> main (denied by cork policy)",
		"PUSH-MAIN-FAILED",
	} {
		if !strings.Contains(refusal, want) {
			t.Errorf("git's output for the push to main lacks %q", want)
		}
	}
	denied := 0
	for _, a := range r.Audit {
		if a["reason"] == "push_ref_denied" {
			denied++
			if a["decision"] != "deny" || a["ref"] != "refs/heads/main" {
				t.Errorf("audit line %v, want decision deny, ref refs/heads/main", a)
			}
		}
	}
	if denied != 1 {
		t.Errorf("%d audit lines with reason push_ref_denied, want 1", denied)
	}
	checkNoSecret(t, r, "real token", real)
	if !t.Failed() {
		row.PassResult = "pass (agent/x pushed; main refused)"
		row.Notes = "github profile with push rules on github.com: cork reads the ref updates of the `git-receive-pack` request; git prints `remote: cork: push to refs/heads/main denied by policy` and `[remote rejected]`, exit 1"
	}
}

// revParse is ref's object id in the repository at dir, or "".
func revParse(t *testing.T, git, dir, ref string) string {
	t.Helper()
	out, err := exec.Command(git, "--git-dir", dir, "rev-parse", "--verify", "-q", ref).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
