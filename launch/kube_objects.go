//go:build !nokube

package launch

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cork-sh/cork/settings"
)

// The roles of a kubernetes session's pods (LabelRole). The sandbox role
// is the agent's and the boundary probe's: the session's NetworkPolicy
// selects them by it.
const (
	kubeRoleProxy   = "proxy"
	kubeRoleSandbox = "sandbox"
	kubeRoleCanary  = "canary"
)

// Names of a session's objects, inside its namespace.
const (
	kubeProxyName   = "cork-proxy"  // the proxy pod, its Service and ConfigMap
	kubeHomeName    = "cork-home"   // the sandbox home's ConfigMap
	kubeAgentName   = "cork-agent"  // the agent pod
	kubeProbeName   = "cork-probe"  // the boundary probe pod
	kubeCanaryName  = "cork-canary" // what the probe must not reach
	kubeSandboxPol  = "cork-sandbox"
	kubeProxyPol    = "cork-proxy"
	kubeAgentCtr    = "agent"
	kubeAdminPort   = 9090
	kubeCanaryPort  = 8080
	kubeHomeSrc     = "/cork-home-src"
	kubeHomeModes   = "/cork-home-modes" // modes.json: each file's mode
	kubeModesKey    = "modes.json"
	kubeCorkBinary  = "/cork"
	kubeProbeWindow = "60s" // how long the proxy may take to answer the probe
	kubeProbeSettle = "20s" // how long a CNI may take to apply the policy to a new pod
)

// kubeObjects builds the objects of one kubernetes session: the same for
// `cork run` and `cork manifests`. It holds no token; the zero value is
// not useful.
type kubeObjects struct {
	Session      string
	Namespace    string
	SidecarImage string
	Image        string
	Command      []string
	Policy       []byte               // the proxy's policy file
	Proxy        *settings.Sidecar    // the proxy's environment and files
	Workspace    *corev1.VolumeSource // nil: none
	Owner        owner                // zero: no owner annotations (manifests)
	// Heartbeat makes the proxy stop when its token stream goes silent
	// (cork writes a heartbeat on it: kube_attach.go); manifests, fed by
	// a `kubectl attach` that ends, leave it out.
	Heartbeat bool
}

func (o *kubeObjects) meta(name, role string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{
		Name:      name,
		Namespace: o.Namespace,
		Labels:    map[string]string{Label: "1", LabelSession: o.Session},
	}
	if role != "" {
		m.Labels[LabelRole] = role
	}
	return m
}

func (o *kubeObjects) selector(role string) map[string]string {
	return map[string]string{LabelSession: o.Session, LabelRole: role}
}

// namespace is the session's namespace: labelled for `cork gc`, with the
// owning cork in annotations, and the "restricted" Pod Security Standard
// enforced on everything in it.
func (o *kubeObjects) namespace() *corev1.Namespace {
	m := o.meta(o.Namespace, "")
	m.Namespace = ""
	m.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	m.Labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	if o.Owner.pid > 0 {
		m.Annotations = map[string]string{
			LabelPID:     strconv.Itoa(o.Owner.pid),
			LabelStart:   o.Owner.start,
			LabelBoot:    o.Owner.boot,
			LabelHost:    o.Owner.host,
			LabelMachine: o.Owner.machine,
			LabelPIDNS:   o.Owner.pidns,
		}
	}
	return &corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: m}
}

// proxyConfig holds the proxy's policy (placeholders only) and the extra
// upstream roots: nothing secret.
func (o *kubeObjects) proxyConfig() *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: o.meta(kubeProxyName, kubeRoleProxy),
		Data:       map[string]string{"policy.yaml": string(o.Policy)},
	}
	if o.Proxy.UpstreamCA != nil {
		cm.Data["upstream-ca.pem"] = string(o.Proxy.UpstreamCA)
	}
	return cm
}

// restricted is the security context of every container of a session:
// the "restricted" Pod Security Standard, and a read-only root unless
// the container is the user's agent.
func restricted(readOnlyRoot bool) *corev1.SecurityContext {
	no, yes := false, true
	uid := int64(KubeSandboxUID)
	return &corev1.SecurityContext{
		RunAsUser:                &uid,
		RunAsGroup:               &uid,
		RunAsNonRoot:             &yes,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &readOnlyRoot,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// podSpec is what every pod of a session shares: no service account
// token, no service links, never restarted, never pulling cork's image.
func podSpec(grace int64) corev1.PodSpec {
	no := false
	uid := int64(KubeSandboxUID)
	return corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		TerminationGracePeriodSeconds: &grace,
		SecurityContext:               &corev1.PodSecurityContext{FSGroup: &uid},
	}
}

func (o *kubeObjects) corkContainer(name string, args ...string) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           o.SidecarImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         append([]string{kubeCorkBinary}, args...),
		SecurityContext: restricted(true),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
	}
}

