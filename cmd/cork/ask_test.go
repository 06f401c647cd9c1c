package main

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/cork-sh/cork/internal/testing/testenv"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/proxy"
)

// term is the user's side of a pseudo-terminal: what cork printed, and a
// keyboard.
// readTerm returns a term that collects what is written to ptmx's
// terminal until it is closed.
func readTerm(ptmx *os.File) *term {
	tm := &term{ptmx: ptmx}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tm
}

type term struct {
	ptmx *os.File
	mu   sync.Mutex
	out  strings.Builder
}

func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// waitFor waits until cork has printed s n times in all.
func (tm *term) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Count(tm.output(), s) >= n {
			return
		}
	}
	t.Fatalf("terminal never showed %q %d times; it shows %q", s, n, tm.output())
}

func (tm *term) typ(t *testing.T, s string) {
	t.Helper()
	if _, err := tm.ptmx.Write([]byte(s)); err != nil {
		t.Fatalf("type %q: %v", s, err)
	}
}

// newPtyAsker is an asker prompting on a fresh pseudo-terminal, as on
// cork's controlling terminal.
func newPtyAsker(t *testing.T, policyFile string, timeout time.Duration) (*asker, *term) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		testenv.Missing(t, "no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	f, err := os.OpenFile(tty.Name(), os.O_RDWR|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", tty.Name(), err)
	}
	t.Cleanup(func() { f.Close() })
	tm := readTerm(ptmx)
	p := &prompter{f: f}
	return &asker{ask: p.ask, timeout: timeout, policyFile: policyFile, warn: os.Stderr, turn: make(chan struct{}, 1), close: f.Close}, tm
}

var (
	qNPM  = proxy.Question{Host: "registry.npmjs.org", Port: 443, Method: "CONNECT", Reason: proxy.ReasonNotAllowed}
	qPost = proxy.Question{Host: "api.github.com", Port: 443, Method: "POST", Path: "/repos/o/r/issues",
		Reason: proxy.ReasonMethodNotAllowed, Slot: "github"}
	qPath = proxy.Question{Host: "api.github.com", Port: 443, Method: "GET", Path: "/repos/o/other/pulls",
		Reason: proxy.ReasonPathNotAllowed, Slot: "github"}
)

const policyWithComments = `# my policy
routes: []
allow:
  # package registry
  - pypi.org   # python
block: []
`

func writeAskPolicy(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAskPromptAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, typed string
		want        proxy.Verdict
		remembered  bool
		written     bool
	}{
		{"once", "o\n", proxy.VerdictAllow, false, false},
		{"session", "session\n", proxy.VerdictAllow, true, false},
		{"always", "a\n", proxy.VerdictAllow, true, true},
		{"deny", "d\n", proxy.VerdictDeny, false, false},
		{"bad then deny", "x\nd\n", proxy.VerdictDeny, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := writeAskPolicy(t, policyWithComments)
			ak, tm := newPtyAsker(t, pf, 5*time.Second)
			got := make(chan proxy.Verdict, 1)
			go func() { got <- ak.Unlisted(context.Background(), qNPM) }()
			tm.waitFor(t, "cork: agent wants CONNECT registry.npmjs.org:443 — [o]nce / [s]ession / [a]lways / [d]eny? ", 1)
			tm.typ(t, tc.typed)
			if v := <-got; v != tc.want {
				t.Errorf("Unlisted(%+v) = %v, want %v", qNPM, v, tc.want)
			}
			if got := ak.covered(qNPM); got != tc.remembered {
				t.Errorf("covered after %q = %v, want %v", tc.typed, got, tc.remembered)
			}
			data, _ := os.ReadFile(pf)
			if got := strings.Contains(string(data), `"registry.npmjs.org:443"`); got != tc.written {
				t.Errorf("policy file has the entry = %v, want %v:\n%s", got, tc.written, data)
			}
		})
	}
}

func TestAskPromptMethodQuestion(t *testing.T) {
	ak, tm := newPtyAsker(t, writeAskPolicy(t, policyWithComments), 5*time.Second)
	got := make(chan proxy.Verdict, 1)
	go func() { got <- ak.Unlisted(context.Background(), qPost) }()
	// A route's methods cannot be widened by an allow entry: no "always".
	tm.waitFor(t, "cork: agent wants POST api.github.com/repos/o/r/issues with credential github (not in the policy's methods) — [o]nce / [s]ession / [d]eny? ", 1)
	tm.typ(t, "s\n")
	if v := <-got; v != proxy.VerdictAllow {
		t.Fatalf("Unlisted = %v, want allow", v)
	}
	same := qPost
	same.Path = "/repos/o/r/comments"
	other := qPost
	other.Method = "DELETE"
	if !ak.covered(same) || ak.covered(other) {
		t.Errorf("session grant: covers %s = %v (want true), %s = %v (want false)", same.Path, ak.covered(same), other.Method, ak.covered(other))
	}
}

