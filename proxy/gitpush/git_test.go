package gitpush

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// These tests run the real git: its pushes are what ReadRequest must read,
// and its output is where a Refusal must show.

func requireGit(t *testing.T) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		testenv.Missing(t, "needs git on PATH")
	}
	if _, err := exec.Command(git, "http-backend", "--help").CombinedOutput(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			testenv.Missing(t, "needs git http-backend: %v", err)
		}
	}
	return git
}

// runGit runs git in dir with a fixed identity and no user configuration.
func runGit(t *testing.T, git, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(git, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=cork", "GIT_AUTHOR_EMAIL=cork@example.invalid",
		"GIT_COMMITTER_NAME=cork", "GIT_COMMITTER_EMAIL=cork@example.invalid")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t *testing.T, git, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(t, git, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// gitServer serves the bare repositories under a temporary root with git
// http-backend. A push (a POST to git-receive-pack) is read with
// ReadRequest first and recorded; refuse, if set, may answer it instead.
type gitServer struct {
	root string
	url  string

	mu   sync.Mutex
	seen []*Request // the pushes with commands, in order

	refuse func(w http.ResponseWriter, r *http.Request, req *Request) bool
}

func startGitServer(t *testing.T, git string) *gitServer {
	t.Helper()
	s := &gitServer{root: t.TempDir()}
	backend := &cgi.Handler{Path: git, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=cork"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			req, err := ReadRequest(r.Body)
			if err != nil {
				t.Errorf("ReadRequest(git's push to %s) = %v", r.URL.Path, err)
				http.Error(w, "unparseable", http.StatusBadRequest)
				return
			}
			if len(req.Commands) > 0 {
				s.mu.Lock()
				s.seen = append(s.seen, req)
				s.mu.Unlock()
			}
			if s.refuse != nil && len(req.Commands) > 0 && s.refuse(w, r, req) {
				return
			}
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(req.Head), r.Body), r.Body}
		}
		if r.ContentLength < 0 {
			// net/http/cgi refuses chunked bodies; http-backend wants a
			// CONTENT_LENGTH.
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "body", http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *gitServer) pushes() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.seen...)
}

// newRepos makes a bare repository demo.git on s and a clone-like work
// repository with one commit on main pushed to it, both in format.
func newRepos(t *testing.T, git string, s *gitServer, format string) (work string) {
	t.Helper()
	bare := filepath.Join(s.root, "demo.git")
	mustGit(t, git, s.root, "init", "-q", "--bare", "--object-format="+format, "-b", "main", bare)
	mustGit(t, git, bare, "config", "http.receivepack", "true")
	work = t.TempDir()
	mustGit(t, git, work, "init", "-q", "--object-format="+format, "-b", "main", ".")
	mustGit(t, git, work, "remote", "add", "origin", s.url+"/demo.git")
	if err := os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustGit(t, git, work, "add", "a.txt")
	mustGit(t, git, work, "commit", "-qm", "one")
	mustGit(t, git, work, "push", "-q", "origin", "main")
	return work
}

// signingKey makes an SSH key and returns the git options that sign
// pushes with it (git push --signed), after configuring bare to ask for
// signed pushes (receive.certNonceSeed).
func signingKey(t *testing.T, git, bare string) []string {
	t.Helper()
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		testenv.Missing(t, "needs ssh-keygen on PATH (signed pushes)")
	}
	key := filepath.Join(t.TempDir(), "key")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "cork", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	mustGit(t, git, bare, "config", "receive.certNonceSeed", "cork-test-seed")
	return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key}
}

