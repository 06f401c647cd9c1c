package compat

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/internal/testing/qemuguest"
	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/settings"
)

// The real Codex CLI inside a QEMU microVM (--backend qemu): its static
// musl binary, from the npm package, in a bare guest root; one `codex
// exec` turn over a WebSocket through cork relay and the in-process proxy
// to the ChatGPT fake, which must see the real token while the guest
// holds the placeholder.
func TestCodexQemu(t *testing.T) {
	codex := requireCLI(t, "codex")
	version := cliVersion(t, codex)
	musl := requireFile(t, filepath.Join(clientsPrefix(), "node_modules", "@openai", "codex-linux-x64", "vendor", "x86_64-unknown-linux-musl", "bin", "codex"),
		"the Codex CLI's musl binary (@openai/codex-linux-x64)")
	g := qemuguest.Require(t)
	row := report(t, 13, "Codex CLI (`codex exec`, ChatGPT sign-in) in a QEMU microVM", version, "WebSocket (default)", "")

	plan, host := codexHostPlan(t)
	real, placeholder := host.accessToken, plan.Egress.Slots[provision.CodexSlot].Placeholder
	fake := startFake(t, fakeupstream.Config{ChatGPTToken: real})

	// The guest's root: the static binary, and nothing else.
	root := t.TempDir()
	bin := filepath.Join(root, "usr", "local", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(musl, filepath.Join(bin, "codex")); err != nil {
		if err := copyExecutable(musl, filepath.Join(bin, "codex")); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr, logs testenv.Buffer // the proxy logs from its own goroutines
	logger := zerolog.New(&logs)
	hostEnv := map[string]string{"PATH": os.Getenv("PATH")}
	tokens, err := launch.Tokens(plan, hostEnv)
	if err != nil {
		t.Fatal(err)
	}
	spec := &launch.Spec{
		Plan: plan, Tokens: tokens, HostEnv: hostEnv,
		Image: root, Workspace: t.TempDir(),
		Command: []string{"/usr/local/bin/codex", "exec", "--skip-git-repo-check", "--color", "never", "-C", launch.QemuWorkspace,
			"-c", `approval_policy="never"`, "-c", `sandbox_mode="read-only"`,
			"-c", "check_for_update_on_startup=false", "-c", `otel.metrics_exporter="none"`, "say ok"},
		Proxy: launch.ProxyOptions{Logger: &logger, Settings: settings.Proxy{
			UpstreamRootCAs: fake.Roots(),
			AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Resolve:         fake.Resolve(),
		}},
		Stdout: &stdout, Stderr: &stderr,
	}
	q := &launch.Qemu{Kernel: g.Kernel, Initrd: g.Initrd, Relay: g.Relay(), Memory: 1536}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	code, err := q.Run(ctx, spec)
	took := time.Since(start)
	defer func() {
		if t.Failed() {
			t.Logf("fake upstream saw:\n%s", fake.Summary())
			t.Logf("guest output:\n%s\n%s", tail(stdout.String(), 4000), tail(stderr.String(), 4000))
		}
	}()
	if err != nil || code != 0 {
		t.Fatalf("codex in the guest: status %d, %v", code, err)
	}
	if !strings.Contains(stdout.String(), fake.Reply()) {
		t.Errorf("codex output does not hold the canned reply %q", fake.Reply())
	}
	generated := 0
	for _, q := range fake.Requests(fakeupstream.ChatGPTHost) {
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
	for _, s := range []string{real} {
		if strings.Contains(stdout.String()+stderr.String()+logs.String(), s) {
			t.Errorf("the real token shows in the guest's output or the proxy's log")
		}
	}
	if !t.Failed() {
		row.Notes = fmt.Sprintf("the npm package's static musl binary in a bare guest root (TCG here); the upgrade through cork relay and the in-process proxy, token injected on the handshake; `cork run` to exit %.1f s", took.Seconds())
	}
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
