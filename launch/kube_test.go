//go:build !nokube

package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/yaml"

	"github.com/cork-sh/cork/internal/testing/kubeschema"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/settings"
)

const (
	kubeTestReal = "sk-proj-REALkubeTOKEN0123456789abcdef"
	kubeTestHost = "api.example.test"
)

// kubeTestSpec is a spec with one generic binding and a dummy file.
func kubeTestSpec(t *testing.T) *Spec {
	t.Helper()
	hostEnv := map[string]string{"EXAMPLE_TOKEN": kubeTestReal, "HOME": t.TempDir()}
	plan, err := provision.Build(provision.Options{HostEnv: hostEnv},
		provision.Generic{Bindings: []provision.Binding{{Host: kubeTestHost, Env: "EXAMPLE_TOKEN"}}})
	if err != nil {
		t.Fatal(err)
	}
	plan.Files = append(plan.Files, provision.File{Path: ".agent/auth.json", Mode: 0o600, Data: []byte(`{"token":"placeholder"}`)})
	tokens, err := Tokens(plan, hostEnv)
	if err != nil {
		t.Fatal(err)
	}
	in, err := settings.Load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := in.Parse(settings.ForRun)
	if err != nil {
		t.Fatal(err)
	}
	return &Spec{Plan: plan, Tokens: tokens, HostEnv: hostEnv, Command: []string{"agent", "--go"},
		Image: "agent:test", Env: map[string]string{"EXTRA": "1"}, Proxy: ProxyOptions{Settings: *ps}}
}

// kubeTestObjects is every object of a cork run session, as the backend
// builds them.
func kubeTestObjects(t *testing.T, spec *Spec) (*kubeObjects, []any) {
	t.Helper()
	ws := &corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "nfs.csi.k8s.io", VolumeAttributes: map[string]string{"share": "/ws"}}}
	o, err := (&Kubernetes{Workspace: ws}).objects(spec, "", "abc123", selfOwner())
	if err != nil {
		t.Fatal(err)
	}
	files := []homeFile{{Path: ".agent/auth.json", Mode: 0o600, Data: []byte("{}")}, {Path: SandboxCAFile, Mode: 0o644, Data: []byte("ca")}}
	env := map[string]string{"HTTPS_PROXY": "http://u:p@10.96.0.10:3128", "HOME": SandboxHome}
	objs := []any{o.namespace(), o.proxyConfig()}
	for _, np := range o.networkPolicies() {
		objs = append(objs, np)
	}
	objs = append(objs, o.service(), o.proxyPod("u:p"), o.canaryPod(), o.probePod("10.96.0.10:3128", []string{"10.244.0.9:8080", "[fd00::9]:8080"}),
		o.homeConfig(files), o.agentPod(env, files, "10.96.0.10:3128", []string{"10.244.0.9:8080"}))
	return o, objs
}

// TestKubeObjectsValidate: every object a session creates, and every
// object `cork manifests` prints, passes the API server's schema
// strictly (offline, kubeconform), and none holds the real token.
func TestKubeObjectsValidate(t *testing.T) {
	spec := kubeTestSpec(t)
	_, objs := kubeTestObjects(t, spec)
	run, err := yamlStream(objs...)
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := KubeManifests(spec, &Kubernetes{}, "cork-gitops", spec.Tokens)
	if err != nil {
		t.Fatalf("KubeManifests: %v", err)
	}
	for name, data := range map[string][]byte{"cork run": run, "cork manifests": manifests} {
		if err := kubeschema.Validate(data); err != nil {
			t.Errorf("%s objects: %v", name, err)
		}
		if strings.Contains(string(data), kubeTestReal) {
			t.Errorf("%s objects hold the real token", name)
		}
	}
	if n := strings.Count(string(manifests), "\nkind: "); n != 8 {
		t.Errorf("cork manifests printed %d objects, want 8 (namespace, configmaps, policies, service, pods)", n)
	}
}

