package kubee2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/cork-sh/cork/internal/testing/kubecluster"
	"github.com/cork-sh/cork/internal/testing/testenv"
)

const (
	corkImage  = "cork-e2e/cork:test"
	agentImage = "cork-e2e/fakeagent:test"
	apiHost    = "chatgpt.com" // the codex profile's host
	// nSessions is how many sessions TestKubernetes runs at once.
	nSessions = 20
)

// env is what the subtests share: the cluster, the binaries, the fake
// upstream and a client.
type env struct {
	cluster  *kubecluster.Cluster
	client   kubernetes.Interface
	cork     string // the cork binary
	upstream *upstream
}

// TestKubernetes runs cork run --backend kubernetes on a real cluster, in
// order: without NetworkPolicy enforcement the preflight refuses; with it,
// a session injects, confines, refreshes and passes the exit status
// through; then nSessions sessions run at once; a killed cork's namespace
// is found by `cork gc`.
func TestKubernetes(t *testing.T) {
	if testing.Short() {
		testenv.Missing(t, "kubernetes end-to-end test: -short")
	}
	kubecluster.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	e := setup(t, ctx)

	t.Run("refuses without NetworkPolicy", func(t *testing.T) { testRefuses(t, e) })
	start := time.Now()
	if err := e.cluster.StartNetworkPolicy(ctx); err != nil {
		t.Fatalf("StartNetworkPolicy: %v", err)
	}
	t.Logf("NetworkPolicy enforcement (kube-router) up in %v", time.Since(start).Round(time.Millisecond))
	t.Run("end to end", func(t *testing.T) { testEndToEnd(t, e) })
	t.Run("concurrent sessions", func(t *testing.T) { testConcurrent(t, e) })
	t.Run("manifests", func(t *testing.T) { testManifests(t, e) })
	t.Run("interrupted", func(t *testing.T) { testInterrupted(t, e) })
	t.Run("killed cork", func(t *testing.T) { testKilled(t, e) })
}

// setup builds the binaries, starts the cluster, imports the images and
// starts the fake upstream on the node's address.
func setup(t *testing.T, ctx context.Context) *env {
	t.Helper()
	bins := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bins+string(filepath.Separator),
		"github.com/cork-sh/cork/cmd/cork", "github.com/cork-sh/cork/internal/testing/e2e/fakeagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The image's cork as `make image` builds it: without the kubernetes
	// backend.
	sidecar := filepath.Join(bins, "cork-sidecar")
	side := exec.CommandContext(ctx, "go", "build", "-tags", "nokube", "-trimpath", "-o", sidecar, "github.com/cork-sh/cork/cmd/cork")
	side.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := side.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nokube: %v\n%s", err, out)
	}
	start := time.Now()
	c, err := kubecluster.Start(ctx, kubecluster.Options{Log: logWriter{t}})
	if err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close the cluster: %v", err)
		}
	})
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	e := &env{cluster: c, cork: filepath.Join(bins, "cork")}
	// The cork image, as the repository's Dockerfile makes it.
	if err := c.ImportImage(ctx, corkImage, kubecluster.Image{
		Files:      map[string]kubecluster.File{"/cork": {Source: sidecar, Mode: 0o755}},
		Entrypoint: []string{"/cork", "proxy"},
		Env:        []string{"CORK_LISTEN=0.0.0.0:3128"},
		User:       "65532:65532",
	}); err != nil {
		t.Fatalf("import %s: %v", corkImage, err)
	}
	if err := c.ImportImage(ctx, agentImage, kubecluster.Image{
		Files: map[string]kubecluster.File{"/fakeagent": {Source: filepath.Join(bins, "fakeagent"), Mode: 0o755}},
	}); err != nil {
		t.Fatalf("import %s: %v", agentImage, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	if e.client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	e.upstream = startUpstream(t, c.NodeIP())
	return e
}

// session is one cork run: its host, its streams and its end.
type session struct {
	home           string // the host HOME: .codex/auth.json
	stdout, stderr syncBuffer
	cmd            *exec.Cmd
	done           chan struct{}
	code           int
}

// hostHome writes a host HOME whose Codex auth.json holds token.
func hostHome(t *testing.T, token string) string {
	t.Helper()
	home := t.TempDir()
	writeAuth(t, home, token)
	return home
}

func writeAuth(t *testing.T, home, token string) {
	t.Helper()
	fixture, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "codex", "chatgpt", "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var auth map[string]any
	if err := json.Unmarshal(fixture, &auth); err != nil {
		t.Fatal(err)
	}
	auth["tokens"].(map[string]any)["access_token"] = token
	data, _ := json.MarshalIndent(auth, "", "  ")
	if err := os.MkdirAll(filepath.Join(home, ".codex"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Written whole, then renamed: the watcher sees one new file.
	tmp := filepath.Join(home, ".codex", "auth.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(home, ".codex", "auth.json")); err != nil {
		t.Fatal(err)
	}
}

// accessToken is a fresh JWT-shaped token: the fixture's, with a
// signature of its own.
func accessToken(t *testing.T) string {
	t.Helper()
	fixture, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "codex", "chatgpt", "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var auth struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(fixture, &auth); err != nil {
		t.Fatal(err)
	}
	tok := auth.Tokens.AccessToken
	return tok[:strings.LastIndexByte(tok, '.')+1] + "e2e" + randHex(16)
}

// start runs cork run --backend kubernetes with the codex profile and
// the fake agent's args.
func (e *env) start(t *testing.T, home string, agentArgs ...string) *session {
	t.Helper()
	s := &session{home: home, done: make(chan struct{})}
	args := []string{"run", "--backend", "kubernetes", "--agent", "codex",
		"--image", agentImage, "--sidecar-image", corkImage, "--"}
	s.cmd = exec.Command(e.cork, append(args, agentArgs...)...)
	s.cmd.Env = []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"KUBECONFIG=" + e.cluster.Kubeconfig(),
		"CORK_UPSTREAM_CA_FILE=" + e.upstream.caFile,
		"CORK_RESOLVE=" + apiHost + ":443=" + e.upstream.addr,
		"CORK_ALLOW_PRIVATE=" + e.cluster.NodeIP() + "/32",
	}
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		s.code = s.cmd.ProcessState.ExitCode()
		if err != nil && s.code < 0 {
			s.code = -1
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Signal(syscall.SIGTERM)
			<-s.done
		}
	})
	return s
}