// proxyPod runs `cork proxy` with its token stream on stdin (attached by
// cork: never an object, never an environment variable) and auth, the
// session's proxy client credential, in CORK_CLIENT_AUTH (empty: none).
// Its CA is made in memory; only the certificate leaves it.
func (o *kubeObjects) proxyPod(auth string) *corev1.Pod {
	c := o.corkContainer("proxy", "proxy")
	c.Stdin, c.StdinOnce = true, false
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	for _, kv := range o.Proxy.Env {
		k, v, _ := strings.Cut(kv, "=")
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
	}
	if o.Heartbeat {
		c.Env = append(c.Env, corev1.EnvVar{Name: settings.ExitOnStdinIdleVar, Value: kubeStdinIdle.String()})
	}
	if auth != "" {
		c.Env = append(c.Env, corev1.EnvVar{Name: settings.ClientAuthVar, Value: auth})
	}
	c.Ports = []corev1.ContainerPort{
		{Name: "proxy", ContainerPort: ProxyPort, Protocol: corev1.ProtocolTCP},
		{Name: "admin", ContainerPort: kubeAdminPort, Protocol: corev1.ProtocolTCP},
	}
	// Ready at the first answer; once ready, a node too busy to answer
	// in time for a while does not take the proxy out of its Service
	// under a running agent.
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(kubeAdminPort)}},
		PeriodSeconds:    1,
		TimeoutSeconds:   5,
		FailureThreshold: 30,
	}
	c.VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: sidecarConfigDir, ReadOnly: true},
		{Name: "ca", MountPath: sidecarCADir},
	}
	spec := podSpec(5)
	spec.Containers = []corev1.Container{c}
	spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: kubeProxyName}}}},
		{Name: "ca", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi"))}}},
	}
	return &corev1.Pod{TypeMeta: typeMeta("v1", "Pod"), ObjectMeta: o.meta(kubeProxyName, kubeRoleProxy), Spec: spec}
}

// service is the proxy's stable address for the sandbox.
func (o *kubeObjects) service() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: o.meta(kubeProxyName, kubeRoleProxy),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: o.selector(kubeRoleProxy),
			Ports:    []corev1.ServicePort{{Name: "proxy", Port: ProxyPort, TargetPort: intstr.FromInt32(ProxyPort), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// networkPolicies confine the session: a sandbox pod (the agent, the
// probe) sends only to the proxy's port and receives nothing; the proxy
// receives only from the session's sandbox pods.
func (o *kubeObjects) networkPolicies() []*networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	proxyPort := intstr.FromInt32(ProxyPort)
	ports := []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &proxyPort}}
	return []*networkingv1.NetworkPolicy{
		{
			TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
			ObjectMeta: o.meta(kubeSandboxPol, ""),
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: o.selector(kubeRoleSandbox)},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: o.selector(kubeRoleProxy)}}},
					Ports: ports,
				}},
			},
		},
		{
			TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
			ObjectMeta: o.meta(kubeProxyPol, ""),
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: o.selector(kubeRoleProxy)},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: o.selector(kubeRoleSandbox)}}},
					Ports: ports,
				}},
			},
		},
	}
}

// canaryPod listens in the session's namespace, unprotected: a sandbox
// pod that reaches it is not confined.
func (o *kubeObjects) canaryPod() *corev1.Pod {
	c := o.corkContainer("canary", "canary", "--listen", fmt.Sprintf(":%d", kubeCanaryPort))
	c.Ports = []corev1.ContainerPort{{Name: "canary", ContainerPort: kubeCanaryPort, Protocol: corev1.ProtocolTCP}}
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(kubeCanaryPort)}},
		PeriodSeconds:    1,
		TimeoutSeconds:   5,
		FailureThreshold: 30,
	}
	spec := podSpec(0)
	spec.Containers = []corev1.Container{c}
	return &corev1.Pod{TypeMeta: typeMeta("v1", "Pod"), ObjectMeta: o.meta(kubeCanaryName, kubeRoleCanary), Spec: spec}
}

// boundaryCheck is `cork probe` from a sandbox pod: the proxy at
// proxyAddr must answer, and none of deny (the canary's addresses, the
// API server's own), nor the API server's Service (the address the
// kubelet gives every pod), may; with resolvers, nor may the pod's DNS
// resolvers, over UDP or TCP.
func (o *kubeObjects) boundaryCheck(name, proxyAddr string, deny []string, resolvers bool) corev1.Container {
	args := []string{"probe", "--timeout", kubeProbeWindow, "--settle", kubeProbeSettle, "--deny-kubernetes-api"}
	if resolvers {
		args = append(args, "--deny-resolvers")
	}
	for _, d := range deny {
		args = append(args, "--deny", d)
	}
	args = append(args, "http://"+proxyAddr)
	return o.corkContainer(name, args...)
}

