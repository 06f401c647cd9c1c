//go:build !nokube

package launch

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/settings"
)

// Kubernetes runs each session in a namespace of its own on a cluster:
// the cork proxy pod (the sidecar image) behind a Service, and the agent
// pod, whose only way out, by NetworkPolicy, is that proxy. The real
// tokens reach the proxy on its stdin through an attach stream, never in
// an object the API server stores. Before the agent starts, a probe pod
// under the same policy must fail to reach the API server and a canary
// pod: a cluster whose CNI does not enforce NetworkPolicy is refused
// (docs/KUBERNETES.md).
//
// The zero value uses the kubeconfig of the host environment (KUBECONFIG,
// else ~/.kube/config) and its current context. A Kubernetes is safe for
// concurrent Runs.
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file; empty: KUBECONFIG of
	// Spec.HostEnv, else ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context; empty: its current one.
	Context string
	// NamespacePrefix starts each session's namespace name; empty:
	// DefaultNamespacePrefix.
	NamespacePrefix string
	// SidecarImage is the cork image, already on the nodes. Empty means
	// the host's CORK_SIDECAR_IMAGE, else DefaultSidecarImage.
	SidecarImage string
	// Workspace is the volume mounted at SandboxWorkspace (the working
	// directory); nil: none.
	Workspace *corev1.VolumeSource
	// ReadyTimeout bounds the proxy's start; zero:
	// DefaultSidecarReadyTimeout.
	ReadyTimeout time.Duration

	// client, when set, is used instead of one made from the kubeconfig
	// (tests).
	client func() (kubernetes.Interface, *rest.Config, error)
}

var _ Backend = (*Kubernetes)(nil)

// Name implements Backend.
func (*Kubernetes) Name() string { return "kubernetes" }

// Run implements Backend. Errors found before anything is created are
// *SetupError.
func (k *Kubernetes) Run(ctx context.Context, spec *Spec) (int, error) {
	return runSession(ctx, spec, &kubeSandbox{cfg: k, id: newSessionID(), owner: selfOwner()})
}

// kubeSandbox is one run of the kubernetes backend: its objects are all
// in the namespace <prefix><id>, labelled cork.session=<id>.
type kubeSandbox struct {
	cfg   *Kubernetes
	id    string
	owner owner

	// Established by preflight, before anything is created.
	client  kubernetes.Interface
	rest    *rest.Config
	objects *kubeObjects

	// What the session created.
	dir        string // host: the staged sandbox home
	ns         bool   // the namespace exists
	side       *sidecar
	stopAttach func()   // ends the attach stream's loop (attachProxy)
	proxyAddr  string   // the Service's ip:port
	apiAddrs   []string // the API server's addresses, as cork reaches it
	deny       []string // what a sandbox pod must not reach (proveBoundary)
}

func (*kubeSandbox) layout() layout { return layout{home: SandboxHome} }

func (s *kubeSandbox) sessionID() string { return s.id }

// preflight checks the spec and the cluster before anything is created,
// then removes what this host's killed corks left behind.
func (s *kubeSandbox) preflight(ctx context.Context, ss *session) error {
	spec := ss.spec
	var err error
	if s.objects, err = s.cfg.objects(spec, "", s.id, s.owner); err != nil {
		return err
	}
	s.objects.Heartbeat = true
	if s.client, s.rest, err = s.cfg.connect(spec.HostEnv); err != nil {
		return &SetupError{err}
	}
	vctx, vcancel := context.WithTimeout(ctx, 20*time.Second)
	defer vcancel()
	if err := s.client.Discovery().RESTClient().Get().AbsPath("/version").Do(vctx).Error(); err != nil {
		return setupErrorf("kubernetes: the API server at %s does not answer (%s): check the kubeconfig and --context", s.rest.Host, firstLine(err.Error()))
	}
	s.apiAddrs = apiAddrs(vctx, s.rest.Host)
	gctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	left, gerr := kubeGC(gctx, s.client, s.owner, false)
	if len(left) > 0 {
		spec.progress("kubernetes: deleted the namespaces of ended sessions: %s", strings.Join(left, ", "))
	}
	if gerr != nil {
		spec.progress("kubernetes: could not delete every namespace ended sessions left (see `cork gc --backend kubernetes`): %s", firstLine(gerr.Error()))
	}
	return nil
}

// objects checks spec for the backend and returns the builder of the
// session's objects: in namespace (empty: the prefix and id), labelled
// with id, annotated with owner. Errors are *SetupError.
func (k *Kubernetes) objects(spec *Spec, namespace, id string, o owner) (*kubeObjects, error) {
	if spec.Image == "" {
		return nil, setupErrorf("--image: the kubernetes backend needs an image for the agent pod (already on the nodes, or pullable by them)")
	}
	if spec.Workspace != "" {
		return nil, setupErrorf("--workspace: a host directory cannot reach a cluster; name a volume with --workspace-volume instead")
	}
	if namespace != "" {
		if err := CheckNamespace(namespace); err != nil {
			return nil, &SetupError{err}
		}
	} else {
		prefix := k.NamespacePrefix
		if prefix == "" {
			prefix = DefaultNamespacePrefix
		}
		if err := CheckNamespacePrefix(strings.TrimSuffix(prefix, "-")); err != nil {
			return nil, &SetupError{err}
		}
		namespace = prefix + id
	}
	for _, f := range spec.Plan.Files {
		if _, err := sandboxPath(SandboxHome, f.Path); err != nil {
			return nil, &SetupError{err}
		}
	}
	pol, err := spec.Plan.Egress.Policy()
	if err != nil {
		return nil, setupErrorf("policy from the plan: %w", err)
	}
	polYAML, err := policy.Marshal(*pol)
	if err != nil {
		return nil, &SetupError{err}
	}
	side, err := kubeProxySettings(&spec.Proxy.Settings)
	if err != nil {
		return nil, &SetupError{err}
	}
	return &kubeObjects{
		Session:      id,
		Namespace:    namespace,
		SidecarImage: sidecarImageFor(k.SidecarImage, spec),
		Image:        spec.Image,
		Command:      spec.Command,
		Policy:       polYAML,
		Proxy:        side,
		Workspace:    k.Workspace,
		Owner:        o,
	}, nil
}

