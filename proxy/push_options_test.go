package proxy

import (
	"strings"
	"testing"
)

// Push options (git push -o) are refused on a route with push rules, even
// for allowed refs: a server may act on other refs with them (GitLab's
// merge_request.target=main with merge_when_pipeline_succeeds merges into
// main). Without options the same push passes.
func TestPushOptionsRefused(t *testing.T) {
	e := newGitEnv(t)
	e.must(t, e.bare, "config", "receive.advertisePushOptions", "true")
	e.commit(t, "b.txt", []byte("opts\n"))
	out, err := e.run(t, e.work, "push", "-o", "merge_request.create", "-o", "merge_request.target=main",
		"origin", "main:agent/opt")
	if err == nil {
		t.Errorf("git push -o succeeded, want it refused:\n%s", out)
	}
	for _, want := range []string{"remote: cork: push options", "[remote rejected]"} {
		if !strings.Contains(out, want) {
			t.Errorf("git push -o output lacks %q:\n%s", want, out)
		}
	}
	if got := e.remoteRef(t, "refs/heads/agent/opt"); got != "" {
		t.Errorf("upstream agent/opt = %s, want no such ref", got)
	}
	e.must(t, e.work, "push", "-q", "origin", "main:agent/opt")
	if e.remoteRef(t, "refs/heads/agent/opt") == "" {
		t.Error("push without options to agent/opt: upstream has no agent/opt")
	}
	// A route without push rules passes them.
	e.must(t, e.work, "push", "-q", "-o", "x=y", "https://free.example.test/demo.git", "main:free-opt")
}