// probePod is the boundary probe in the agent's place: same labels, same
// policy; unlike the agent, it has the cluster's resolvers, to try them.
func (o *kubeObjects) probePod(proxyAddr string, deny []string) *corev1.Pod {
	spec := podSpec(0)
	spec.Containers = []corev1.Container{o.boundaryCheck("probe", proxyAddr, deny, true)}
	spec.DNSPolicy = corev1.DNSClusterFirst
	return &corev1.Pod{TypeMeta: typeMeta("v1", "Pod"), ObjectMeta: o.meta(kubeProbeName, kubeRoleSandbox), Spec: spec}
}

// noDNS leaves a sandbox pod without a resolver: it needs no name (the
// proxy is an address), and DNS would be a way out.
func noDNS(spec *corev1.PodSpec) {
	spec.DNSPolicy = corev1.DNSNone
	spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.1"}}
}

// homeFile is one file of the sandbox home's ConfigMap.
type homeFile struct {
	Path string // relative to the home
	Mode int32
	Data []byte
}

// homeConfig holds the sandbox home (dummy files and the session CA,
// nothing secret), keyed f0, f1, … with each file's path and mode in the
// pod's volume items (homeVolume), and the modes again in modes.json:
// the pod's fsGroup makes the kubelet add group-read to the volume's
// files, and seed-home gives each copy its own mode back.
func (o *kubeObjects) homeConfig(files []homeFile) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: o.meta(kubeHomeName, kubeRoleSandbox),
		BinaryData: map[string][]byte{},
		Data:       map[string]string{kubeModesKey: homeModes(files)},
	}
	for i, f := range files {
		cm.BinaryData["f"+strconv.Itoa(i)] = f.Data
	}
	return cm
}

// homeModes is modes.json: {"path": mode}.
func homeModes(files []homeFile) string {
	m := make(map[string]int32, len(files))
	for _, f := range files {
		m[f.Path] = f.Mode
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func homeVolume(files []homeFile) corev1.Volume {
	items := make([]corev1.KeyToPath, len(files))
	for i, f := range files {
		mode := f.Mode
		items[i] = corev1.KeyToPath{Key: "f" + strconv.Itoa(i), Path: f.Path, Mode: &mode}
	}
	return corev1.Volume{Name: "home-src", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: kubeHomeName}, Items: items}}}
}

func homeModesVolume() corev1.Volume {
	return corev1.Volume{Name: "home-modes", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: kubeHomeName},
		Items:                []corev1.KeyToPath{{Key: kubeModesKey, Path: kubeModesKey}}}}}
}

// agentPod runs the user's image with the command (after the image's
// entrypoint, as `docker run IMAGE COMMAND` does) and env, once two init
// containers have copied the home in and seen the boundary hold from the
// pod's own network.
func (o *kubeObjects) agentPod(env map[string]string, files []homeFile, proxyAddr string, deny []string) *corev1.Pod {
	seed := o.corkContainer("seed-home", "seed-home", "--from", kubeHomeSrc, "--to", SandboxHome,
		"--modes", kubeHomeModes+"/"+kubeModesKey)
	seed.VolumeMounts = []corev1.VolumeMount{
		{Name: "home-src", MountPath: kubeHomeSrc, ReadOnly: true},
		{Name: "home-modes", MountPath: kubeHomeModes, ReadOnly: true},
		{Name: "home", MountPath: SandboxHome},
	}
	agent := corev1.Container{
		Name:            kubeAgentCtr,
		Image:           o.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            o.Command,
		WorkingDir:      SandboxHome,
		SecurityContext: restricted(false),
		VolumeMounts:    []corev1.VolumeMount{{Name: "home", MountPath: SandboxHome}},
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		agent.Env = append(agent.Env, corev1.EnvVar{Name: k, Value: env[k]})
	}
	spec := podSpec(int64(ChildStopGrace.Seconds()))
	spec.Volumes = []corev1.Volume{
		homeVolume(files),
		homeModesVolume(),
		{Name: "home", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	if o.Workspace != nil {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "workspace", VolumeSource: *o.Workspace})
		agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: "workspace", MountPath: SandboxWorkspace})
		agent.WorkingDir = SandboxWorkspace
	}
	spec.InitContainers = []corev1.Container{seed, o.boundaryCheck("boundary", proxyAddr, deny, false)}
	spec.Containers = []corev1.Container{agent}
	noDNS(&spec)
	return &corev1.Pod{TypeMeta: typeMeta("v1", "Pod"), ObjectMeta: o.meta(kubeAgentName, kubeRoleSandbox), Spec: spec}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func ptr[T any](v T) *T { return &v }

// hostPort joins an address and a port.
func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