// TestKubeManifestsRefusesTokens: a real token in the command or a
// variable is refused, as cork run refuses it.
func TestKubeManifestsRefusesTokens(t *testing.T) {
	spec := kubeTestSpec(t)
	spec.Env["LEAK"] = kubeTestReal
	_, err := KubeManifests(spec, &Kubernetes{}, "", spec.Tokens)
	var se *SetupError
	if !errors.As(err, &se) || strings.Contains(err.Error(), kubeTestReal) {
		t.Fatalf("KubeManifests with the token in --env: %v, want a *SetupError without the value", err)
	}
}

// TestKubeProxyPod: the proxy reads its tokens on stdin (an attach
// stream), runs as non-root with a read-only root and no capability, and
// is ready on /readyz.
func TestKubeProxyPod(t *testing.T) {
	o, _ := kubeTestObjects(t, kubeTestSpec(t))
	p := o.proxyPod("u:p")
	c := p.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	switch {
	case !c.Stdin || c.StdinOnce || c.TTY:
		t.Errorf("stdin %v, stdinOnce %v, tty %v: want an attachable stdin that outlives one attach", c.Stdin, c.StdinOnce, c.TTY)
	case env["CORK_TOKENS_FILE"] != "-" || env["CORK_READY_FD"] != "1":
		t.Errorf("env %v: want the token stream on stdin and the readiness line on stdout", env)
	case env[settings.ClientAuthVar] != "u:p":
		t.Errorf("%s = %q", settings.ClientAuthVar, env[settings.ClientAuthVar])
	case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
		t.Errorf("readiness probe %+v, want GET /readyz", c.ReadinessProbe)
	case c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero():
		t.Errorf("resources %+v, want requests and limits", c.Resources)
	}
	assertRestricted(t, "proxy", c.SecurityContext, true)
	if *p.Spec.AutomountServiceAccountToken || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("proxy pod: automount %v, restart %s", *p.Spec.AutomountServiceAccountToken, p.Spec.RestartPolicy)
	}
}

func assertRestricted(t *testing.T, name string, sc *corev1.SecurityContext, readOnly bool) {
	t.Helper()
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation ||
		*sc.ReadOnlyRootFilesystem != readOnly || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: security context %+v is not restricted", name, sc)
	}
}

// TestKubeAgentPod: the home is copied in and the boundary checked from
// the agent's own network before the agent starts; the agent has no
// resolver, no service account token, no service links.
func TestKubeAgentPod(t *testing.T) {
	o, _ := kubeTestObjects(t, kubeTestSpec(t))
	files := []homeFile{{Path: ".agent/auth.json", Mode: 0o600, Data: []byte("{}")}}
	p := o.agentPod(map[string]string{"B": "2", "A": "1"}, files, "10.96.0.10:3128", []string{"10.244.0.9:8080", "198.18.2.1:6443"})
	var inits []string
	for _, c := range p.Spec.InitContainers {
		inits = append(inits, c.Name)
		assertRestricted(t, c.Name, c.SecurityContext, true)
	}
	if !slices.Equal(inits, []string{"seed-home", "boundary"}) {
		t.Errorf("init containers %v, want seed-home then boundary", inits)
	}
	args := strings.Join(p.Spec.InitContainers[1].Command, " ")
	for _, w := range []string{"--deny-kubernetes-api", "--deny 10.244.0.9:8080", "--deny 198.18.2.1:6443", "--settle", "http://10.96.0.10:3128"} {
		if !strings.Contains(args, w) {
			t.Errorf("boundary check %q lacks %q", args, w)
		}
	}
	a := p.Spec.Containers[0]
	if a.Image != "agent:test" || !slices.Equal(a.Args, []string{"agent", "--go"}) || a.Command != nil {
		t.Errorf("agent container image %q command %v args %v: want the image's entrypoint with the command as args", a.Image, a.Command, a.Args)
	}
	if a.Env[0].Name != "A" || a.Env[1].Name != "B" {
		t.Errorf("agent env %v: want sorted", a.Env)
	}
	assertRestricted(t, "agent", a.SecurityContext, false)
	if p.Spec.DNSPolicy != corev1.DNSNone || *p.Spec.EnableServiceLinks || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("agent pod dns %s, service links %v, automount %v", p.Spec.DNSPolicy, *p.Spec.EnableServiceLinks, *p.Spec.AutomountServiceAccountToken)
	}
	if seed := strings.Join(p.Spec.InitContainers[0].Command, " "); !strings.Contains(seed, "--modes "+kubeHomeModes+"/"+kubeModesKey) {
		t.Errorf("seed-home %q: want the modes file", seed)
	}
	if m := homeModes(files); m != `{".agent/auth.json":384}` {
		t.Errorf("modes.json = %s", m)
	}
	item := p.Spec.Volumes[0].ConfigMap.Items[0]
	if item.Path != ".agent/auth.json" || *item.Mode != 0o600 {
		t.Errorf("home item %+v", item)
	}
	if p.Labels[LabelRole] != kubeRoleSandbox {
		t.Errorf("agent pod role %q: the sandbox policy selects %q", p.Labels[LabelRole], kubeRoleSandbox)
	}
	// The workspace volume, mounted at /workspace, the working directory.
	var mounted bool
	for _, m := range a.VolumeMounts {
		mounted = mounted || (m.Name == "workspace" && m.MountPath == SandboxWorkspace)
	}
	if !mounted || a.WorkingDir != SandboxWorkspace || p.Spec.Volumes[len(p.Spec.Volumes)-1].CSI == nil {
		t.Errorf("agent workspace: mounts %+v, workdir %q: want the csi volume at %s", a.VolumeMounts, a.WorkingDir, SandboxWorkspace)
	}
}