// wait waits for the session's end.
func (s *session) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(d):
		s.cmd.Process.Signal(syscall.SIGTERM)
		<-s.done
		t.Fatalf("cork run still running after %v\nstdout:\n%s\nstderr:\n%s", d, s.stdout.String(), s.stderr.String())
		return 0
	}
}

var nsLine = regexp.MustCompile(`kubernetes: namespace (\S+) created`)

// namespace is the session's namespace, from its progress lines.
func (s *session) namespace() string {
	if m := nsLine.FindStringSubmatch(s.stderr.String()); m != nil {
		return m[1]
	}
	return ""
}

// assertGone fails unless namespace ns no longer exists.
func (e *env) assertGone(t *testing.T, ns string) {
	t.Helper()
	if ns == "" {
		t.Error("no namespace in the progress lines")
		return
	}
	if _, err := e.client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s still exists after cork run returned", ns)
	}
}

// testRefuses: a cluster that does not enforce NetworkPolicy is refused
// before the agent starts: exit 2, one line naming the problem, and the
// namespace is deleted.
func testRefuses(t *testing.T, e *env) {
	start := time.Now()
	s := e.start(t, hostHome(t, accessToken(t)), "/fakeagent", "probe", "-exit", "5")
	code := s.wait(t, 3*time.Minute)
	t.Logf("refused in %v", time.Since(start).Round(time.Millisecond))
	stderr := s.stderr.String()
	if code != 2 || !strings.Contains(stderr, "does not enforce NetworkPolicy") {
		t.Fatalf("cork run without NetworkPolicy enforcement: exit %d, want 2 naming the problem\nstdout:\n%s\nstderr:\n%s", code, s.stdout.String(), stderr)
	}
	if strings.Contains(s.stdout.String(), "API") {
		t.Errorf("the agent ran: %s", s.stdout.String())
	}
	e.assertGone(t, s.namespace())
}

