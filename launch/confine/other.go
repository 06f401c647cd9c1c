//go:build !linux

package confine

import (
	"context"
	"os/exec"
	"runtime"
)

// Supported reports whether this system has the local sandbox.
const Supported = false

// Sandbox is not available on this system; New always fails.
type Sandbox struct {
	Cmd    *exec.Cmd
	Layers []string
	Notes  []string
}

// New fails: the local sandbox needs Linux namespaces.
func New(*Spec) (*Sandbox, error) {
	return nil, errorf("local sandbox: not available on %s (it needs Linux namespaces); use --backend docker, or --no-isolate to run the command unconfined", runtime.GOOS)
}

// Probe fails: the local sandbox needs Linux namespaces.
func Probe() error { _, err := New(nil); return err }

// Start is never reached.
func (*Sandbox) Start(context.Context) error { return nil }

// Close does nothing.
func (*Sandbox) Close() error { return nil }

func initMain() int { return 125 }