// apiAddrs are the addresses (ip:port) of the API server at URL host, as
// cork reaches it: a sandbox pod must not. A name is resolved here; one
// that does not resolve adds nothing.
func apiAddrs(ctx context.Context, host string) []string {
	u, err := url.Parse(host)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		if ip.IsLoopback() {
			return nil // the host's own loopback: not a pod's
		}
		return []string{net.JoinHostPort(ip.String(), port)}
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, u.Hostname())
	if err != nil {
		return nil
	}
	var out []string
	for _, ip := range ips {
		if p := net.ParseIP(ip); p != nil && !p.IsLoopback() {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	return out
}

// kubeProxySettings renders the proxy's settings for its pod (package
// settings owns them): the same as the docker sidecar's, with the admin
// listener inside the pod for the kubelet's readiness probe.
func kubeProxySettings(p *settings.Proxy) (*settings.Sidecar, error) {
	if p.AdminListen != "" {
		return nil, fmt.Errorf("%s: not used by the kubernetes backend: the proxy pod's admin listener is its port %d, for the kubelet's readiness probe (reach it with kubectl port-forward)", settings.AdminListenVar, kubeAdminPort)
	}
	q := *p
	q.AdminListen = fmt.Sprintf("0.0.0.0:%d", kubeAdminPort)
	side, err := q.Sidecar(settings.Container{
		Listen:         fmt.Sprintf("0.0.0.0:%d", ProxyPort),
		PolicyFile:     sidecarPolicyPath,
		UpstreamCAFile: sidecarUpstreamCAPath,
		CAOut:          sidecarCAPath,
	})
	if err != nil {
		return nil, err
	}
	side.Publish = ""
	return side, nil
}

// connect makes the client from the kubeconfig: k.Kubeconfig, else
// KUBECONFIG of hostEnv, else ~/.kube/config.
func (k *Kubernetes) connect(hostEnv map[string]string) (kubernetes.Interface, *rest.Config, error) {
	if k.client != nil {
		return k.client()
	}
	cfg, err := KubeConfig(k.Kubeconfig, k.Context, hostEnv)
	if err != nil {
		return nil, nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, cfg, nil
}

// KubeConfig loads the client configuration for kubeconfig (empty:
// KUBECONFIG of hostEnv, a list of files, else ~/.kube/config) and
// context (empty: its current context). Errors name the file or context.
func KubeConfig(kubeconfig, context string, hostEnv map[string]string) (*rest.Config, error) {
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case kubeconfig != "":
		rules.ExplicitPath = kubeconfig
	case hostEnv["KUBECONFIG"] != "":
		rules.Precedence = filepath.SplitList(hostEnv["KUBECONFIG"])
	case hostEnv["HOME"] != "":
		rules.Precedence = []string{filepath.Join(hostEnv["HOME"], ".kube", "config")}
	default:
		return nil, fmt.Errorf("kubernetes: no kubeconfig: set KUBECONFIG or --kubeconfig")
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		where := kubeconfig
		if where == "" {
			where = strings.Join(rules.Precedence, string(filepath.ListSeparator))
		}
		if context != "" {
			return nil, fmt.Errorf("kubernetes: kubeconfig %s, --context %s: %s", where, context, firstLine(err.Error()))
		}
		return nil, fmt.Errorf("kubernetes: kubeconfig %s: %s", where, firstLine(err.Error()))
	}
	cfg.UserAgent = "cork"
	return cfg, nil
}

// ReadVolumeSource reads a YAML (or JSON) file holding one core/v1
// VolumeSource, strictly: an unknown field is an error. The session's
// namespace enforces the "restricted" Pod Security Standard, so the API
// server accepts only the volume types it allows; a claim cannot be
// named, as the namespace is new: a csi or ephemeral volume is what
// reaches storage (docs/KUBERNETES.md, "Workspace").
func ReadVolumeSource(file string) (*corev1.VolumeSource, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var vs corev1.VolumeSource
	if err := yaml.UnmarshalStrict(data, &vs); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	switch {
	case vs == (corev1.VolumeSource{}):
		return nil, fmt.Errorf("%s: no volume in it, e.g. csi: {driver: NAME, volumeAttributes: {…}}", file)
	case vs.PersistentVolumeClaim != nil:
		return nil, fmt.Errorf("%s: persistentVolumeClaim: a claim lives in a namespace, and each session's is new; use a csi or ephemeral volume", file)
	}
	return &vs, nil
}