// TestKubeNetworkPolicies: a sandbox pod sends only to its proxy's port
// and receives nothing; the proxy receives only from its sandbox pods.
func TestKubeNetworkPolicies(t *testing.T) {
	o, _ := kubeTestObjects(t, kubeTestSpec(t))
	nps := o.networkPolicies()
	sb, px := nps[0], nps[1]
	if sb.Spec.PodSelector.MatchLabels[LabelRole] != kubeRoleSandbox || len(sb.Spec.Ingress) != 0 ||
		!slices.Contains(sb.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || len(sb.Spec.Egress) != 1 {
		t.Fatalf("sandbox policy %+v", sb.Spec)
	}
	eg := sb.Spec.Egress[0]
	if len(eg.To) != 1 || eg.To[0].PodSelector.MatchLabels[LabelRole] != kubeRoleProxy || eg.To[0].NamespaceSelector != nil ||
		eg.To[0].IPBlock != nil || len(eg.Ports) != 1 || eg.Ports[0].Port.IntValue() != ProxyPort {
		t.Errorf("sandbox egress %+v: want the proxy's port only", eg)
	}
	if px.Spec.PodSelector.MatchLabels[LabelRole] != kubeRoleProxy || len(px.Spec.Ingress) != 1 ||
		px.Spec.Ingress[0].From[0].PodSelector.MatchLabels[LabelRole] != kubeRoleSandbox {
		t.Errorf("proxy policy %+v", px.Spec)
	}
	for _, np := range nps {
		if np.Spec.PodSelector.MatchLabels[LabelSession] != "abc123" {
			t.Errorf("policy %s selects %v: want this session's pods only", np.Name, np.Spec.PodSelector.MatchLabels)
		}
	}
}

// TestKubeCreateSession: against client-go's fake clientset, the session
// creates its objects in its own namespace and teardown deletes it.
func TestKubeCreateSession(t *testing.T) {
	spec := kubeTestSpec(t)
	c := fake.NewClientset()
	s := &kubeSandbox{cfg: &Kubernetes{}, id: "abc123", owner: selfOwner(), client: c, rest: &rest.Config{}}
	var err error
	if s.objects, err = s.cfg.objects(spec, "", s.id, s.owner); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, s.objects.namespace(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.ns = true
	if err := s.createSession(ctx, "u:p"); err != nil {
		t.Fatal(err)
	}
	pods, _ := c.CoreV1().Pods("cork-abc123").List(ctx, metav1.ListOptions{})
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{kubeCanaryName, kubeProxyName}) {
		t.Errorf("pods %v", names)
	}
	nps, _ := c.NetworkingV1().NetworkPolicies("cork-abc123").List(ctx, metav1.ListOptions{})
	if len(nps.Items) != 2 {
		t.Errorf("%d network policies, want 2", len(nps.Items))
	}
	// Nothing created holds the token.
	for _, a := range c.Actions() {
		if ca, ok := a.(k8stesting.CreateAction); ok {
			y, _ := yaml.Marshal(ca.GetObject())
			if strings.Contains(string(y), kubeTestReal) {
				t.Errorf("%s %s holds the real token", a.GetVerb(), a.GetResource().Resource)
			}
		}
	}
	if err := s.teardown(&session{spec: spec}); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if _, err := c.CoreV1().Namespaces().Get(ctx, "cork-abc123", metav1.GetOptions{}); err == nil {
		t.Error("the namespace is still there after teardown")
	}
}

// TestKubeGC: only namespaces labelled cork=1 whose owner ran on this
// machine and is gone are deleted: on a cluster many hosts share, a host
// name alone proves nothing.
func TestKubeGC(t *testing.T) {
	self := selfOwner()
	if self.machine == "" {
		self.machine = "this-machine" // a host without /etc/machine-id
	}
	ns := func(name string, labelled bool, o owner) runtime.Object {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelSession: name},
			Annotations: map[string]string{LabelPID: strconv.Itoa(o.pid), LabelHost: o.host, LabelBoot: o.boot, LabelStart: o.start,
				LabelMachine: o.machine, LabelPIDNS: o.pidns}}}
		if labelled {
			n.Labels[Label] = "1"
		}
		return n
	}
	dead := self
	dead.pid = deadPID(t)
	other := dead
	other.host = "another-host"
	// Another machine that happens to have this host's name (CI
	// runners), and an owner from a host without a machine id.
	twin := dead
	twin.machine, twin.boot = "another-machine", "another-boot"
	anonymous := dead
	anonymous.machine = ""
	c := fake.NewClientset(ns("cork-dead", true, dead), ns("cork-alive", true, self), ns("cork-other", true, other),
		ns("cork-twin", true, twin), ns("cork-anonymous", true, anonymous), ns("unlabelled", false, dead))
	ctx := context.Background()
	left, err := kubeLeftovers(ctx, c, self, true)
	if err != nil || len(left) != 1 || left[0].Namespace != "cork-dead" || left[0].Removed {
		t.Fatalf("dry run: %+v, %v: want cork-dead only, not removed", left, err)
	}
	names, err := kubeGC(ctx, c, self, false)
	if err != nil || !slices.Equal(names, []string{"cork-dead"}) {
		t.Fatalf("kubeGC: %v, %v", names, err)
	}
	list, _ := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if len(list.Items) != 5 {
		t.Errorf("%d namespaces left, want 5", len(list.Items))
	}
}