// testEndToEnd: the real token arrives upstream, the agent pod and every
// object hold the placeholder only, direct dials fail, a host outside
// the policy is denied, a refreshed host token reaches the running proxy,
// the exit status passes through and the namespace is deleted.
func testEndToEnd(t *testing.T, e *env) {
	real1, real2 := accessToken(t), accessToken(t)
	home := hostHome(t, real1)
	start := time.Now()
	s := e.start(t, home, "/fakeagent", "probe",
		"-api", "https://"+apiHost+"/backend-api/me",
		"-token-file", "/home/sandbox/.codex/auth.json",
		"-direct", e.upstream.addr+",10.96.0.1:443,"+net.JoinHostPort(e.cluster.NodeIP(), "6443"),
		"-denied", "https://denied.example.test/",
		"-await-change", "60s",
		"-dump",
		"-exit", "7")
	if !s.stdout.waitFor("PAUSE", 3*time.Minute, s.done) {
		t.Fatalf("the agent never paused: exit %d\nstdout:\n%s\nstderr:\n%s", s.code, s.stdout.String(), s.stderr.String())
	}
	t.Logf("agent running %v after cork run started", time.Since(start).Round(time.Millisecond))
	ns := s.namespace()
	hwm := vmHWM(s.cmd.Process.Pid)
	// What the cluster holds about the session, while it runs: no token.
	e.assertNoToken(t, ns, real1, real2)
	writeAuth(t, home, real2)
	code := s.wait(t, 3*time.Minute)
	out, stderr := s.stdout.String(), s.stderr.String()
	t.Logf("session took %v, the cork run launcher's RSS peaked at %.1f MiB by the agent's pause; stderr:\n%s", time.Since(start).Round(time.Millisecond), float64(hwm)/1024, stderr)
	if code != 7 {
		t.Errorf("exit %d, want the agent's 7\nstdout:\n%s", code, out)
	}
	for _, w := range []string{
		"API status=200 body=" + authBody("Bearer "+real1),
		"API2 status=200 body=" + authBody("Bearer "+real2),
		"CONNECT denied.example.test:443 status=403 reason=not_allowed",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("agent output lacks %q:\n%s", w, out)
		}
	}
	for _, target := range []string{e.upstream.addr, "10.96.0.1:443", net.JoinHostPort(e.cluster.NodeIP(), "6443"), apiHost} {
		if strings.Contains(out, "DIRECT "+target+" connected") || !strings.Contains(out, "DIRECT "+target+" err=") {
			t.Errorf("the agent's direct dial of %s did not fail:\n%s", target, out)
		}
	}
	if !strings.Contains(out, "FILE /home/sandbox/.codex/auth.json") || !strings.Contains(out, "ENV HOME=/home/sandbox") {
		t.Errorf("the agent's dump lacks its home:\n%s", out)
	}
	// The dummy files keep their modes (the pod's fsGroup widens the
	// ConfigMap's copies; seed-home gives the modes back).
	if !strings.Contains(out, "MODE /home/sandbox/.codex/auth.json 0600\n") {
		t.Errorf("the agent's auth.json is not mode 0600:\n%s", grepLines(out, "MODE "))
	}
	for name, secret := range map[string]string{"real token": real1, "refreshed token": real2} {
		if strings.Contains(out, secret) || strings.Contains(stderr, secret) {
			t.Errorf("the %s reached the agent's output or cork's stderr", name)
		}
	}
	got := e.upstream.auths()
	if len(got) < 2 || got[0] != "Bearer "+real1 || got[len(got)-1] != "Bearer "+real2 {
		t.Errorf("the upstream received %d requests: want the real token first and the refreshed one last", len(got))
	}
	for _, a := range got {
		if a != "Bearer "+real1 && a != "Bearer "+real2 {
			t.Errorf("the upstream received a credential other than the real ones (a placeholder?)")
		}
	}
	e.assertGone(t, ns)
}