// commitBig adds a file of n random bytes (incompressible) and commits it.
func commitBig(t *testing.T, git, work string, n int) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.WriteFile(filepath.Join(work, "big.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustGit(t, git, work, "add", "big.bin")
	mustGit(t, git, work, "commit", "-qm", "big")
}

func TestReadRequestFromGit(t *testing.T) {
	git := requireGit(t)
	for _, format := range []string{"sha1", "sha256"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			s := startGitServer(t, git)
			work := newRepos(t, git, s, format)
			hexsz := map[string]int{"sha1": hexSHA1, "sha256": hexSHA256}[format]

			mustGit(t, git, work, "tag", "v1")
			mustGit(t, git, work, "push", "-q", "origin", "main:refs/heads/agent/x", "v1")
			mustGit(t, git, work, "push", "-q", "origin", "--delete", "agent/x")
			// Several MiB with a small http.postBuffer: chunked, after
			// git's probe.
			commitBig(t, git, work, 3<<20)
			mustGit(t, git, work, "-c", "http.postBuffer=65536", "push", "-q", "origin", "main")
			// A signed push: the commands are in the certificate.
			sign := signingKey(t, git, filepath.Join(s.root, "demo.git"))
			mustGit(t, git, work, append(sign, "push", "-q", "--signed", "origin", "main:refs/heads/agent/signed", ":refs/heads/agent/none")...)
			mustGit(t, git, filepath.Join(s.root, "demo.git"), "fsck", "--strict")

			want := [][]struct {
				ref string
				del bool
			}{
				{{"refs/heads/main", false}},
				{{"refs/heads/agent/x", false}, {"refs/tags/v1", false}},
				{{"refs/heads/agent/x", true}},
				{{"refs/heads/main", false}},
				{{"refs/heads/agent/signed", false}, {"refs/heads/agent/none", true}},
			}
			got := s.pushes()
			if len(got) != len(want) {
				t.Fatalf("the server read %d pushes, want %d", len(got), len(want))
			}
			for i, req := range got {
				if len(req.Commands) != len(want[i]) {
					t.Errorf("push %d: %d commands, want %d: %+v", i, len(req.Commands), len(want[i]), req.Commands)
					continue
				}
				for j, c := range req.Commands {
					if c.Ref != want[i][j].ref || c.Delete() != want[i][j].del || len(c.Old) != hexsz || len(c.New) != hexsz {
						t.Errorf("push %d command %d = %+v, want ref %s, delete %v, %d-digit ids", i, j, c, want[i][j].ref, want[i][j].del, hexsz)
					}
				}
				if !req.Has("report-status") && !req.Has("report-status-v2") || !req.Has("side-band-64k") {
					t.Errorf("push %d asked for %q, want report-status and side-band-64k", i, req.Capabilities)
				}
				if format == "sha256" && !req.Has("object-format") {
					t.Errorf("push %d asked for %q, want object-format=sha256", i, req.Capabilities)
				}
			}
		})
	}
}

// TestRefusalShownByGit is what the user sees: git prints the message
// after "remote:", each ref as "[remote rejected]" with the reason, and
// fails. The request body is read to its end before the answer (see
// docs/POLICY.md, "Git push rules"), for a small push and for a large one
// that git sends chunked after its probe.
func TestRefusalShownByGit(t *testing.T) {
	git := requireGit(t)
	for _, tc := range []struct {
		name   string
		big    int
		signed bool
	}{
		{"small", 0, false},
		{"large chunked", 3 << 20, false},
		{"signed", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startGitServer(t, git)
			work := newRepos(t, git, s, "sha1")
			before := mustGit(t, git, filepath.Join(s.root, "demo.git"), "rev-parse", "main")
			if tc.big > 0 {
				commitBig(t, git, work, tc.big)
			} else {
				if err := os.WriteFile(filepath.Join(work, "a.txt"), []byte("two\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				mustGit(t, git, work, "commit", "-qam", "two")
			}
			s.refuse = func(w http.ResponseWriter, r *http.Request, req *Request) bool {
				body, err := Refusal(req, []string{"cork: push to refs/heads/main denied by policy"}, func(c Command) string {
					if c.Ref == "refs/heads/main" {
						return "denied by cork policy"
					}
					return "cork: another ref of this push is denied"
				})
				if err != nil {
					t.Errorf("Refusal = %v", err)
					return false
				}
				// Read to the end first: answered early, curl stops sending
				// and git's remote helper posts the rest of the pack as a
				// new request.
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", ContentType)
				w.Header().Set("Cache-Control", "no-cache")
				_, _ = w.Write(body)
				return true
			}
			args := []string{"-c", "http.postBuffer=65536", "push", "origin", "main", "main:refs/heads/agent/x"}
			if tc.signed {
				args = append(signingKey(t, git, filepath.Join(s.root, "demo.git")), append(args, "--signed")...)
			}
			out, err := runGit(t, git, work, args...)
			if err == nil {
				t.Errorf("git push succeeded, want it refused:\n%s", out)
			}
			for _, want := range []string{
				"remote: cork: push to refs/heads/main denied by policy",
				"! [remote rejected] main -> main (denied by cork policy)",
				"! [remote rejected] main -> agent/x (cork: another ref of this push is denied)",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("git push output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "RPC failed") {
				t.Errorf("git push output reports a transport failure:\n%s", out)
			}
			if after := mustGit(t, git, filepath.Join(s.root, "demo.git"), "rev-parse", "main"); after != before {
				t.Errorf("the remote's main moved from %s to %s", before, after)
			}
		})
	}
}
