package launch

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// Backend starts the proxy and the sandbox for a Spec, runs the command,
// and tears everything down. Run returns the command's exit status; an
// error means the sandbox could not be run (or torn down) as asked.
type Backend interface {
	Name() string
	Run(ctx context.Context, spec *Spec) (int, error)
}

// Spec is everything a backend needs for one run.
type Spec struct {
	Plan provision.Plan
	// Tokens are the run's credentials, resolved once from the plan and
	// the host environment (Tokens): every slot of the plan has one.
	Tokens resolve.Tokens
	// HostEnv is the host environment; read, never passed on whole. A
	// refresh resolves the plan's tokens against it again.
	HostEnv map[string]string
	Command []string
	// Workspace is a host directory made available to the sandbox (bind
	// mount for docker and smolvm; the working directory for local).
	// Empty means none.
	Workspace string
	Image     string            // docker and smolvm
	Env       map[string]string // extra sandbox variables (--env K=V)
	Proxy     ProxyOptions
	// Local is the local backend's sandbox (see docs/SECURITY.md, "The
	// local sandbox").
	Local LocalOptions

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Progress receives one short line per step; nil is silent.
	Progress func(msg string)
}

// ProxyOptions are the settings of the proxy a backend starts. The zero
// value is a proxy with every default and no logs.
type ProxyOptions struct {
	Logger *zerolog.Logger // nil: no logs
	// Settings are the CORK_* settings, parsed (package settings): the
	// in-process proxy's proxy.Config and the docker sidecar's
	// environment are made from them.
	Settings settings.Proxy
	// Unlisted, if non-nil, is the in-process proxy's proxy.Config.Unlisted
	// (local, smolvm and qemu backends; docker and kubernetes ignore it).
	Unlisted func(context.Context, proxy.Question) proxy.Verdict
}

// LocalOptions adjust the local backend's sandbox. The zero value is the
// default: confined, with the credential locations of the table in
// package confine hidden.
type LocalOptions struct {
	// NoIsolate runs the command unconfined (--no-isolate): it then reads
	// whatever the user can. Recorded in the audit log.
	NoIsolate bool
	// Hide, ReadOnly and ReadWrite adjust what the sandbox sees of the
	// host (--hide, --read-only, --read-write); HideHome hides the whole
	// real home but for the workspace and the directories on PATH.
	Hide, ReadOnly, ReadWrite []string
	HideHome                  bool
	// NoLandlock leaves Landlock out of the sandbox (--no-landlock).
	NoLandlock bool
}

func (s *Spec) progress(format string, a ...any) {
	if s.Progress != nil {
		s.Progress(fmt.Sprintf(format, a...))
	}
}

// Backends returns the backends by name. It is explicit: no init-time
// registration.
func Backends() map[string]Backend {
	return map[string]Backend{
		"docker":     &Docker{},
		"kubernetes": &Kubernetes{},
		"local":      &Local{},
		"qemu":       &Qemu{},
		"smolvm":     &Smolvm{},
	}
}

// Lookup returns the backend called name, or an error listing the known
// ones.
func Lookup(name string) (Backend, error) {
	all := Backends()
	if b, ok := all[name]; ok {
		return b, nil
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("unknown backend %q (want %s)", name, strings.Join(names, ", "))
}

// SetupError is a problem with the input or the environment found before
// the sandboxed command started (an unknown image, no Docker engine, an
// unreadable workspace, a missing credential, a proxy the sandbox network
// cannot reach): whatever had been created is removed. The CLI exits 2 on
// it.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

// setupErrorf returns a *SetupError.
func setupErrorf(format string, a ...any) error {
	return &SetupError{Err: fmt.Errorf(format, a...)}
}

// TeardownError is a teardown that failed after the command ran: Run
// returns it with the command's exit status, which stands. What is left
// is named in it.
type TeardownError struct{ Err error }

func (e *TeardownError) Error() string { return e.Err.Error() }
func (e *TeardownError) Unwrap() error { return e.Err }
