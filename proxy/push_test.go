package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/internal/testing/upstreamtest"
	"github.com/cork-sh/cork/proxy/gitpush"
	"github.com/cork-sh/cork/resolve"
)

// pushPolicy routes gh.example.test with Basic auth (git's) and lets
// pushes update agent/* branches only.
const pushPolicy = `
slots:
  gh: { placeholder: "` + phGH + `" }
routes:
  - host: gh.example.test
    slot: gh
    scheme: basic
    basic_user: x-access-token
    push: { branches: ["agent/*"] }
  - host: free.example.test
    slot: gh
    scheme: basic
    basic_user: x-access-token
`

// gitEnv is a git http-backend upstream (Basic auth with the real token
// only, like github.com) for gh.example.test and free.example.test, a
// proxy over pushPolicy, and a work repository whose origin goes through
// the proxy.
type gitEnv struct {
	git  string
	tp   *testProxy
	bare string // the upstream's demo.git
	work string
	home string
}

func newGitEnv(t *testing.T) *gitEnv {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		testenv.Missing(t, "needs git on PATH")
	}
	e := &gitEnv{git: git, home: t.TempDir(), work: t.TempDir()}
	root := t.TempDir()
	e.bare = filepath.Join(root, "demo.git")
	backend := &cgi.Handler{Path: git, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=x-access-token"}}
	up := newUpstream(t, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "x-access-token" || pass != tokGH {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if r.ContentLength < 0 && r.Body != nil {
			// net/http/cgi refuses chunked bodies (git sends a push
			// larger than http.postBuffer chunked); http-backend wants
			// a CONTENT_LENGTH.
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "body", http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
		}
		backend.ServeHTTP(w, r)
	}))
	e.tp = startProxy(t, pushPolicy, resolve.Tokens{"gh": resolve.NewSecret(tokGH)}, map[string]string{
		"gh.example.test:443": up.Addr(), "free.example.test:443": up.Addr(),
	})
	ca := filepath.Join(e.home, "cork-ca.pem")
	if err := os.WriteFile(ca, e.tp.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	gitconfig := "[http]\n\tproxy = " + e.tp.srv.URL + "\n\tsslCAInfo = " + ca + "\n" +
		"[user]\n\tname = cork\n\temail = cork@example.invalid\n" +
		"[credential]\n\thelper = \"!f() { echo username=x-access-token; echo password=" + phGH + "; }; f\"\n"
	if err := os.WriteFile(filepath.Join(e.home, ".gitconfig"), []byte(gitconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must(t, root, "init", "-q", "--bare", "-b", "main", e.bare)
	e.must(t, e.bare, "config", "http.receivepack", "true")
	e.must(t, e.work, "init", "-q", "-b", "main", ".")
	e.must(t, e.work, "remote", "add", "origin", "https://gh.example.test/demo.git")
	e.commit(t, "a.txt", []byte("one\n"))
	// The first push goes to free.example.test, whose route does not
	// restrict pushes: the upstream's main to start from.
	e.must(t, e.work, "push", "-q", "https://free.example.test/demo.git", "main")
	return e
}

// run runs git in dir with the test's HOME (its proxy, CA and credential
// helper) and nothing from the user's or the system's configuration.
func (e *gitEnv) run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(e.git, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LANG=C"}
	out, err := cmd.CombinedOutput()
	assertNoSecrets(t, "git output", string(out))
	return string(out), err
}

func (e *gitEnv) must(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := e.run(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func (e *gitEnv) commit(t *testing.T, name string, content []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.work, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
	e.must(t, e.work, "add", name)
	e.must(t, e.work, "commit", "-qm", "change "+name)
}

// remoteRef is the upstream's ref, or "" if it has none.
func (e *gitEnv) remoteRef(t *testing.T, ref string) string {
	t.Helper()
	out, err := e.run(t, e.bare, "rev-parse", "--verify", "-q", ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// refused checks that git's output shows cork's refusal of ref.
func (e *gitEnv) refused(t *testing.T, out string, err error, ref string) {
	t.Helper()
	if err == nil {
		t.Errorf("git push succeeded, want it refused:\n%s", out)
	}
	for _, want := range []string{"remote: cork: push to " + ref + " denied by policy", "[remote rejected]", "(denied by cork policy)"} {
		if !strings.Contains(out, want) {
			t.Errorf("git push output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "RPC failed") {
		t.Errorf("git reports a transport failure, not cork's refusal:\n%s", out)
	}
}

// pushAudits returns the audit lines of refused pushes.
func pushAudits(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msgEgress && m["reason"] == ReasonPushRefDenied {
			out = append(out, m)
		}
	}
	return out
}

func TestPushPolicyWithGit(t *testing.T) {
	e := newGitEnv(t)
	main0 := e.remoteRef(t, "refs/heads/main")
	if main0 == "" {
		t.Fatal("the upstream has no main")
	}
	e.commit(t, "a.txt", []byte("two\n"))
	head := e.must(t, e.work, "rev-parse", "HEAD")

	t.Run("agent branch allowed", func(t *testing.T) {
		e.must(t, e.work, "push", "-q", "origin", "main:agent/x")
		if got := e.remoteRef(t, "refs/heads/agent/x"); got != head {
			t.Errorf("upstream agent/x = %q, want %s", got, head)
		}
	})
	t.Run("main refused", func(t *testing.T) {
		out, err := e.run(t, e.work, "push", "origin", "main")
		e.refused(t, out, err, "refs/heads/main")
		if !strings.Contains(out, "! [remote rejected] main -> main (denied by cork policy)") {
			t.Errorf("git push output lacks the rejected main:\n%s", out)
		}
		if got := e.remoteRef(t, "refs/heads/main"); got != main0 {
			t.Errorf("upstream main = %s, want it unchanged at %s", got, main0)
		}
		var found bool
		eventually(t, func() bool {
			for _, a := range pushAudits(t, e.tp.logs.String()) {
				if a["decision"] == decisionDeny && a["ref"] == "refs/heads/main" && a["path"] == "/demo.git/git-receive-pack" {
					found = true
				}
			}
			return found
		})
		if !found {
			t.Errorf("no audit line {decision: deny, reason: push_ref_denied, ref: refs/heads/main}:\n%s", e.tp.logs.String())
		}
	})
	t.Run("one denied ref refuses the push", func(t *testing.T) {
		out, err := e.run(t, e.work, "push", "origin", "main:agent/y", "main:other")
		e.refused(t, out, err, "refs/heads/other")
		if !strings.Contains(out, "main -> agent/y (cork: another ref of this push is denied)") {
			t.Errorf("git push output lacks agent/y's rejection:\n%s", out)
		}
		if got := e.remoteRef(t, "refs/heads/agent/y"); got != "" {
			t.Errorf("upstream agent/y = %s, want no such ref", got)
		}
	})
	t.Run("tag refused", func(t *testing.T) {
		e.must(t, e.work, "tag", "v1")
		out, err := e.run(t, e.work, "push", "origin", "v1")
		e.refused(t, out, err, "refs/tags/v1")
		if got := e.remoteRef(t, "refs/tags/v1"); got != "" {
			t.Errorf("upstream v1 = %s, want no such tag", got)
		}
	})
	t.Run("delete refused", func(t *testing.T) {
		out, err := e.run(t, e.work, "push", "origin", "--delete", "agent/x")
		e.refused(t, out, err, "refs/heads/agent/x")
		if got := e.remoteRef(t, "refs/heads/agent/x"); got != head {
			t.Errorf("upstream agent/x = %q, want it kept at %s", got, head)
		}
	})
	t.Run("signed push", func(t *testing.T) {
		keygen, err := exec.LookPath("ssh-keygen")
		if err != nil {
			testenv.Missing(t, "needs ssh-keygen on PATH (signed pushes)")
		}
		key := filepath.Join(t.TempDir(), "key")
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "cork", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		e.must(t, e.bare, "config", "receive.certNonceSeed", "cork-test-seed")
		sign := []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key, "push", "--signed", "origin"}
		e.must(t, e.work, append(sign, "main:agent/signed")...)
		if got := e.remoteRef(t, "refs/heads/agent/signed"); got != head {
			t.Errorf("upstream agent/signed = %q, want %s", got, head)
		}
		out, err := e.run(t, e.work, append(sign, "main")...)
		e.refused(t, out, err, "refs/heads/main")
		if got := e.remoteRef(t, "refs/heads/main"); got != main0 {
			t.Errorf("upstream main = %s, want it unchanged at %s", got, main0)
		}
	})
	t.Run("fetch passes", func(t *testing.T) {
		out := e.must(t, e.work, "ls-remote", "origin")
		if !strings.Contains(out, "refs/heads/agent/x") {
			t.Errorf("git ls-remote = %q, want agent/x listed", out)
		}
	})

	// Several MiB of incompressible data: more than http.postBuffer (1 MiB),
	// so git probes, then sends the push chunked.
	big := make([]byte, 5<<20)
	_, _ = rand.Read(big)
	e.commit(t, "big.bin", big)
	bigHead := e.must(t, e.work, "rev-parse", "HEAD")
	t.Run("large push allowed", func(t *testing.T) {
		e.must(t, e.work, "push", "-q", "origin", "main:agent/big")
		if got := e.remoteRef(t, "refs/heads/agent/big"); got != bigHead {
			t.Errorf("upstream agent/big = %q, want %s", got, bigHead)
		}
		// The pack arrived intact.
		e.must(t, e.bare, "fsck", "--strict", "--no-progress")
		// git sent it chunked, after its probe (a lone flush-pkt).
		var probe, pack bool
		eventually(t, func() bool {
			for _, l := range strings.Split(e.tp.logs.String(), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) != nil || m["path"] != "/demo.git/git-receive-pack" {
					continue
				}
				up, _ := m["bytes_up"].(float64)
				probe = probe || up == 4
				pack = pack || up > 5<<20
			}
			return probe && pack
		})
		if !probe || !pack {
			t.Errorf("no probe (%v) or no %d-byte push (%v) in the audit lines", probe, 5<<20, pack)
		}
	})
	t.Run("large push refused", func(t *testing.T) {
		e.commit(t, "big2.bin", big[:4<<20])
		out, err := e.run(t, e.work, "push", "origin", "main")
		e.refused(t, out, err, "refs/heads/main")
		if got := e.remoteRef(t, "refs/heads/main"); got != main0 {
			t.Errorf("upstream main = %s, want it unchanged at %s", got, main0)
		}
	})
	assertNoSecrets(t, "proxy logs", e.tp.logs.String())
	if n := len(pushAudits(t, e.tp.logs.String())); n != 6 {
		t.Errorf("%d audit lines with reason push_ref_denied, want 6 (one per refused push)", n)
	}
}

func TestIsReceivePack(t *testing.T) {
	for path, want := range map[string]bool{
		"/o/r.git/git-receive-pack":        true,
		"/o/r/git-receive-pack":            true,
		"/o/r.git/GIT-Receive-Pack":        true,
		"/o/r.git/git-receive-pack/":       true,
		"/o/r.git/git-receive-pack/.":      true,
		"/o/r.git/git-receive-pack;x=1":    true,
		"/o/r.git/git-receive-pack%20":     true,
		"/o/r.git/git-receive-pac%6B":      true,
		"/o/r.git/git-receive-pac%256B":    true,
		"/o/r.git%2Fgit-receive-pack":      true,
		`/o/r.git\git-receive-pack`:        true,
		"/o/r.git/info/refs":               false,
		"/o/r.git/git-upload-pack":         false,
		"/o/git-receive-pack/issues":       false,
		"/o/r.git/git-receive-pack-x":      false,
		"/":                                false,
		"/o/r.git/git-receive-pack/x%2F..": true,
		"/o/r.git/git-receive-pack/x/../":  true,
		"/o/r.git/git-receive-pack/..":     false,
	} {
		u, err := url.Parse("https://h.test" + path)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", path, err)
		}
		if got := isReceivePack(u); got != want {
			t.Errorf("isReceivePack(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestPushChecks drives checkPush with a Go client: what is refused
// never reaches the upstream, what is allowed arrives byte for byte.
func TestPushChecks(t *testing.T) {
	rec := &upstreamtest.Recorder{}
	up := newUpstream(t, true, rec)
	tp := startProxy(t, pushPolicy, resolve.Tokens{"gh": resolve.NewSecret(tokGH)}, map[string]string{
		"gh.example.test:443": up.Addr(), "free.example.test:443": up.Addr(),
	})
	const (
		zero = "0000000000000000000000000000000000000000"
		oid  = "1111111111111111111111111111111111111111"
	)
	cmd := func(ref, caps string) string {
		s := zero + " " + oid + " " + ref
		if caps != "" {
			s += "\x00" + caps
		}
		return fmt.Sprintf("%04x%s", len(s)+4, s)
	}
	pack := "PACK\x00\x00\x00\x02\x00\x00\x00\x00" + strings.Repeat("\xff pack bytes ", 1000)
	for _, tc := range []struct {
		name, host, path, body string
		header                 http.Header
		status                 int
		reason                 string
		forwarded              bool
	}{
		{"allowed", "gh.example.test", "/o/r.git/git-receive-pack", cmd("refs/heads/agent/a", "report-status side-band-64k") + "0000" + pack,
			nil, http.StatusOK, "", true},
		{"advertisement", "gh.example.test", "/o/r.git/info/refs?service=git-receive-pack", "", nil, http.StatusOK, "", true},
		{"probe", "gh.example.test", "/o/r.git/git-receive-pack", "0000", nil, http.StatusOK, "", true},
		{"empty body", "gh.example.test", "/o/r.git/git-receive-pack", "", nil, http.StatusOK, "", true},
		{"no push rules", "free.example.test", "/o/r.git/git-receive-pack", cmd("refs/heads/main", "report-status") + "0000" + pack,
			nil, http.StatusOK, "", true},
		{"not receive-pack", "gh.example.test", "/o/r.git/git-upload-pack", "garbage", nil, http.StatusOK, "", true},
		{"denied", "gh.example.test", "/o/r.git/git-receive-pack", cmd("refs/heads/main", "report-status-v2 side-band-64k") + "0000" + pack,
			nil, http.StatusOK, ReasonPushRefDenied, false},
		{"denied, encoded path", "gh.example.test", "/o/r.git/Git-Receive-Pac%6B", cmd("refs/heads/main", "report-status side-band-64k") + "0000" + pack,
			nil, http.StatusOK, ReasonPushRefDenied, false},
		{"denied without report-status", "gh.example.test", "/o/r.git/git-receive-pack", cmd("refs/heads/main", "side-band-64k") + "0000" + pack,
			nil, http.StatusForbidden, ReasonPushRefDenied, false},
		{"unparseable", "gh.example.test", "/o/r.git/git-receive-pack", "not a push", nil, http.StatusForbidden, ReasonPushUnparseable, false},
		{"compressed", "gh.example.test", "/o/r.git/git-receive-pack", cmd("refs/heads/agent/a", "report-status") + "0000" + pack,
			http.Header{"Content-Encoding": {"gzip"}}, http.StatusForbidden, ReasonPushUnparseable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.Requests())
			method, reqBody := http.MethodPost, io.Reader(strings.NewReader(tc.body))
			if strings.Contains(tc.path, "?") {
				method, reqBody = http.MethodGet, nil
			}
			req, err := http.NewRequest(method, "https://"+tc.host+tc.path, reqBody)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
			req.SetBasicAuth("x-access-token", phGH)
			resp, err := tp.client().Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, tc.path, err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.status || resp.Header.Get(HeaderDenyReason) != tc.reason {
				t.Errorf("%s %s = %d %q, want %d %q (body %q)", method, tc.path, resp.StatusCode, resp.Header.Get(HeaderDenyReason), tc.status, tc.reason, body)
			}
			reqs := rec.Requests()[before:]
			switch {
			case tc.forwarded && (len(reqs) != 1 || string(reqs[0].Body) != tc.body):
				t.Errorf("the upstream got %d requests, want the body forwarded intact", len(reqs))
			case !tc.forwarded && len(reqs) != 0:
				t.Errorf("the upstream got %d requests, want none", len(reqs))
			}
			if tc.reason == ReasonPushRefDenied && tc.status == http.StatusOK {
				if ct := resp.Header.Get("Content-Type"); ct != gitpush.ContentType || !strings.Contains(body, "cork: push to refs/heads/main denied by policy") ||
					!strings.Contains(body, "ng refs/heads/main denied by cork policy") {
					t.Errorf("refusal %q (%s), want receive-pack's answer naming refs/heads/main", body, ct)
				}
			}
		})
	}
	logs := tp.logs.String()
	if !eventually(t, func() bool { return len(pushAudits(t, tp.logs.String())) == 3 }) {
		t.Errorf("want 3 audit lines with reason push_ref_denied:\n%s", logs)
	}
	for _, a := range pushAudits(t, tp.logs.String()) {
		if a["ref"] != "refs/heads/main" || a["decision"] != decisionDeny {
			t.Errorf("audit line %v, want decision deny, ref refs/heads/main", a)
		}
	}
	assertNoSecrets(t, "proxy logs", logs)
}
