package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cork-sh/cork/launch/confine"
)

// Local runs the command as a child process whose HOME is a temporary
// sandbox home holding only the plan's dummy files. The proxy runs inside
// cork. On Linux the command is confined by default (package confine):
// its own user, mount, PID, IPC, UTS and network namespaces, the host's
// credential locations hidden, and the proxy's Unix socket relayed to
// 127.0.0.1:SandboxProxyPort as its only way out. Spec.Local.NoIsolate
// runs it unconfined.
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

// SandboxProxyPort is where the confined command finds the proxy, on the
// 127.0.0.1 of its own network namespace.
const SandboxProxyPort = 3128

// Run implements Backend.
func (l *Local) Run(ctx context.Context, spec *Spec) (int, error) {
	return runSession(ctx, spec, &localSandbox{isolate: !spec.Local.NoIsolate})
}

// localSandbox is one run of the local backend.
type localSandbox struct {
	isolate bool
	sockDir string // the proxy's socket directory (confined)
	ip      *inProcess
}

func (*localSandbox) layout() layout { return layout{hostEnv: hostEnvPassthrough} }

func (lb *localSandbox) preflight(_ context.Context, s *session) error {
	spec := s.spec
	if spec.Workspace != "" {
		if err := CheckDir(spec.Workspace); err != nil {
			return setupErrorf("workspace: %w", err)
		}
	}
	if lb.isolate && !confine.Supported {
		return setupErrorf("local sandbox: not available on %s (it needs Linux namespaces); use --backend docker, or --no-isolate to run the command unconfined", runtime.GOOS)
	}
	if !lb.isolate {
		// Confined, the command cannot see cork at all. (Set always, this
		// would also keep cork from writing the sandbox's uid map.)
		if err := protectProcess(); err != nil {
			return &SetupError{Err: err}
		}
	}
	return nil
}

func (*localSandbox) makeHome(*session) (string, error) {
	home, err := os.MkdirTemp("", "cork-sandbox-")
	if err != nil {
		return "", fmt.Errorf("sandbox home: %w", err)
	}
	return home, nil
}

// startProxy serves the proxy in cork: on a Unix socket in a private
// directory, relayed inside the confined sandbox to
// 127.0.0.1:SandboxProxyPort; unconfined, on a loopback port.
func (lb *localSandbox) startProxy(_ context.Context, s *session) (*sessionProxy, error) {
	var ln net.Listener
	var err error
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", SandboxProxyPort)
	if lb.isolate {
		if lb.sockDir, err = os.MkdirTemp("", "cork-proxy-"); err != nil {
			return nil, fmt.Errorf("proxy socket: %w", err)
		}
		if ln, err = net.Listen("unix", filepath.Join(lb.sockDir, proxySocket)); err != nil {
			return nil, fmt.Errorf("proxy socket: %w", err)
		}
	} else {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("proxy listener: %w", err)
		}
		proxyAddr = ln.Addr().String()
	}
	auth := sessionAuth()
	if lb.ip, err = startInProcess(s.spec, ln, s.tokens, auth); err != nil {
		ln.Close()
		return nil, err
	}
	if lb.isolate {
		s.spec.progress("proxy listening on %s (relayed to %s in the sandbox)", ln.Addr(), proxyAddr)
	} else {
		s.spec.progress("proxy listening on %s", ln.Addr())
	}
	return &sessionProxy{url: proxyURL(auth, proxyAddr), sink: lb.ip.proxy, caPEM: lb.ip.proxy.CACertPEM()}, nil
}

