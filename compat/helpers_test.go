package compat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/internal/testing/fakeupstream"
	"github.com/cork-sh/cork/internal/testing/testenv"
	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/launch/confine"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/settings"
)

// defaultClientsPrefix is where .ci/npm-install.sh puts the pinned CLIs.
const defaultClientsPrefix = "/opt/cork-clients"

// runTimeout bounds one sandboxed client run.
const runTimeout = 90 * time.Second

// clientsPrefix is CORK_CLIENTS_PREFIX or the default.
func clientsPrefix() string {
	if p := os.Getenv("CORK_CLIENTS_PREFIX"); p != "" {
		return p
	}
	return defaultClientsPrefix
}

// requireCLI finds a client: in the pinned prefix first, then on PATH. A
// missing client skips the test, except under CI=true, where every client
// must run.
func requireCLI(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(clientsPrefix(), "node_modules", ".bin", name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	testenv.Missing(t, "%s not found in %s/node_modules/.bin or on PATH (run .ci/npm-install.sh)", name, clientsPrefix())
	return ""
}

// requireFile is requireCLI for a file the prefix must hold (a module).
func requireFile(t *testing.T, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	testenv.Missing(t, "%s not installed at %s (run .ci/npm-install.sh)", what, path)
	return ""
}

// cliVersion runs `bin --version` and returns the first version-looking
// word of its output.
func cliVersion(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	// A home of its own: the host user's config is not the client's to
	// read here (other packages' tests plant credential fixtures in it,
	// which gh refuses to start with).
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "GH_CONFIG_DIR="+filepath.Join(home, ".config", "gh"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	for _, w := range strings.Fields(string(out)) {
		if w != "" && w[0] >= '0' && w[0] <= '9' && strings.Contains(w, ".") {
			return w
		}
	}
	return strings.TrimSpace(string(out))
}

func nodeVersionOr(def string) string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return def
	}
	return "Node " + strings.TrimSpace(string(out))
}

// hostPath is the PATH the sandbox inherits: the pinned prefix's bin dir
// (the CLIs' wrappers need node from PATH too).
func hostPath() string {
	return filepath.Join(clientsPrefix(), "node_modules", ".bin") + string(os.PathListSeparator) + os.Getenv("PATH")
}

// isolateNet reports whether sandboxes are confined: the default local
// sandbox, on Linux (CORK_COMPAT_NO_ISOLATE=1 runs them unconfined, for
// comparison).
func isolateNet() bool {
	return runtime.GOOS == "linux" && os.Getenv("CORK_COMPAT_NO_ISOLATE") == ""
}

func isolationName() string {
	if isolateNet() {
		return "the default local sandbox (user, mount, PID, IPC, UTS and network namespaces; credential locations hidden; Landlock and seccomp), whose only way out is the proxy"
	}
	return "child process, host network"
}