// grepLines is the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// assertNoToken fails if any object of namespace ns holds a secret.
func (e *env) assertNoToken(t *testing.T, ns string, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	core := e.client.CoreV1()
	var all []any
	pods, err := core.Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) < 2 {
		t.Fatalf("pods of %s: %v (%d): want the proxy and the agent at least", ns, err, len(pods.Items))
	}
	all = append(all, pods)
	cms, _ := core.ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	secretsList, _ := core.Secrets(ns).List(ctx, metav1.ListOptions{})
	svcs, _ := core.Services(ns).List(ctx, metav1.ListOptions{})
	nps, _ := e.client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	all = append(all, cms, secretsList, svcs, nps)
	data, _ := json.Marshal(all)
	for _, s := range secrets {
		if strings.Contains(string(data), s) {
			t.Errorf("an object in namespace %s holds a real token", ns)
		}
	}
	if len(secretsList.Items) != 0 {
		t.Errorf("namespace %s has %d Secrets: cork creates none", ns, len(secretsList.Items))
	}
	var home bool
	for _, cm := range cms.Items {
		for _, v := range cm.BinaryData {
			home = home || strings.Contains(string(v), "access_token")
		}
	}
	if !home {
		t.Errorf("no ConfigMap of %s holds the dummy auth.json", ns)
	}
}

// testConcurrent runs nSessions sessions at once on the one node: each
// injects, each is confined, each is torn down. It logs the time and the
// memory they take.
func testConcurrent(t *testing.T, e *env) {
	var sessions []*session
	var tokens []string
	stopSampling := sampleProxies(t)
	start := time.Now()
	for i := 0; i < nSessions; i++ {
		tok := accessToken(t)
		tokens = append(tokens, tok)
		sessions = append(sessions, e.start(t, hostHome(t, tok), "/fakeagent", "probe",
			"-api", "https://"+apiHost+"/backend-api/me",
			"-token-file", "/home/sandbox/.codex/auth.json",
			"-direct", e.upstream.addr+",10.96.0.1:443"))
	}
	var failed int
	for i, s := range sessions {
		code := s.wait(t, 10*time.Minute)
		out := s.stdout.String()
		ok := code == 0 && strings.Contains(out, "API status=200 body="+authBody("Bearer "+tokens[i])) &&
			strings.Contains(out, "DIRECT "+e.upstream.addr+" err=") && strings.Contains(out, "DIRECT 10.96.0.1:443 err=")
		if !ok {
			failed++
			t.Errorf("session %d: exit %d\nstdout:\n%s\nstderr:\n%s", i, code, out, s.stderr.String())
		}
		e.assertGone(t, s.namespace())
	}
	elapsed := time.Since(start)
	peakPods, peakRSS, peakLauncher := stopSampling()
	t.Logf("FIGURES %d concurrent sessions: all done in %v (%d failed); peak %d proxy pods at once using %.1f MiB RSS together (%.1f MiB each); the largest cork run launcher peaked at %.1f MiB RSS",
		nSessions, elapsed.Round(time.Millisecond), failed, peakPods, float64(peakRSS)/1024, float64(peakRSS)/1024/float64(max(peakPods, 1)), float64(peakLauncher)/1024)
}

// sampleProxies samples, every half second, the `cork proxy` processes
// on this host (the node's containers) and the `cork run` launchers,
// until the returned function is called; it returns the most proxies
// seen at once, their RSS then (KiB), and the largest launcher's peak RSS
// (KiB).
func sampleProxies(t *testing.T) func() (int, int64, int64) {
	stop := make(chan struct{})
	var mu sync.Mutex
	var peak int
	var peakRSS, launcher int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, rss, l := corkProcesses()
			mu.Lock()
			if n > peak {
				peak, peakRSS = n, rss
			}
			launcher = max(launcher, l)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() (int, int64, int64) {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak, peakRSS, launcher
	}
}

// corkProcesses counts the processes running `/cork proxy` and sums
// their RSS (KiB), and returns the largest peak RSS (VmHWM, KiB) of the
// `cork run` processes.
func corkProcesses() (n int, rss, launcher int64) {
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		switch {
		case len(args) > 1 && args[0] == "/cork" && args[1] == "proxy":
			rss += statusKiB(pid, "VmRSS:")
			n++
		case len(args) > 2 && filepath.Base(args[0]) == "cork" && args[1] == "run" && args[2] == "--backend":
			launcher = max(launcher, statusKiB(pid, "VmHWM:"))
		}
	}
	return n, rss, launcher
}

// vmHWM is process pid's peak RSS (KiB). Not the rusage of its end: Linux
// counts there the RSS of the process that forked it, before its exec.
func vmHWM(pid int) int64 { return statusKiB(pid, "VmHWM:") }