func TestAskPromptTimeoutDenies(t *testing.T) {
	ak, tm := newPtyAsker(t, "", 200*time.Millisecond)
	start := time.Now()
	if v := ak.Unlisted(context.Background(), qNPM); v != proxy.VerdictDeny {
		t.Errorf("Unlisted without an answer = %v, want deny", v)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout took %s", d)
	}
	tm.waitFor(t, "no answer: denied CONNECT registry.npmjs.org:443", 1)
	if strings.Contains(tm.output(), "[a]lways") {
		t.Error("always offered without --policy")
	}
}

func TestAskPromptClientGoneDenies(t *testing.T) {
	ak, tm := newPtyAsker(t, "", time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan proxy.Verdict, 1)
	go func() { got <- ak.Unlisted(ctx, qNPM) }()
	tm.waitFor(t, "[d]eny? ", 1)
	cancel()
	if v := <-got; v != proxy.VerdictDeny {
		t.Errorf("Unlisted after ctx ended = %v, want deny", v)
	}
}

func TestAskPromptQueue(t *testing.T) {
	ak, tm := newPtyAsker(t, "", 5*time.Second)
	got := make(chan proxy.Verdict, 3)
	go func() { got <- ak.Unlisted(context.Background(), qNPM) }()
	tm.waitFor(t, "[d]eny? ", 1)
	go func() { got <- ak.Unlisted(context.Background(), qPath) }()
	go func() { got <- ak.Unlisted(context.Background(), qNPM) }()
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(tm.output(), "[d]eny? "); n != 1 {
		t.Fatalf("%d prompts shown at once, want 1: %q", n, tm.output())
	}
	tm.typ(t, "s\n")
	// The second registry.npmjs.org question is covered by the session
	// answer; only the path question is asked.
	tm.waitFor(t, "GET api.github.com/repos/o/other/pulls with credential github (not in the policy's paths)", 1)
	tm.typ(t, "d\n")
	var allow, deny int
	for range 3 {
		if <-got == proxy.VerdictAllow {
			allow++
		} else {
			deny++
		}
	}
	if allow != 2 || deny != 1 {
		t.Errorf("verdicts: %d allow, %d deny; want 2 and 1", allow, deny)
	}
	if n := strings.Count(tm.output(), "[d]eny? "); n != 2 {
		t.Errorf("%d prompts, want 2: %q", n, tm.output())
	}
}

func TestAppendAllowKeepsComments(t *testing.T) {
	pf := writeAskPolicy(t, policyWithComments)
	if err := appendAllow(pf, qNPM); err != nil {
		t.Fatalf("appendAllow(%+v): %v", qNPM, err)
	}
	if err := appendAllow(pf, qPath); err != nil {
		t.Fatalf("appendAllow(%+v): %v", qPath, err)
	}
	data, _ := os.ReadFile(pf)
	s := string(data)
	for _, want := range []string{"# my policy", "# package registry", "# python", "added by cork run --ask"} {
		if !strings.Contains(s, want) {
			t.Errorf("policy file lost %q:\n%s", want, s)
		}
	}
	if i, j := strings.Index(s, "pypi.org"), strings.Index(s, "registry.npmjs.org"); i < 0 || j < i {
		t.Errorf("entries out of order:\n%s", s)
	}
	if strings.Index(s, "block:") < strings.Index(s, "api.github.com") {
		t.Errorf("keys reordered:\n%s", s)
	}
	g, err := provision.ParseGenericPolicy(data)
	if err != nil {
		t.Fatalf("ParseGenericPolicy of the written file: %v\n%s", err, s)
	}
	_ = g
	pol, err := policy.Parse(data)
	if err != nil {
		t.Fatalf("policy.Parse of the written file: %v\n%s", err, s)
	}
	if r := pol.Lookup("registry.npmjs.org", 443); !r.Allowed {
		t.Error("registry.npmjs.org:443 not allowed by the written file")
	}
	if r := pol.Lookup("api.github.com", 443); r.Permits("GET", "/repos/o/other/x") != "" || r.Permits("POST", "/repos/o/other/x") == "" {
		t.Error("the scoped entry does not permit GET under /repos/o/other/ only")
	}
}

func TestAppendAllowNoAllowKey(t *testing.T) {
	pf := writeAskPolicy(t, "# only a comment\nroutes: []\n")
	if err := appendAllow(pf, qNPM); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(pf)
	pol, err := policy.Parse(data)
	if err != nil || !pol.Lookup("registry.npmjs.org", 443).Allowed || !strings.Contains(string(data), "# only a comment") {
		t.Errorf("written file (err %v):\n%s", err, data)
	}
}