// startFake starts the fake upstreams for the run's tokens.
func startFake(t *testing.T, cfg fakeupstream.Config) *fakeupstream.Server {
	t.Helper()
	s, err := fakeupstream.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sandboxRun is one client run in a local sandbox and what it left.
type sandboxRun struct {
	Code           int
	Stdout, Stderr string
	// Env is the sandboxed environment, as `env` printed it inside.
	Env map[string]string
	// Home maps every regular file the sandbox HOME held at the end
	// (slash-separated, relative) to its content.
	Home map[string][]byte
	// Audit holds the proxy's log lines; AuditRaw the raw log.
	Audit    []map[string]any
	AuditRaw string
	Elapsed  time.Duration
}

// runSandbox runs argv in a local sandbox for plan, through cork's proxy,
// with every fake host resolved to fake. hostEnv is added to the host
// environment the launcher resolves tokens from (a real token given by
// env, as the operator would); env is added to the sandbox's. The command is wrapped in sh so
// that, after it exits, the sandbox's environment and a copy of its HOME
// are saved for inspection (the launcher deletes the HOME when Run
// returns).
func runSandbox(t *testing.T, plan provision.Plan, fake *fakeupstream.Server, workspace string, hostEnv, env map[string]string, argv ...string) *sandboxRun {
	t.Helper()
	if isolateNet() {
		if err := confine.Probe(); err != nil {
			testenv.Missing(t, "%v", err)
		}
	}
	if err := plan.Validate(); err != nil {
		t.Fatalf("plan.Validate() = %v", err)
	}
	out := t.TempDir()
	trace := os.Getenv("CORK_COMPAT_TRACE") != ""
	logBuf := &syncBuffer{}
	logger := zerolog.New(logBuf).With().Timestamp().Logger()
	var stdout, stderr syncBuffer
	host := map[string]string{"PATH": hostPath(), "LANG": "C.UTF-8"}
	for k, v := range hostEnv {
		host[k] = v
	}
	sandboxEnv := map[string]string{"CORK_COMPAT_OUT": out}
	for k, v := range env {
		sandboxEnv[k] = v
	}
	wrapper := `"$@"; s=$?; env > "$CORK_COMPAT_OUT/env.txt"; cp -a "$HOME" "$CORK_COMPAT_OUT/home"; exit $s`
	if trace {
		wrapper = `echo "cork-compat: child started $(date +%T.%N)" >&2; ` + wrapper
	}
	tokens, err := launch.Tokens(plan, host)
	if err != nil {
		t.Fatalf("resolve the plan's tokens: %v", err)
	}
	spec := &launch.Spec{
		Plan:      plan,
		Tokens:    tokens,
		HostEnv:   host,
		Command:   append([]string{"/bin/sh", "-c", wrapper, "sh"}, argv...),
		Workspace: workspace,
		Env:       sandboxEnv,
		Proxy: launch.ProxyOptions{Logger: &logger, Settings: settings.Proxy{
			UpstreamRootCAs: fake.Roots(),
			AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Resolve:         fake.Resolve(),
		}},
		// The wrapper writes its dumps to out, outside the workspace.
		Local:  launch.LocalOptions{NoIsolate: !isolateNet(), ReadWrite: []string{out}},
		Stdin:  strings.NewReader(""),
		Stdout: &stdout,
		Stderr: &stderr,
	}
	t0 := time.Now()
	if trace {
		spec.Progress = func(msg string) {
			t.Logf("%s +%s %s", time.Now().Format("15:04:05.000"), time.Since(t0).Round(time.Millisecond), msg)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	start := time.Now()
	// A run that is about to time out: keep the process table, to see
	// which process hangs (the launcher kills only the direct child).
	var ps syncBuffer
	stall := time.AfterFunc(runTimeout-10*time.Second, func() {
		out, _ := exec.Command("ps", "-eo", "pid,ppid,stat,etime,wchan:24,args").CombinedOutput()
		ps.Write(out)
	})
	code, err := (&launch.Local{}).Run(ctx, spec)
	stall.Stop()
	r := &sandboxRun{Code: code, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start), AuditRaw: logBuf.String()}
	t.Logf("%s exited %d after %s", filepath.Base(argv[0]), code, r.Elapsed.Round(10*time.Millisecond))
	if err != nil {
		t.Fatalf("launch.Local.Run = %v\nstderr:\n%s", err, r.Stderr)
	}
	if ctx.Err() != nil {
		t.Errorf("%s did not finish within %s; processes %s before the deadline:\n%s", argv[0], runTimeout, 10*time.Second, ps.String())
	}
	sc := bufio.NewScanner(strings.NewReader(r.AuditRaw))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			r.Audit = append(r.Audit, m)
		}
	}
	r.Env = readEnvDump(t, filepath.Join(out, "env.txt"))
	r.Home = readTree(t, filepath.Join(out, "home"))
	return r
}

func readEnvDump(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("the sandbox's env dump: %v", err)
		return nil
	}
	env := map[string]string{}
	var last string
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k != "" && !strings.ContainsAny(k, " \t") {
			env[k] = v
			last = k
		} else if last != "" && line != "" { // a multi-line value
			env[last] += "\n" + line
		}
	}
	return env
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Errorf("the sandbox's HOME copy: %v", err)
	}
	return files
}

// checkNoSecret fails t if secret appears in the run's environment, any
// file of its HOME, its output or the proxy's log.
func checkNoSecret(t *testing.T, r *sandboxRun, name, secret string) {
	t.Helper()
	if secret == "" {
		t.Fatalf("checkNoSecret(%s): empty secret", name)
	}
	for k, v := range r.Env {
		if strings.Contains(v, secret) || strings.Contains(k, secret) {
			t.Errorf("the %s is in the sandbox environment, variable %s", name, k)
		}
	}
	for p, data := range r.Home {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the %s is in the sandbox file ~/%s", name, p)
		}
	}
	if strings.Contains(r.Stdout, secret) || strings.Contains(r.Stderr, secret) {
		t.Errorf("the %s is in the client's output", name)
	}
	if strings.Contains(r.AuditRaw, secret) {
		t.Errorf("the %s is in the proxy's log", name)
	}
}

// homeHolds reports whether some file of the sandbox HOME contains s.
func homeHolds(r *sandboxRun, s string) []string {
	var where []string
	for p, data := range r.Home {
		if bytes.Contains(data, []byte(s)) {
			where = append(where, p)
		}
	}
	return where
}

// auditLines returns the proxy's egress lines for host.
func auditLines(r *sandboxRun, host string) []map[string]any {
	var out []map[string]any
	for _, m := range r.Audit {
		if (m["msg"] == "egress" || m["message"] == "egress") && m["host"] == host {
			out = append(out, m)
		}
	}
	return out
}

// egressSummary is the audit log's decisions, one line each.
func egressSummary(r *sandboxRun) string {
	var b strings.Builder
	for _, m := range r.Audit {
		if m["msg"] != "egress" && m["message"] != "egress" {
			continue
		}
		b.WriteString("  ")
		for _, k := range []string{"decision", "method", "host", "path", "slot", "status", "reason", "duration_ms"} {
			if v, ok := m[k]; ok && v != "" {
				b.WriteString(k + "=")
				b.WriteString(strings.TrimSpace(strings.ReplaceAll(jsonString(v), "\n", " ")))
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func jsonString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer = testenv.Buffer

// tail returns at most the last n bytes of s, for failure messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
