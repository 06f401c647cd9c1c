package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/internal/testing/upstreamtest"
)

// requireTool returns the path of a client; a missing one is
// testenv.Missing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Missing(t, "%s not installed", name)
	}
	return p
}

// Fixture values. The real tokens must reach the upstreams and nothing else.
const (
	apiPlaceholder = "sk-cork-placeholder-0123456789abcdef"
	apiReal        = "sk-REAL-api-token-9f8e7d6c5b4a39281706"
	apiRealNext    = "sk-REAL-api-token-rotated-00112233445566"
	gitPlaceholder = "ghp_cork000000000000000000000000000000"
	gitReal        = "ghp_REALgittoken1234567890abcdefghijklmn"
)

// upstreams are fake HTTPS servers for api.test (bearer), git.test (a real
// git http-backend that accepts only the real token in Basic auth) and
// open.test (allowed, no credential).
type upstreams struct {
	*upstreamtest.Server
	caFile  string
	repoDir string
}

// hostOf is hostport without its port.
func hostOf(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return hostport
}

// seen is every request that reached host, in order.
func (u *upstreams) seen(host string) []upstreamtest.Request {
	var out []upstreamtest.Request
	for _, r := range u.Requests() {
		if hostOf(r.Host) == host {
			out = append(out, r)
		}
	}
	return out
}

