package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Local runs the command as a child process whose HOME is a temporary
// sandbox home holding only the plan's dummy files. The proxy runs inside
// cork. With Spec.IsolateNet the child gets its own network namespace in
// which the proxy's listener is the only open port.
type Local struct{}

var _ Backend = (*Local)(nil)

// Name implements Backend.
func (*Local) Name() string { return "local" }

// hostEnvPassthrough are the host variables a local sandbox keeps: nothing
// that could carry a credential.
var hostEnvPassthrough = []string{"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME", "SHELL", "COLORTERM"}

// ChildStopGrace is how long a child gets to exit after SIGTERM before it
// is killed.
const ChildStopGrace = 5 * time.Second

// Run implements Backend.
func (l *Local) Run(ctx context.Context, spec *Spec) (int, error) {
	if len(spec.Command) == 0 {
		return 0, setupErrorf("no command to run")
	}
	if spec.Workspace != "" {
		if err := checkDir(spec.Workspace); err != nil {
			return 0, setupErrorf("workspace: %w", err)
		}
	}
	if err := protectProcess(); err != nil {
		return 0, &SetupError{Err: err}
	}
	// Resolve first: a missing credential stops the run before anything
	// is created.
	tokens, err := Tokens(spec.Plan, spec.HostEnv)
	if err != nil {
		return 0, &SetupError{Err: err}
	}
	if err := refuseTokens(spec, tokens); err != nil {
		return 0, err
	}
	spec.progress("provisioning a sandbox home with %d dummy file(s)", len(spec.Plan.Files))
	home, err := os.MkdirTemp("", "cork-sandbox-")
	if err != nil {
		return 0, fmt.Errorf("sandbox home: %w", err)
	}
	defer os.RemoveAll(home)
	if err := WriteFiles(home, spec.Plan.Files); err != nil {
		return 0, err
	}

	var ns *netns
	var ln net.Listener
	if spec.IsolateNet {
		if ns, err = newNetns(); err != nil {
			return 0, setupErrorf("--isolate-net: %w", err)
		}
		defer ns.Close()
		ln = ns.ln
	} else if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return 0, fmt.Errorf("proxy listener: %w", err)
	}
	auth := sessionAuth()
	ip, err := startInProcess(spec, ln, tokens, auth)
	if err != nil {
		ln.Close()
		return 0, err
	}
	defer ip.Close()
	stopRefresh, err := watchSources(ctx, spec, ip.proxy)
	if err != nil {
		return 0, err
	}
	defer stopRefresh()
	spec.progress("proxy listening on %s", ln.Addr())

	caPath, bundlePath, err := writeTrust(home, ip.proxy.CACertPEM())
	if err != nil {
		return 0, err
	}

	env := map[string]string{}
	for _, k := range hostEnvPassthrough {
		if v, ok := spec.HostEnv[k]; ok {
			env[k] = v
		}
	}
	env["HOME"] = home
	// A private temporary directory, removed with the home. (Codex also
	// refuses to create helpers under the system temporary directory,
	// which the sandbox home is in.)
	tmp := filepath.Join(home, ".tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return 0, fmt.Errorf("sandbox home: %w", err)
	}
	env["TMPDIR"] = tmp
	for k, v := range sandboxEnvExpand(spec.Plan.Env, home) {
		env[k] = v
	}
	for k, v := range SandboxEnv(proxyURL(auth, ln.Addr().String()), bundlePath, caPath) {
		env[k] = v
	}
	for k, v := range sandboxEnvExpand(spec.Env, home) {
		env[k] = v
	}

	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Env = envList(env)
	cmd.Dir = home
	if spec.Workspace != "" {
		cmd.Dir = spec.Workspace
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	// Without a terminal, the command gets a process group of its own so
	// that whatever it leaves running is stopped at teardown. On a
	// terminal it stays in cork's foreground group, where it can read the
	// terminal and gets the user's Ctrl-C directly.
	grouped := !isTerminal(spec.Stdin)
	if grouped {
		ownProcessGroup(cmd)
	}
	// A leftover process holding the output pipes must not keep cork
	// waiting after the command exits: once it has, its output gets
	// outputDrain to arrive, then the leftovers are stopped.
	cmd.WaitDelay = outputDrain
	spec.progress("sandbox ready; running %s", filepath.Base(spec.Command[0]))
	if ns != nil {
		if err := confine(cmd, home, spec.HostEnv); err != nil {
			return 0, fmt.Errorf("--isolate-net: %w", err)
		}
		err = ns.start(cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", spec.Command[0], err)
	}
	code, err := waitChild(ctx, cmd, grouped)
	spec.progress("sandbox exited with status %d; tearing down", code)
	return code, err
}

// waitChild waits for cmd; when ctx ends first it sends SIGTERM, then
// SIGKILL after ChildStopGrace. With grouped, signals go to the command's
// process group, and anything left in it once the command exits is
// stopped too. It returns the command's exit status (128+n when killed by
// signal n).
func waitChild(ctx context.Context, cmd *exec.Cmd, grouped bool) (int, error) {
	signal := func(sig syscall.Signal) {
		if grouped {
			signalGroup(cmd, sig)
		} else {
			cmd.Process.Signal(sig)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(ChildStopGrace):
			signal(syscall.SIGKILL)
			err = <-done
		}
	}
	if grouped && groupAlive(cmd) {
		signalGroup(cmd, syscall.SIGTERM)
		for deadline := time.Now().Add(leftoverGrace); groupAlive(cmd) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		signalGroup(cmd, syscall.SIGKILL)
	}
	return exitStatus(err)
}

// outputDrain is how long output written before the command exited may
// take to arrive once it has, while something it left running holds the
// pipes.
const outputDrain = 250 * time.Millisecond

// leftoverGrace is how long processes the command left behind get after
// SIGTERM before they are killed.
const leftoverGrace = 500 * time.Millisecond

func exitStatus(err error) (int, error) {
	if err == nil || errors.Is(err, exec.ErrWaitDelay) {
		// ErrWaitDelay: the command exited 0; only a leftover process
		// still held its output.
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func checkDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}