// TestKubeWaitPodStuck: a pod whose image the node does not have fails
// the wait at once, naming the reason, instead of timing out.
func TestKubeWaitPodStuck(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cork-proxy", Namespace: "ns"},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "proxy", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image cork:dev not present"}}}}}}
	c := fake.NewClientset(p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := waitPod(ctx, c, "ns", "cork-proxy", podRunning)
	if err == nil || !strings.Contains(err.Error(), "ErrImageNeverPull") || ctx.Err() != nil {
		t.Fatalf("waitPod = %v, want ErrImageNeverPull at once", err)
	}
}

// TestKubePreflightRefuses: what the backend cannot run is refused
// before anything is created, with one line naming the flag.
func TestKubePreflightRefuses(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec, *Kubernetes)
		want   string
	}{
		{"no image", func(s *Spec, _ *Kubernetes) { s.Image = "" }, "--image"},
		{"host workspace", func(s *Spec, _ *Kubernetes) { s.Workspace = "/tmp" }, "--workspace-volume"},
		{"bad prefix", func(_ *Spec, k *Kubernetes) { k.NamespacePrefix = "Cork_" }, "--namespace-prefix"},
		{"system prefix", func(_ *Spec, k *Kubernetes) { k.NamespacePrefix = "kube-" }, "cluster's own"},
		{"admin listener", func(s *Spec, _ *Kubernetes) { s.Proxy.Settings.AdminListen = "127.0.0.1:9090" }, settings.AdminListenVar},
		{"unreachable API server", func(s *Spec, k *Kubernetes) { k.Kubeconfig = writeKubeconfig(t, "https://127.0.0.1:1") }, "does not answer"},
		{"missing kubeconfig", func(s *Spec, k *Kubernetes) { k.Kubeconfig = filepath.Join(t.TempDir(), "none") }, "kubeconfig"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := kubeTestSpec(t)
			k := &Kubernetes{}
			tc.modify(spec, k)
			code, err := k.Run(context.Background(), spec)
			var se *SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || code != 0 {
				t.Fatalf("Run = %d, %v: want a *SetupError naming %q", code, err, tc.want)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error %q: want one line", err)
			}
		})
	}
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " + server + "\n    insecure-skip-tls-verify: true\n" +
		"contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: x\ncurrent-context: c\n"
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestReadVolumeSource: a workspace volume is read strictly; a claim,
// which cannot be in a new namespace, is refused.
func TestReadVolumeSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	if vs, err := ReadVolumeSource(write("ok.yaml", "csi:\n  driver: nfs.csi.k8s.io\n  volumeAttributes: {share: /ws}\n")); err != nil || vs.CSI == nil || vs.CSI.Driver != "nfs.csi.k8s.io" {
		t.Errorf("csi volume: %+v, %v", vs, err)
	}
	for name, data := range map[string]string{
		"unknown.yaml": "csi:\n  drivr: x\n",
		"empty.yaml":   "{}\n",
		"claim.yaml":   "persistentVolumeClaim: {claimName: ws}\n",
	} {
		if _, err := ReadVolumeSource(write(name, data)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}

// TestKubeTrust: the trust ConfigMap carries the CA of the readiness
// line, found among the proxy's log lines.
func TestKubeTrust(t *testing.T) {
	const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	log := `{"level":"info","msg":"proxy listening"}` + "\n" + `{"ready":true,"listen":"0.0.0.0:3128","ca":` + strconv.Quote(ca) + "}\n"
	out, err := KubeTrust("cork-gitops", strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeschema.Validate(out); err != nil {
		t.Error(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(out, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != KubeTrustName || cm.Namespace != "cork-gitops" || cm.Data["ca.pem"] != ca || !strings.HasSuffix(cm.Data["bundle.pem"], ca) {
		t.Errorf("trust ConfigMap %s/%s: %v", cm.Namespace, cm.Name, cm.Data)
	}
	if _, err := KubeTrust("ns", strings.NewReader(`{"level":"info"}`+"\n")); err == nil {
		t.Error("a log without a readiness line: no error")
	}
}

// TestKubeProveBoundary: the probe's outcome decides, and a probe pod
// that the kubelet refused (phase Failed, no container status) proves
// nothing: refused, not "boundary holds".
func TestKubeProveBoundary(t *testing.T) {
	tests := []struct {
		name  string
		probe corev1.PodStatus
		want  string // "" : passes
	}{
		{"blocked", corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{exited("probe", 0)}}, ""},
		{"escaped", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{exited("probe", probeEscaped)}}, "does not enforce NetworkPolicy"},
		{"no proxy", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{exited("probe", 1)}}, "could not reach the proxy"},
		{"refused by the kubelet", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "OutOfcpu"}, "did not run (OutOfcpu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := kubeTestSpec(t)
			c := fake.NewClientset()
			c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
				switch p.Name {
				case kubeCanaryName:
					p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.9",
						PodIPs:     []corev1.PodIP{{IP: "10.244.0.9"}, {IP: "fd00::9"}},
						Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
				case kubeProbeName:
					p.Status = tc.probe
				}
				return false, nil, nil
			})
			s := &kubeSandbox{cfg: &Kubernetes{}, id: "abc123", client: c, rest: &rest.Config{}, proxyAddr: "10.96.0.10:3128",
				apiAddrs: []string{"198.18.2.1:6443"}}
			var err error
			if s.objects, err = s.cfg.objects(spec, "", s.id, owner{}); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			c.CoreV1().Pods(s.objects.Namespace).Create(ctx, s.objects.canaryPod(), metav1.CreateOptions{})
			err = s.proveBoundary(ctx, spec)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("proveBoundary = %v, want nil", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("proveBoundary = %v, want an error containing %q", err, tc.want)
			}
			probe, _ := c.CoreV1().Pods(s.objects.Namespace).Get(ctx, kubeProbeName, metav1.GetOptions{})
			args := strings.Join(probe.Spec.Containers[0].Command, " ")
			for _, w := range []string{"--deny 10.244.0.9:8080", "--deny [fd00::9]:8080", "--deny 198.18.2.1:6443", "--deny-kubernetes-api", "--deny-resolvers"} {
				if !strings.Contains(args, w) {
					t.Errorf("probe %q lacks %q", args, w)
				}
			}
		})
	}
}

