package compat

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/internal/testing/kubecluster"
	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/settings"
)

// The images TestCodexKubernetes imports into the node: nothing is pulled.
const (
	kubeCorkImage  = "cork-compat/cork:test"
	kubeCodexImage = "cork-compat/codex:test"
)

// The real Codex CLI in a Kubernetes pod (--backend kubernetes): its
// static musl binary, from the npm package, as the agent pod's image (FROM
// scratch); one `codex exec` turn over a WebSocket through the session's
// cork proxy pod to the ChatGPT fake on the node's address, which must see
// the real token while the agent pod holds the placeholder. The cluster is
// the real single-node one of package kubecluster, with NetworkPolicy
// enforced (the backend refuses a cluster without it).
func TestCodexKubernetes(t *testing.T) {
	codex := requireCLI(t, "codex")
	version := cliVersion(t, codex)
	musl := requireFile(t, filepath.Join(clientsPrefix(), "node_modules", "@openai", "codex-linux-x64", "vendor", "x86_64-unknown-linux-musl", "bin", "codex"),
		"the Codex CLI's musl binary (@openai/codex-linux-x64)")
	kubecluster.Require(t)
	row := report(t, 14, "Codex CLI (`codex exec`, ChatGPT sign-in) in a Kubernetes pod", version, "WebSocket (default)", "")

	// Start waits while another cluster runs on the machine.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	cork := buildCork(t, ctx)
	c := startCluster(t, ctx)
	images := time.Now()
	// The cork image, as the repository's Dockerfile makes it.
	if err := c.ImportImage(ctx, kubeCorkImage, kubecluster.Image{
		Files:      map[string]kubecluster.File{"/cork": {Source: cork, Mode: 0o755}},
		Entrypoint: []string{"/cork", "proxy"},
		Env:        []string{"CORK_LISTEN=0.0.0.0:3128"},
		User:       "65532:65532",
	}); err != nil {
		t.Fatalf("import %s: %v", kubeCorkImage, err)
	}
	// The agent's image: the static binary, and nothing else.
	if err := c.ImportImage(ctx, kubeCodexImage, kubecluster.Image{
		Files: map[string]kubecluster.File{"/usr/local/bin/codex": {Source: musl, Mode: 0o755}},
		Env:   []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		User:  "65532:65532",
	}); err != nil {
		t.Fatalf("import %s: %v", kubeCodexImage, err)
	}
	t.Logf("images imported in %v", time.Since(images).Round(time.Millisecond))

	plan, host := codexHostPlan(t)
	real, placeholder := host.accessToken, plan.Egress.Slots[provision.CodexSlot].Placeholder
	// The proxy pod reaches the fake on the node's address, not loopback.
	nodeIP, err := netip.ParseAddr(c.NodeIP())
	if err != nil {
		t.Fatalf("the node's address %q: %v", c.NodeIP(), err)
	}
	fake := startFake(t, fakeupstream.Config{ChatGPTToken: real, Listen: net.JoinHostPort(nodeIP.String(), "0")})
	// The fake's CA as the proxy's upstream roots: the backend mounts it
	// from the proxy's ConfigMap, as it would CORK_UPSTREAM_CA_FILE.
	caFile := filepath.Join(t.TempDir(), "fakeupstream-ca.pem")
	if err := os.WriteFile(caFile, fake.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr, logs, progress testenv.Buffer // written from the backend's goroutines
	logger := zerolog.New(&logs)
	hostEnv := map[string]string{"PATH": os.Getenv("PATH")}
	tokens, err := launch.Tokens(plan, hostEnv)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	spec := &launch.Spec{
		Plan: plan, Tokens: tokens, HostEnv: hostEnv,
		Image: kubeCodexImage,
		// No -C: the backend has no host workspace; the working directory
		// is the sandbox home.
		Command: []string{"/usr/local/bin/codex", "exec", "--skip-git-repo-check", "--color", "never",
			"-c", `approval_policy="never"`, "-c", `sandbox_mode="read-only"`,
			"-c", "check_for_update_on_startup=false", "-c", `otel.metrics_exporter="none"`, "say ok"},
		Proxy: launch.ProxyOptions{Logger: &logger, Settings: settings.Proxy{
			UpstreamCAFile:  caFile,
			UpstreamCA:      fake.CAPEM(),
			UpstreamRootCAs: fake.Roots(),
			AllowPrivate:    []netip.Prefix{netip.PrefixFrom(nodeIP, nodeIP.BitLen())},
			Resolve:         fake.Resolve(),
		}},
		Stdout: &stdout, Stderr: &stderr,
		Progress: func(msg string) {
			fmt.Fprintln(&progress, msg)
			t.Logf("+%s %s", time.Since(begin).Round(time.Millisecond), msg)
		},
	}
	k := &launch.Kubernetes{Kubeconfig: c.Kubeconfig(), SidecarImage: kubeCorkImage}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer rcancel()
	code, err := k.Run(rctx, spec)
	took := time.Since(begin)
	t.Logf("codex in the pod exited %d after %v", code, took.Round(10*time.Millisecond))
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fake upstream saw:\n%s", fake.Summary())
			t.Logf("agent pod output:\n%s\n%s", tail(stdout.String(), 4000), tail(stderr.String(), 4000))
		}
	}()
	if err != nil || code != 0 {
		t.Fatalf("codex in the agent pod: status %d, %v", code, err)
	}
	if !strings.Contains(stdout.String(), fake.Reply()) {
		t.Errorf("codex output does not hold the canned reply %q", fake.Reply())
	}
	reqs := fake.Requests(fakeupstream.ChatGPTHost)
	if len(reqs) == 0 {
		t.Fatalf("chatgpt.com received no request")
	}
	generated := 0
	for _, q := range reqs {
		if got := q.Header.Get("Authorization"); got != "Bearer "+real {
			t.Errorf("%s %s reached chatgpt.com with Authorization %s, want the real token", q.Method, q.Path, describeToken(got, real, placeholder))
		}
		if q.Path == fakeupstream.ResponsesPath && q.WebSocket {
			for _, m := range q.Messages {
				if m.Type == "response.create" && m.Generate {
					generated++
				}
			}
		}
	}
	if generated == 0 {
		t.Errorf("no generating response.create over a WebSocket")
	}
	if strings.Contains(stdout.String()+stderr.String()+progress.String()+logs.String(), real) {
		t.Errorf("the real token shows in the agent pod's output, the progress lines or the proxy's log")
	}
	if !t.Failed() {
		row.Notes = fmt.Sprintf("the npm package's static musl binary as the agent pod's image (FROM scratch, uid 65532) on a real single-node cluster, NetworkPolicy enforced; the upgrade through the session's cork proxy pod, token attached on its stdin and injected on the handshake; `cork run` to exit %.1f s (cluster start not counted)", took.Seconds())
	}
}

// buildCork builds the cork binary for the proxy pod's image: static and
// without the kubernetes backend, as `make image` builds it.
func buildCork(t *testing.T, ctx context.Context) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "cork")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "nokube", "-trimpath", "-o", out, "github.com/cork-sh/cork/cmd/cork")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build cork: %v\n%s", err, b)
	}
	return out
}

// startCluster starts the machine's one cluster, with NetworkPolicy
// enforced, and closes it when t ends.
func startCluster(t *testing.T, ctx context.Context) *kubecluster.Cluster {
	t.Helper()
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
	if err := c.StartNetworkPolicy(ctx); err != nil {
		t.Fatalf("StartNetworkPolicy: %v", err)
	}
	t.Logf("cluster up, NetworkPolicy enforced, in %v", time.Since(start).Round(time.Millisecond))
	return c
}

// logWriter turns progress lines into t.Log lines.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
