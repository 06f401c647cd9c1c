//go:build nokube

package launch

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/cork-sh/cork/resolve"
)

// This cork is built without the kubernetes backend (go build -tags
// nokube): the sidecar image's binary, which only ever runs `cork proxy`
// and the probes, and stays free of client-go (docs/PERFORMANCE.md,
// "Memory"). Every entry point of the backend refuses with errNoKube.

var errNoKube = errors.New("this cork is built without the kubernetes backend (-tags nokube)")

// Kubernetes is the kubernetes backend's settings; in this build its Run
// refuses.
type Kubernetes struct {
	Kubeconfig      string
	Context         string
	NamespacePrefix string
	SidecarImage    string
	Workspace       *VolumeSource
	ReadyTimeout    time.Duration
}

// VolumeSource stands for core/v1's VolumeSource, which this build does
// not link.
type VolumeSource struct{}

var _ Backend = (*Kubernetes)(nil)

// Name is "kubernetes".
func (*Kubernetes) Name() string { return "kubernetes" }

// Run refuses: the backend is not built in.
func (*Kubernetes) Run(context.Context, *Spec) (int, error) { return 0, &SetupError{Err: errNoKube} }

// ReadVolumeSource refuses: the backend is not built in.
func ReadVolumeSource(string) (*VolumeSource, error) { return nil, errNoKube }

// KubeManifests refuses: the backend is not built in.
func KubeManifests(*Spec, *Kubernetes, string, resolve.Tokens) ([]byte, error) {
	return nil, errNoKube
}

// KubeTrust refuses: the backend is not built in.
func KubeTrust(string, io.Reader) ([]byte, error) { return nil, errNoKube }

// KubeLeftover is a session namespace KubeGC found.
type KubeLeftover struct {
	Namespace string
	Session   string
	Removed   bool
}

// KubeGC refuses: the backend is not built in.
func KubeGC(context.Context, string, string, map[string]string, bool) ([]KubeLeftover, error) {
	return nil, errNoKube
}