func TestAskWebhook(t *testing.T) {
	type reply struct {
		status int
		body   string
		delay  time.Duration
	}
	for _, tc := range []struct {
		name    string
		r       reply
		policy  bool
		want    proxy.Verdict
		covered bool
	}{
		{"once", reply{200, `{"answer":"once"}`, 0}, false, proxy.VerdictAllow, false},
		{"session", reply{200, `{"answer":"session"}`, 0}, false, proxy.VerdictAllow, true},
		{"always", reply{200, `{"answer":"always"}`, 0}, true, proxy.VerdictAllow, true},
		{"always without policy is session", reply{200, `{"answer":"always"}`, 0}, false, proxy.VerdictAllow, true},
		{"deny", reply{200, `{"answer":"deny"}`, 0}, false, proxy.VerdictDeny, false},
		{"non-2xx", reply{500, `{"answer":"once"}`, 0}, false, proxy.VerdictDeny, false},
		{"bad body", reply{200, `once`, 0}, false, proxy.VerdictDeny, false},
		{"unknown answer", reply{200, `{"answer":"yes"}`, 0}, false, proxy.VerdictDeny, false},
		{"timeout", reply{200, `{"answer":"once"}`, 2 * time.Second}, false, proxy.VerdictDeny, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := make(chan webhookQuestion, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("webhook got %s %s", r.Method, r.Header.Get("Content-Type"))
				}
				var q webhookQuestion
				if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
					t.Errorf("webhook body: %v", err)
				}
				asked <- q
				select {
				case <-time.After(tc.r.delay):
				case <-r.Context().Done():
					return
				}
				w.WriteHeader(tc.r.status)
				_, _ = w.Write([]byte(tc.r.body))
			}))
			t.Cleanup(srv.Close)
			pf := ""
			if tc.policy {
				pf = writeAskPolicy(t, policyWithComments)
			}
			on, fd, u, to := false, -1, srv.URL, 300*time.Millisecond
			ak, err := newAsker(&askFlags{on: &on, fd: &fd, url: &u, timeout: &to}, "local", pf, os.Stderr)
			if err != nil {
				t.Fatalf("newAsker: %v", err)
			}
			if v := ak.Unlisted(context.Background(), qPath); v != tc.want {
				t.Errorf("Unlisted = %v, want %v", v, tc.want)
			}
			want := webhookQuestion{Host: qPath.Host, Port: 443, Method: "GET", Path: qPath.Path, Reason: "path_not_allowed", Slot: "github"}
			if got := <-asked; got != want {
				t.Errorf("webhook question %+v, want %+v", got, want)
			}
			if c := ak.covered(qPath); c != tc.covered {
				t.Errorf("covered = %v, want %v", c, tc.covered)
			}
			if tc.policy {
				data, _ := os.ReadFile(pf)
				if !strings.Contains(string(data), "/repos/o/") {
					t.Errorf("always did not write the policy file:\n%s", data)
				}
			}
		})
	}
}

func TestAskFlagErrors(t *testing.T) {
	on, none, fd3, empty, bad, to, zero := true, -1, 3, "", "ftp://x", DefaultAskTimeout, time.Duration(0)
	for _, tc := range []struct {
		name    string
		a       askFlags
		backend string
		want    string
	}{
		{"docker", askFlags{on: &on, fd: &none, url: &empty, timeout: &to}, "docker", "only for --backend local, smolvm or qemu"},
		{"kubernetes", askFlags{on: &on, fd: &none, url: &empty, timeout: &to}, "kubernetes", "only for --backend"},
		{"bad url", askFlags{on: &on, fd: &none, url: &bad, timeout: &to}, "local", "want an http:// or https:// URL"},
		{"fd and url", askFlags{on: &on, fd: &fd3, url: &bad, timeout: &to}, "local", "give one"},
		{"zero timeout", askFlags{on: &on, fd: &none, url: &empty, timeout: &zero}, "local", "--ask-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newAsker(&tc.a, tc.backend, "", os.Stderr)
			var ue *usageError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ue) {
				t.Errorf("newAsker = %v, want a usage error with %q", err, tc.want)
			}
		})
	}
}

// TestAskFD: --ask-fd N prompts on N and reads the answer from it (a
// wrapper's socket here).
func TestAskFD(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrapper := os.NewFile(uintptr(fds[1]), "wrapper")
	t.Cleanup(func() { wrapper.Close() })
	on, fd, u, to := false, fds[0], "", 5*time.Second
	ak, err := newAsker(&askFlags{on: &on, fd: &fd, url: &u, timeout: &to}, "qemu", "", os.Stderr)
	if err != nil {
		t.Fatalf("newAsker(--ask-fd %d): %v", fd, err)
	}
	t.Cleanup(func() { ak.Close() })
	got := make(chan proxy.Verdict, 1)
	go func() { got <- ak.Unlisted(context.Background(), qNPM) }()
	buf := make([]byte, 512)
	n, _ := wrapper.Read(buf)
	if want := "cork: agent wants CONNECT registry.npmjs.org:443 — [o]nce / [s]ession / [d]eny? "; string(buf[:n]) != want {
		t.Errorf("prompt %q, want %q", buf[:n], want)
	}
	_, _ = wrapper.Write([]byte("once\n"))
	if v := <-got; v != proxy.VerdictAllow {
		t.Errorf("Unlisted = %v, want allow", v)
	}
}
