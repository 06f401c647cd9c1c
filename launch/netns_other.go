//go:build !linux

package launch

import (
	"errors"
	"net"
	"os/exec"
)

// netns is Linux-only; elsewhere --isolate-net is refused up front.
type netns struct{ ln net.Listener }

func newNetns() (*netns, error) {
	return nil, errors.New("network isolation needs Linux network namespaces")
}

func (ns *netns) start(cmd *exec.Cmd) error { return cmd.Start() }

func (ns *netns) Close() error { return nil }

// protectProcess has no portable equivalent; the local backend documents
// that it is not a process boundary there.
func protectProcess() error { return nil }

func confine(*exec.Cmd, string, map[string]string) error { return nil }
