package provision

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// DefaultCommandTimeout bounds a host command that provisioning runs (such
// as `gh auth token`), each time it runs.
const DefaultCommandTimeout = 10 * time.Second

// Options are the host facts a profile may use. Profiles read the host
// only through these fields, so tests can run in parallel.
type Options struct {
	// HostHome is the host user's home directory, used for "~" (e.g. the
	// default ~/.codex). Empty is an error only for a profile that needs it.
	HostHome string
	// HostEnv is the host environment (CODEX_HOME, OPENAI_API_KEY, ...).
	// Nil is empty.
	HostEnv map[string]string
	// ForwardHostCredentials lets profiles read the host's credential
	// files (e.g. ~/.codex/auth.json). The zero value, false, reads no
	// host file: the operator then supplies every token through the host
	// env vars named in Egress.TokenEnvMap. cork run turns it on unless
	// --no-forward-host-credentials is given.
	ForwardHostCredentials bool
	// Now returns the current time. If nil, time.Now is used.
	Now func() time.Time
	// Rand is the source for placeholders. If nil, crypto/rand is used.
	Rand io.Reader
	// ReadFile reads a host file. If nil, os.ReadFile is used.
	ReadFile func(name string) ([]byte, error)
	// Command runs a host command (name looked up in PATH) and returns
	// its standard output, which may be a credential: it never reaches an
	// error or a log. Profiles call it only with ForwardHostCredentials,
	// each call bounded by DefaultCommandTimeout through ctx. If nil, the
	// command is executed with HostEnv as its environment and its
	// standard error discarded. It must be safe for concurrent use (a
	// Source's Read may call it).
	Command func(ctx context.Context, name string, args ...string) ([]byte, error)
}

func (o Options) withDefaults() Options {
	if o.HostEnv == nil {
		o.HostEnv = map[string]string{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Command == nil {
		o.Command = hostCommand(o.HostEnv)
	}
	return o
}

// hostCommand runs commands on the host with env as their environment.
func hostCommand(env map[string]string) func(ctx context.Context, name string, args ...string) ([]byte, error) {
	environ := make([]string, 0, len(env))
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = environ
		cmd.WaitDelay = time.Second
		out, err := cmd.Output()
		if err != nil {
			// An *exec.ExitError carries the command's stderr, which its
			// message leaves out; keep it that way.
			return nil, err
		}
		return out, nil
	}
}

// hostConfigFile is $envVar/file on the host, envVar defaulting to
// ~/defaultDir (e.g. $CODEX_HOME/auth.json, ~/.codex by default).
func hostConfigFile(opts Options, envVar, defaultDir, file string) (string, error) {
	dir := opts.HostEnv[envVar]
	if dir == "" {
		if opts.HostHome == "" {
			return "", fmt.Errorf("cannot find %s: neither %s nor the host home directory is set", file, envVar)
		}
		dir = filepath.Join(opts.HostHome, defaultDir)
	}
	return filepath.Join(dir, file), nil
}

// unwrapPath drops an *fs.PathError's wrapping: its message would repeat
// the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readForwarded reads the host credential file that path names, when opts
// forwards host credentials. It returns the file's path and data (non-nil,
// even for an empty file, exactly when the file was read); or
// notFound, why no file was used (nil when forwarding is off), for the
// caller's "nothing found" message; or err, a failure to read a file that
// exists. Errors name the file, never its content.
func readForwarded(opts Options, path func(Options) (string, error)) (file string, data []byte, notFound, err error) {
	if !opts.ForwardHostCredentials {
		return "", nil, nil, nil
	}
	file, err = path(opts)
	if err != nil {
		return "", nil, err, nil
	}
	data, err = opts.ReadFile(file)
	switch {
	case err == nil:
		if data == nil {
			data = []byte{}
		}
		return file, data, nil, nil
	case errors.Is(err, fs.ErrNotExist):
		return file, nil, fmt.Errorf("read %s: %w", file, unwrapPath(err)), nil
	default:
		return file, nil, nil, fmt.Errorf("read %s: %w", file, unwrapPath(err))
	}
}