func startUpstreams(t *testing.T) *upstreams {
	t.Helper()
	u := &upstreams{}
	dir := t.TempDir()
	u.repoDir = filepath.Join(dir, "git")
	gitInit(t, u.repoDir)

	gitPath, _ := exec.LookPath("git")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hostOf(r.Host) {
		case "api.test":
			if r.Header.Get("Authorization") != "Bearer "+apiReal && r.Header.Get("Authorization") != "Bearer "+apiRealNext {
				http.Error(w, "bad token", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"ok":true,"path":%q}`+"\n", r.URL.Path)
		case "open.test":
			fmt.Fprintln(w, "open")
		case "git.test":
			user, pass, ok := r.BasicAuth()
			if !ok || user != "x-access-token" || pass != gitReal {
				w.Header().Set("WWW-Authenticate", `Basic realm="git.test"`)
				http.Error(w, "auth required", http.StatusUnauthorized)
				return
			}
			h := &cgi.Handler{
				Path: gitPath,
				Args: []string{"http-backend"},
				Env:  []string{"GIT_PROJECT_ROOT=" + u.repoDir, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=" + user},
			}
			h.ServeHTTP(w, r)
		default:
			http.Error(w, "unknown host", http.StatusMisdirectedRequest)
		}
	})
	u.Server = upstreamtest.New(t, upstreamtest.Config{Handler: handler, Hosts: []string{"api.test", "git.test", "open.test"}})
	u.caFile = filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(u.caFile, u.CA().PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

func gitInit(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", filepath.Join(dir, "repo.git")},
		{"-C", filepath.Join(dir, "repo.git"), "config", "http.receivepack", "true"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// corkProxy is a `cork proxy` process.
type corkProxy struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	addr    string
	caFile  string
	policy  string
	mu      sync.Mutex
	log     bytes.Buffer
	lines   chan map[string]any
	stopped chan struct{}
}

const clientsPolicy = `slots:
  api: { placeholder: "` + apiPlaceholder + `" }
  git: { placeholder: "` + gitPlaceholder + `" }
routes:
  - host: api.test
    slot: api
  - host: git.test
    slot: git
    scheme: basic
    basic_user: x-access-token
allow:
  - open.test
block:
  - host: api.test
    path: /oauth/token
    reason: "token refresh happens on the host"
`

func startCorkProxy(t *testing.T, u *upstreams, policy string) *corkProxy {
	t.Helper()
	p := launchCorkProxy(t, policy, true,
		"CORK_UPSTREAM_CA_FILE="+u.caFile,
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
		"CORK_RESOLVE=api.test:443="+u.Addr()+",git.test:443="+u.Addr()+",open.test:443="+u.Addr(),
		// cork must ignore the environment's proxy (docs/DESIGN.md, trap 6).
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9",
	)
	p.addr = p.waitLog(t, "proxy listening")["addr"].(string)
	p.sendTokens(t, map[string]string{"api": apiReal, "git": gitReal})
	p.waitLog(t, "tokens updated")
	return p
}

// launchCorkProxy starts `cork proxy` as its own process on policy, with a
// loopback listener, debug logs, the CA written to p.caFile and env
// ("K=V") on top; the test owns its stdin. Its log is collected, and with
// lines each JSON line is also sent to p.lines. The process is killed at
// cleanup.
func launchCorkProxy(t *testing.T, policy string, lines bool, env ...string) *corkProxy {
	t.Helper()
	bin := corkBinary(t)
	dir := t.TempDir()
	p := &corkProxy{caFile: filepath.Join(dir, "cork-ca.pem"), policy: filepath.Join(dir, "policy.yaml"), stopped: make(chan struct{})}
	if lines {
		p.lines = make(chan map[string]any, 1024)
	}
	if err := os.WriteFile(p.policy, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "proxy")
	p.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"CORK_LISTEN=127.0.0.1:0",
		"CORK_POLICY_FILE=" + p.policy,
		"CORK_CA_OUT=" + p.caFile,
		"CORK_LOG_LEVEL=debug",
	}, env...)
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.stopped)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.Write(sc.Bytes())
			p.log.WriteByte('\n')
			p.mu.Unlock()
			var m map[string]any
			if p.lines != nil && json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case p.lines <- m:
				default:
				}
			}
		}
		p.cmd.Wait()
	}()
	t.Cleanup(p.kill)
	return p
}

// kill ends the process and waits for its log to be read to the end.
func (p *corkProxy) kill() {
	_ = p.cmd.Process.Kill()
	<-p.stopped
}

func msgOf(m map[string]any) string {
	if s, ok := m["message"].(string); ok {
		return s
	}
	s, _ := m["msg"].(string)
	return s
}

// waitLog waits for a log line with msg.
func (p *corkProxy) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-p.lines:
			if msgOf(m) == msg {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q log line from cork proxy; log:\n%s", msg, p.logText())
		}
	}
}

func (p *corkProxy) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *corkProxy) sendTokens(t *testing.T, m map[string]string) {
	t.Helper()
	b, _ := json.Marshal(m)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

func (p *corkProxy) url() string { return "http://" + p.addr }

// sandboxEnv is the environment a sandboxed client gets: proxy and CA, no
// real token.
func (p *corkProxy) sandboxEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"HTTPS_PROXY=" + p.url(), "https_proxy=" + p.url(), "HTTP_PROXY=" + p.url(), "http_proxy=" + p.url(),
		"SSL_CERT_FILE=" + p.caFile, "CURL_CA_BUNDLE=" + p.caFile, "GIT_SSL_CAINFO=" + p.caFile,
		"GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=credential.helper",
		"GIT_CONFIG_VALUE_0=!f() { echo username=x-access-token; echo password=" + gitPlaceholder + "; }; f",
		"GIT_CONFIG_KEY_1=user.email", "GIT_CONFIG_VALUE_1=agent@sandbox.test",
	}
}

func TestCorkProxyWithRealClients(t *testing.T) {
	curl := requireTool(t, "curl")
	python := requireTool(t, "python3")
	requireTool(t, "git")
	u := startUpstreams(t)
	p := startCorkProxy(t, u, clientsPolicy)
	home := t.TempDir()
	env := p.sandboxEnv(home)

	run := func(t *testing.T, name string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = env
		cmd.Dir = home
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("curl injects on a routed host", func(t *testing.T) {
		out, err := run(t, curl, "-sS", "--fail-with-body", "-H", "Authorization: Bearer "+apiPlaceholder, "https://api.test/v1/models")
		if err != nil || !strings.Contains(out, `"ok":true`) {
			t.Fatalf("curl = %q, %v; want the upstream's answer", out, err)
		}
	})
	t.Run("curl denied on an unlisted host with a reason", func(t *testing.T) {
		out, _ := run(t, curl, "-s", "-o", "/dev/null", "-w", "%{http_connect}", "https://evil.test/")
		if strings.TrimSpace(out) != "403" {
			t.Fatalf("curl CONNECT status = %q, want 403", out)
		}
		out, _ = run(t, curl, "-sS", "-i", "-x", p.url(), "http://evil.test/")
		if !strings.Contains(out, "403") || !strings.Contains(strings.ToLower(out), "x-cork-deny-reason: not_allowed") {
			t.Fatalf("curl plain-HTTP deny = %q, want 403 with X-Cork-Deny-Reason: not_allowed", out)
		}
	})
	t.Run("curl blocked path", func(t *testing.T) {
		out, _ := run(t, curl, "-sS", "-i", "-X", "POST", "https://api.test/oauth/token")
		if !strings.Contains(out, "403") || !strings.Contains(strings.ToLower(out), "x-cork-deny-reason: blocked") {
			t.Fatalf("curl to blocked path = %q, want 403 blocked", out)
		}
	})
	t.Run("curl tunnels an allowed host untouched", func(t *testing.T) {
		out, err := run(t, curl, "-sS", "--fail-with-body", "--cacert", u.caFile, "https://open.test/")
		if err != nil || strings.TrimSpace(out) != "open" {
			t.Fatalf("curl open.test = %q, %v", out, err)
		}
	})
	t.Run("python urllib injects", func(t *testing.T) {
		script := `
import urllib.request, ssl, os
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
req = urllib.request.Request("https://api.test/v1/chat", headers={"Authorization": "Bearer ` + apiPlaceholder + `"})
print(urllib.request.urlopen(req, context=ctx).read().decode())
`
		out, err := run(t, python, "-c", script)
		if err != nil || !strings.Contains(out, `"ok":true`) {
			t.Fatalf("python = %q, %v", out, err)
		}
	})
	t.Run("git clone and push with Basic auth swapped", func(t *testing.T) {
		work := filepath.Join(home, "work")
		if out, err := run(t, "git", "clone", "-q", "https://git.test/repo.git", work); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		if err := os.WriteFile(filepath.Join(work, "README"), []byte("hello from the sandbox\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"-C", work, "add", "README"},
			{"-C", work, "-c", "user.name=agent", "commit", "-qm", "first"},
			{"-C", work, "push", "-q", "origin", "HEAD:main"},
		} {
			if out, err := run(t, "git", args...); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		out, err := exec.Command("git", "-C", filepath.Join(u.repoDir, "repo.git"), "log", "--format=%s", "main").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "first" {
			t.Fatalf("pushed log = %q, %v; want the sandbox's commit", out, err)
		}
	})
	t.Run("refreshed tokens from stdin apply without restart", func(t *testing.T) {
		p.sendTokens(t, map[string]string{"api": apiRealNext, "git": gitReal})
		p.waitLog(t, "tokens updated")
		if out, err := run(t, curl, "-sS", "--fail-with-body", "-H", "Authorization: Bearer "+apiPlaceholder, "https://api.test/again"); err != nil {
			t.Fatalf("curl after refresh = %q, %v", out, err)
		}
		api := u.seen("api.test")
		if last := api[len(api)-1].Header.Get("Authorization"); last != "Bearer "+apiRealNext {
			t.Errorf("upstream got %q after refresh, want the rotated token", last)
		}
	})
	t.Run("SIGHUP reloads the policy; a bad one is rejected", func(t *testing.T) {
		if out, _ := run(t, curl, "-s", "-o", "/dev/null", "-w", "%{http_connect}", "https://new.test/"); strings.TrimSpace(out) != "403" {
			t.Fatalf("before reload: CONNECT new.test = %q, want 403", out)
		}
		if err := os.WriteFile(p.policy, []byte(clientsPolicy+"  - new.test\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// "allow:" is not last in clientsPolicy; append a fresh allow list instead.
		pol := strings.Replace(clientsPolicy, "allow:\n  - open.test\n", "allow:\n  - open.test\n  - new.test\n", 1)
		if err := os.WriteFile(p.policy, []byte(pol), 0o644); err != nil {
			t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, "policy reloaded")
		out, _ := run(t, curl, "-s", "-o", "/dev/null", "-w", "%{http_connect}", "--cacert", u.caFile, "https://new.test/")
		if strings.TrimSpace(out) == "403" {
			t.Errorf("after reload: CONNECT new.test still denied")
		}
		if err := os.WriteFile(p.policy, []byte("routes: [{host: x.test, slot: nope}]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, "policy reload rejected; keeping the current policy")
		if out, err := run(t, curl, "-sS", "--fail-with-body", "-H", "Authorization: Bearer "+apiPlaceholder, "https://api.test/still"); err != nil {
			t.Errorf("after a rejected reload the old policy should serve: %q, %v", out, err)
		}
	})

	t.Run("upstreams saw only real tokens", func(t *testing.T) {
		for _, r := range u.seen("api.test") {
			if a := r.Header.Get("Authorization"); strings.Contains(a, apiPlaceholder) {
				t.Errorf("api.test received the placeholder: %q", a)
			}
		}
		for _, r := range u.seen("open.test") {
			for k, v := range r.Header {
				if strings.Contains(strings.Join(v, ","), "REAL") {
					t.Errorf("open.test received a real token in %s", k)
				}
			}
		}
	})

	// SIGTERM: a clean, prompt exit.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("cork proxy did not stop within 15s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("cork proxy exit after SIGTERM = %d, want 0", code)
	}

	log := p.logText()
	for _, secret := range []string{apiReal, apiRealNext, gitReal, base64.StdEncoding.EncodeToString([]byte("x-access-token:" + gitReal))} {
		if strings.Contains(log, secret) {
			t.Errorf("cork proxy log contains a real token")
		}
	}
	for _, want := range []string{`"decision":"inject"`, `"decision":"deny"`, `"decision":"tunnel"`, `"decision":"block"`} {
		if !strings.Contains(log, want) {
			t.Errorf("cork proxy log lacks %s", want)
		}
	}
}