func exited(name string, code int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
}

// TestAPIAddrs: the API server's own address is denied to sandbox pods:
// an IP as is, a default port by scheme, never the host's loopback.
func TestAPIAddrs(t *testing.T) {
	ctx := context.Background()
	for host, want := range map[string][]string{
		"https://198.18.2.1:6443":   {"198.18.2.1:6443"},
		"https://[fd00::1]":         {"[fd00::1]:443"},
		"http://10.0.0.1":           {"10.0.0.1:80"},
		"https://127.0.0.1:6443":    nil,
		"https://cork-none.invalid": nil,
		"not a url %":               nil,
	} {
		if got := apiAddrs(ctx, host); !slices.Equal(got, want) {
			t.Errorf("apiAddrs(%q) = %v, want %v", host, got, want)
		}
	}
}

// fakeAttach is an attach executor: each stream reads stdin into a
// channel; the first one breaks after its first line, as a stream cut by
// an API server restart would.
type fakeAttach struct {
	mu      sync.Mutex
	streams int
	lines   chan string
}

func (f *fakeAttach) Stream(remotecommand.StreamOptions) error { panic("not used") }

func (f *fakeAttach) StreamWithContext(ctx context.Context, o remotecommand.StreamOptions) error {
	f.mu.Lock()
	f.streams++
	n := f.streams
	f.mu.Unlock()
	if n == 1 {
		// The readiness line, so that the sidecar is ready.
		fmt.Fprintln(o.Stdout, `{"ready":true,"listen":"0.0.0.0:3128","ca":"x"}`)
	}
	sc := bufio.NewScanner(o.Stdin)
	for sc.Scan() {
		f.lines <- sc.Text()
		if n == 1 {
			return errors.New("websocket: close 1006 (abnormal closure)")
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestKubeReattach: when the attach stream breaks while the proxy runs,
// cork attaches again and sends the last token map on the new stream.
func TestKubeReattach(t *testing.T) {
	spec := kubeTestSpec(t)
	proxyPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: kubeProxyName, Namespace: "cork-abc123"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	s := &kubeSandbox{cfg: &Kubernetes{}, id: "abc123", client: fake.NewClientset(proxyPod)}
	var err error
	if s.objects, err = s.cfg.objects(spec, "", s.id, owner{}); err != nil {
		t.Fatal(err)
	}
	fa := &fakeAttach{lines: make(chan string, 16)}
	var progress []string
	var mu sync.Mutex
	spec.Progress = func(m string) { mu.Lock(); progress = append(progress, m); mu.Unlock() }
	side, err := s.attachProxyWith(spec, fa)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		side.closeStdin()
		s.stopAttach()
	}()
	if err := side.sendTokens(spec.Tokens); err != nil {
		t.Fatal(err)
	}
	first := <-fa.lines
	select {
	case again := <-fa.lines:
		if again != first || !strings.HasPrefix(first, "{") {
			t.Errorf("after the stream broke: %q, want the same token map %q again", again, first)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no second stream, or no token map on it, 10s after the first broke")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(progress, "\n"), "attaching again") {
		t.Errorf("progress %q: want it said", progress)
	}
}