func (lb *localSandbox) run(ctx context.Context, s *session, env map[string]string) (int, error) {
	spec := s.spec
	if _, ok := spec.Env["TMPDIR"]; !ok {
		// A private temporary directory, removed with the home. (Codex
		// also refuses to create helpers under the system temporary
		// directory, which the sandbox home is in.)
		tmp := filepath.Join(s.home, ".tmp")
		if err := os.Mkdir(tmp, 0o700); err != nil {
			return 0, fmt.Errorf("sandbox home: %w", err)
		}
		env["TMPDIR"] = tmp
	}
	dir := s.home
	if spec.Workspace != "" {
		dir = spec.Workspace
	}
	// Without a terminal, the command gets a process group of its own so
	// that whatever it leaves running is stopped at teardown. On a
	// terminal it stays in cork's foreground group, where it can read the
	// terminal and gets the user's Ctrl-C directly.
	grouped := !isTerminal(spec.Stdin)

	var cmd *exec.Cmd
	if lb.isolate {
		sb, err := newSandbox(spec, env, dir, s.home, lb.sockDir, grouped)
		if err != nil {
			return 0, err
		}
		defer sb.Close()
		cmd = sb.Cmd
		for _, n := range sb.Notes {
			spec.progress("sandbox: %s", n)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
		cmd.WaitDelay = outputDrain
		if grouped {
			cmd.SysProcAttr.Setpgid = true
		}
		if err := sb.Start(ctx); err != nil {
			// Init exits once it has reported; collect it.
			if cmd.Process != nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
			var ce *confine.Error
			if errors.As(err, &ce) {
				return 0, &SetupError{Err: err}
			}
			return 0, fmt.Errorf("start %s: %w", spec.Command[0], err)
		}
		spec.progress("sandbox ready (%s); running %s", strings.Join(sb.Layers, "; "), filepath.Base(spec.Command[0]))
	} else {
		warnUnconfined(spec)
		cmd = exec.Command(spec.Command[0], spec.Command[1:]...)
		cmd.Env = envList(env)
		cmd.Dir = dir
		cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
		if grouped {
			ownProcessGroup(cmd)
		}
		// A leftover process holding the output pipes must not keep cork
		// waiting after the command exits: once it has, its output gets
		// outputDrain to arrive, then the leftovers are stopped.
		cmd.WaitDelay = outputDrain
		spec.progress("sandbox ready (unconfined); running %s", filepath.Base(spec.Command[0]))
		if err := cmd.Start(); err != nil {
			return 0, fmt.Errorf("start %s: %w", spec.Command[0], err)
		}
	}
	code, err := waitChild(ctx, cmd, grouped)
	spec.progress("sandbox exited with status %d; tearing down", code)
	return code, err
}

// teardown stops the proxy, then removes the home and the socket
// directory.
func (lb *localSandbox) teardown(s *session) error {
	var errs []error
	if lb.ip != nil {
		errs = append(errs, lb.ip.Close())
	}
	for _, d := range []string{s.home, lb.sockDir} {
		if d != "" {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	return errors.Join(errs...)
}

// IsTerminal reports whether x is an *os.File on a terminal.
func IsTerminal(x any) bool { return isTerminal(x) }

// proxySocket is the name of the proxy's Unix socket in its private
// directory.
const proxySocket = "proxy.sock"

// newSandbox prepares the confined command.
func newSandbox(spec *Spec, env map[string]string, dir, home, sockDir string, grouped bool) (*confine.Sandbox, error) {
	runAs, err := sudoUser(spec.HostEnv, home)
	if err != nil {
		return nil, err
	}
	view := confine.View{
		Homes:       invokingHomes(spec.HostEnv, runAs),
		Workspace:   spec.Workspace,
		SandboxHome: home,
		ReadWrite:   spec.Local.ReadWrite,
		ReadOnly:    spec.Local.ReadOnly,
		Hide:        spec.Local.Hide,
		HideHome:    spec.Local.HideHome,
		Path:        filepath.SplitList(env["PATH"]),
		Secrets:     confine.SecretsFromEnv(spec.HostEnv),
		Sockets:     []string{sockDir},
	}
	if s, ok := strings.CutPrefix(spec.HostEnv["DOCKER_HOST"], "unix://"); ok {
		view.Sockets = append(view.Sockets, s)
	}
	sb, err := confine.New(&confine.Spec{
		Argv: spec.Command, Env: envList(env), Dir: dir,
		View:      view,
		SocketDir: sockDir, SocketName: proxySocket, Port: SandboxProxyPort,
		RunAs:            runAs,
		NoLandlock:       spec.Local.NoLandlock,
		ForwardInterrupt: grouped,
	})
	if err != nil {
		var ce *confine.Error
		if errors.As(err, &ce) {
			return nil, &SetupError{Err: err}
		}
		return nil, setupErrorf("local sandbox: %w", err)
	}
	return sb, nil
}

// sudoUser is the user a root cork runs the command as: the invoking
// user under sudo (SUDO_UID, SUDO_GID), who then gets the sandbox home.
// Plain root: nil (uid 0 inside, without any capability).
func sudoUser(hostEnv map[string]string, home string) (*confine.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	uid, errU := strconv.Atoi(hostEnv["SUDO_UID"])
	gid, errG := strconv.Atoi(hostEnv["SUDO_GID"])
	if errU != nil || errG != nil || uid <= 0 {
		return nil, nil
	}
	err := filepath.WalkDir(home, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox home for uid %d: %w", uid, err)
	}
	return &confine.User{UID: uid, GID: gid}, nil
}

// invokingHomes are the real homes of the user cork acts for: the
// password database's (of the sudo user when there is one) and $HOME.
func invokingHomes(hostEnv map[string]string, runAs *confine.User) []string {
	uid := os.Getuid()
	if runAs != nil {
		uid = runAs.UID
	}
	var homes []string
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.HomeDir != "" {
		homes = append(homes, u.HomeDir)
	}
	if h := hostEnv["HOME"]; h != "" {
		homes = append(homes, h)
	}
	return homes
}

// warnUnconfined says loudly, and in the audit log, that the command runs
// without the sandbox.
func warnUnconfined(spec *Spec) {
	const msg = "WARNING: --no-isolate: the command runs unconfined; it can read every file you can " +
		"(~/.codex/auth.json, ~/.ssh, ...), other processes' environments and services on this host"
	if spec.Stderr != nil {
		fmt.Fprintf(spec.Stderr, "cork: %s\n", msg)
	}
	if spec.Proxy.Logger != nil {
		spec.Proxy.Logger.Warn().Str("event", "sandbox_unconfined").Str("backend", "local").Msg("--no-isolate: the command runs unconfined")
	}
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

// CheckDir checks that path is a directory cork can list (a workspace).
// Its errors read "path: reason".
func CheckDir(path string) error {
	f, st, err := openStat(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if !st.IsDir() {
		return fmt.Errorf("%s: not a directory", path)
	}
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %v", path, errors.Unwrap(err))
	}
	return nil
}

// openStat opens path for reading, non-blocking (a FIFO is opened and
// checked, not waited on), and stats it. Errors read "path: reason".
func openStat(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, pathError(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, pathError(err)
	}
	return f, st, nil
}

// pathError shortens an *os.PathError to "path: reason".
func pathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}