// statusKiB reads a "Name:   N kB" line of /proc/PID/status.
func statusKiB(pid int, field string) int64 {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// testManifests deploys what `cork manifests` prints as the docs say a
// GitOps user would: apply the objects, write the token map on the
// proxy's stdin through an attach that then ends, make the trust
// ConfigMap with `cork manifests trust` from the proxy's log. The agent,
// held until the trust ConfigMap exists, then reaches the upstream with
// the real token, and nothing stored holds it.
func testManifests(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	real := accessToken(t)
	ns := "cork-gitops-" + randHex(3)
	home := hostHome(t, real)
	gen := exec.Command(e.cork, "manifests", "--namespace", ns, "--agent", "codex",
		"--image", agentImage, "--sidecar-image", corkImage, "--",
		"/fakeagent", "probe", "-api", "https://"+apiHost+"/backend-api/me",
		"-token-file", "/home/sandbox/.codex/auth.json", "-direct", e.upstream.addr+",10.96.0.1:443")
	gen.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"),
		"CORK_UPSTREAM_CA_FILE=" + e.upstream.caFile,
		"CORK_RESOLVE=" + apiHost + ":443=" + e.upstream.addr,
		"CORK_ALLOW_PRIVATE=" + e.cluster.NodeIP() + "/32"}
	var stderr bytes.Buffer
	gen.Stderr = &stderr
	manifests, err := gen.Output()
	if err != nil {
		t.Fatalf("cork manifests: %v\n%s", err, stderr.String())
	}
	if strings.Contains(string(manifests), real) {
		t.Fatal("cork manifests printed the real token")
	}
	t.Cleanup(func() {
		e.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	apply(t, ctx, e, manifests)
	waitPod(t, ctx, e, ns, "cork-proxy", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	// The tokens, as the docs say: a JSON map on the proxy's stdin, by an
	// attach whose stdin then ends (kubectl attach -i < map).
	tokens := `{"codex":"` + real + `"}` + "\n"
	if err := attachStdin(ctx, e, ns, "cork-proxy", "proxy", tokens); err != nil {
		t.Fatalf("attach the tokens: %v", err)
	}
	var logs []byte
	for {
		logs, err = e.client.CoreV1().Pods(ns).GetLogs("cork-proxy", &corev1.PodLogOptions{Container: "proxy"}).DoRaw(ctx)
		if err == nil && bytes.Contains(logs, []byte(`"ready":true`)) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no readiness line in the proxy's log: %v\n%s", err, logs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	trust := exec.Command(e.cork, "manifests", "trust", "--namespace", ns)
	trust.Stdin = bytes.NewReader(logs)
	trust.Stderr = &stderr
	trustYAML, err := trust.Output()
	if err != nil {
		t.Fatalf("cork manifests trust: %v\n%s", err, stderr.String())
	}
	apply(t, ctx, e, trustYAML)

	waitPod(t, ctx, e, ns, "cork-agent", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	out, err := e.client.CoreV1().Pods(ns).GetLogs("cork-agent", &corev1.PodLogOptions{Container: "agent"}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"API status=200 body=" + authBody("Bearer "+real), "DIRECT " + e.upstream.addr + " err=", "DIRECT 10.96.0.1:443 err="} {
		if !strings.Contains(string(out), w) {
			t.Errorf("the agent deployed from manifests: output lacks %q:\n%s", w, out)
		}
	}
	// The proxy still runs after the attach that fed it ended.
	if p, err := e.client.CoreV1().Pods(ns).Get(ctx, "cork-proxy", metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodRunning {
		t.Errorf("the proxy pod after its token attach ended: %v, %v", err, p.Status.Phase)
	}
	e.assertNoToken(t, ns, real)
}

// apply creates every object of a YAML stream.
func apply(t *testing.T, ctx context.Context, e *env, stream []byte) {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if err == io.EOF {
				return
			}
			t.Fatalf("decode manifests: %v", err)
		}
		if len(raw.Raw) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			t.Fatalf("decode an object: %v", err)
		}
		core, net := e.client.CoreV1(), e.client.NetworkingV1()
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = core.Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = core.ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = core.Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Pod:
			_, err = core.Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *networkingv1.NetworkPolicy:
			_, err = net.NetworkPolicies(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected object %T in the manifests", obj)
		}
		if err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
}

func waitPod(t *testing.T, ctx context.Context, e *env, ns, name string, ok func(*corev1.Pod) bool) {
	t.Helper()
	for {
		p, err := e.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && ok(p) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("pod %s/%s: %v (%+v)", ns, name, err, p.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// attachStdin writes data on a container's stdin through an attach, as
// `kubectl attach -i` does with a file on its stdin, and ends it.
func attachStdin(ctx context.Context, e *env, ns, pod, container, data string) error {
	req := e.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: container, Stdin: true}, scheme.ParameterCodec)
	cfg, err := clientcmd.BuildConfigFromFlags("", e.cluster.Kubeconfig())
	if err != nil {
		return err
	}
	exec, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		return err
	}
	return exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(data)})
}

// testInterrupted: SIGTERM to cork while its agent runs stops the agent
// (it gets SIGTERM, then the status it exits with is cork's) and deletes
// the namespace.
func testInterrupted(t *testing.T, e *env) {
	s := e.start(t, hostHome(t, accessToken(t)), "/fakeagent", "sleep")
	if !s.stdout.waitFor("READY", 3*time.Minute, s.done) {
		t.Fatalf("the agent never started: exit %d\nstderr:\n%s", s.code, s.stderr.String())
	}
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	code := s.wait(t, 2*time.Minute)
	t.Logf("cork ended %v after SIGTERM; stderr:\n%s", time.Since(start).Round(time.Millisecond), s.stderr.String())
	if !strings.Contains(s.stdout.String(), "SIGNAL terminated") {
		t.Errorf("the agent did not get SIGTERM: stdout %q", s.stdout.String())
	}
	if code != 0 {
		t.Errorf("exit %d, want the agent's 0 (it exits 0 on SIGTERM)", code)
	}
	e.assertGone(t, s.namespace())
}

// testKilled: a cork killed while its agent runs leaves its namespace;
// `cork gc --backend kubernetes` finds it by label and deletes it.
func testKilled(t *testing.T, e *env) {
	s := e.start(t, hostHome(t, accessToken(t)), "/fakeagent", "sleep")
	if !s.stdout.waitFor("READY", 3*time.Minute, s.done) {
		t.Fatalf("the agent never started: exit %d\nstderr:\n%s", s.code, s.stderr.String())
	}
	ns := s.namespace()
	s.cmd.Process.Kill()
	<-s.done
	if _, err := e.client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace %s gone before gc (%v): the test proves nothing", ns, err)
	}
	gc := exec.Command(e.cork, "gc", "--backend", "kubernetes")
	gc.Env = []string{"KUBECONFIG=" + e.cluster.Kubeconfig(), "HOME=" + t.TempDir()}
	out, err := gc.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deleted namespace "+ns) {
		t.Fatalf("cork gc --backend kubernetes: %v\n%s", err, out)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := e.client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s still there 2 minutes after cork gc", ns)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// upstream is the fake chatgpt.com: HTTPS on the node's address, echoing
// the hash of the Authorization it receives and recording it.
type upstream struct {
	addr   string
	caFile string
	mu     sync.Mutex
	seen   []string
}

func (u *upstream) auths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// authBody is the upstream's answer to a request with authorization a.
func authBody(a string) string {
	sum := sha256.Sum256([]byte(a))
	return `{"auth_sha256":"` + hex.EncodeToString(sum[:]) + `"}`
}

func startUpstream(t *testing.T, ip string) *upstream {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubee2e upstream CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: apiHost}, DNSNames: []string{apiHost},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{caFile: filepath.Join(t.TempDir(), "upstream-ca.pem")}
	if err := os.WriteFile(u.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on the node's address: %v", err)
	}
	u.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := r.Header.Get("Authorization")
			u.mu.Lock()
			u.seen = append(u.seen, a)
			u.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, authBody(a))
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return u
}

// syncBuffer is a bytes.Buffer safe for a writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the buffer holds a line starting with prefix, done
// closes, or d passes.
func (s *syncBuffer) waitFor(prefix string, d time.Duration, done <-chan struct{}) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(s.String(), "\n") {
			if strings.HasPrefix(line, prefix) {
				return true
			}
		}
		select {
		case <-done:
			return strings.Contains(s.String(), "\n"+prefix) || strings.HasPrefix(s.String(), prefix)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// logWriter turns the cluster's progress lines into t.Log lines.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
