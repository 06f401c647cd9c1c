package launch

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The kubernetes backend's names and defaults, which cork knows whether or
// not it was built with the backend (kube.go; built without it under the
// nokube tag: kube_nokube.go).

// Defaults of the kubernetes backend.
const (
	// DefaultNamespacePrefix starts the name of each session's namespace.
	DefaultNamespacePrefix = "cork-"
	// KubeTeardownTimeout bounds the deletion of a session's namespace.
	KubeTeardownTimeout = 2 * time.Minute
	// KubePodStartTimeout bounds how long a pod may take to be scheduled
	// and started (its image is already on the node: cork never pulls).
	KubePodStartTimeout = 2 * time.Minute
	// KubeAgentStartTimeout bounds how long the agent pod may take to
	// start: the node may pull --image first (a pull that fails, fails
	// at once).
	KubeAgentStartTimeout = 10 * time.Minute
	// KubeBoundaryTimeout bounds how long a pod under the session's
	// NetworkPolicy may take to reach the proxy and to find everything
	// else blocked (a CNI applies a new pod's policy within seconds).
	KubeBoundaryTimeout = 90 * time.Second
	// KubeSandboxUID is the user id of the sandbox's and the proxy's
	// containers: the namespaces enforce the "restricted" Pod Security
	// Standard, so nothing runs as root.
	KubeSandboxUID = 65532
)

// namespacePrefix is a DNS label's start, leaving room for the session id.
var namespacePrefix = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,38}[-a-z0-9])?$|^[a-z0-9]$`)

// namespaceName is a namespace name: a DNS label.
var namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// CheckNamespacePrefix refuses a --namespace-prefix that cannot start a
// namespace name, or that would name the cluster's own (kube-*).
func CheckNamespacePrefix(p string) error {
	if !namespacePrefix.MatchString(p) {
		return fmt.Errorf("--namespace-prefix %q: want 1 to 40 lower-case letters, digits or '-', starting with a letter or digit", p)
	}
	if strings.HasPrefix(p+"-", "kube-") {
		return fmt.Errorf("--namespace-prefix %q: kube- names the cluster's own namespaces", p)
	}
	return nil
}

// CheckNamespace refuses a session namespace (--namespace) that is not a
// namespace name, or that is one the cluster or its users already rely
// on: default and kube-*, whose pods the restricted Pod Security
// Standard the session's namespace enforces would stop.
func CheckNamespace(ns string) error {
	switch {
	case !namespaceName.MatchString(ns):
		return fmt.Errorf("--namespace %q: want a namespace name: up to 63 lower-case letters, digits or '-'", ns)
	case ns == "default" || strings.HasPrefix(ns, "kube-"):
		return fmt.Errorf("--namespace %q: the cluster's own namespace: a session needs one of its own", ns)
	}
	return nil
}

// sidecarImageFor is the cork image: the backend's, else the host's
// CORK_SIDECAR_IMAGE, else DefaultSidecarImage.
func sidecarImageFor(configured string, spec *Spec) string {
	if configured != "" {
		return configured
	}
	if v := strings.TrimSpace(spec.HostEnv["CORK_SIDECAR_IMAGE"]); v != "" {
		return v
	}
	return DefaultSidecarImage
}
