package kubecluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
)

// logWriter turns progress lines into t.Log lines.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const netcheckImage = "cork-kubecluster-test/netcheck:1"

// TestCluster starts a real cluster, runs pods from an imported image,
// reads their logs, attaches to one, proves NetworkPolicy is enforced only
// while kube-router runs, and checks Close leaves nothing behind.
func TestCluster(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	netcheck := filepath.Join(t.TempDir(), "netcheck")
	build := exec.CommandContext(ctx, "go", "build", "-o", netcheck, ".")
	build.Dir = filepath.Join("testdata", "netcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build netcheck: %v\n%s", err, out)
	}

	begin := time.Now()
	c, err := Start(ctx, Options{Log: logWriter{t}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("TIMING cold Start: %v", time.Since(begin).Round(time.Millisecond))
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	if err := c.ImportImage(ctx, netcheckImage, Image{
		Files:      map[string]File{"/netcheck": {Source: netcheck, Mode: 0o755}},
		Entrypoint: []string{"/netcheck"},
		User:       "65532:65532",
	}); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}

	podStart := time.Now()
	echo := createPod(ctx, t, cs, "echo", map[string]string{"app": "echo"}, []string{"echo"}, true)
	echo = waitRunning(ctx, t, cs, echo.Name)
	t.Logf("TIMING first pod Running: %v after Start", time.Since(podStart).Round(time.Millisecond))

	t.Run("logs", func(t *testing.T) {
		waitLog(ctx, t, cs, "echo", "hello from kubecluster")
	})
	t.Run("attach", func(t *testing.T) {
		attach(ctx, t, cfg, cs, "echo", "ping\n")
		waitLog(ctx, t, cs, "echo", "got: ping")
	})

	server := createPod(ctx, t, cs, "server", map[string]string{"app": "server"}, []string{"serve", ":8080"}, false)
	client := createPod(ctx, t, cs, "client", map[string]string{"app": "client"}, []string{"serve", ":8080"}, false)
	server = waitRunning(ctx, t, cs, server.Name)
	client = waitRunning(ctx, t, cs, client.Name)
	target := server.Status.PodIP + ":8080"
	dial := func() string { return dialFrom(ctx, t, client.Status.PodIP, target) }

	if got := dial(); got != "ok" {
		t.Fatalf("dial %s from client before any policy = %q, want ok", target, got)
	}
	// Services work (kube-proxy), the API server's included.
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "server"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service: %v", err)
	}
	services := []string{svc.Spec.ClusterIP + ":80", apiServiceIP + ":443"}
	for _, addr := range services {
		waitDial(ctx, t, client.Status.PodIP, addr, "ok")
	}
	denyEgress(ctx, t, cs, "client")
	t.Run("policy not enforced without kube-router", func(t *testing.T) {
		time.Sleep(2 * time.Second) // room for a wrongly enforcing CNI to act
		if got := dial(); got != "ok" {
			t.Errorf("dial %s with deny-all egress, no kube-router = %q, want ok", target, got)
		}
	})
	t.Run("policy enforced with kube-router", func(t *testing.T) {
		begin := time.Now()
		if err := c.StartNetworkPolicy(ctx); err != nil {
			t.Fatalf("StartNetworkPolicy: %v", err)
		}
		t.Logf("TIMING StartNetworkPolicy: %v", time.Since(begin).Round(time.Millisecond))
		if got := dial(); !strings.HasPrefix(got, "fail") {
			t.Errorf("dial %s with deny-all egress and kube-router = %q, want fail", target, got)
		}
		for _, addr := range services {
			if got := dialFrom(ctx, t, client.Status.PodIP, addr); !strings.HasPrefix(got, "fail") {
				t.Errorf("dial Service %s with deny-all egress and kube-router = %q, want fail", addr, got)
			}
		}
	})
	t.Run("policy not enforced after StopNetworkPolicy", func(t *testing.T) {
		if err := c.StopNetworkPolicy(ctx); err != nil {
			t.Fatalf("StopNetworkPolicy: %v", err)
		}
		if got := dial(); got != "ok" {
			t.Errorf("dial %s after StopNetworkPolicy = %q, want ok", target, got)
		}
	})

	dir := c.StateDir()
	closed = true
	begin = time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	t.Logf("TIMING Close: %v", time.Since(begin).Round(time.Millisecond))
	checkGone(t, dir)
}

func createPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, labels map[string]string, args []string, stdin bool) *corev1.Pod {
	t.Helper()
	zero := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  new(false),
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           netcheckImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
				Stdin:           stdin,
			}},
		},
	}
	got, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	return got
}

func waitRunning(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pod, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
			return pod
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not Running: %v, status %+v", name, err, pod.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitLog(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := cs.CoreV1().Pods("default").GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err == nil && bytes.Contains(b, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s = %q (err %v), want a line %q", pod, b, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// attach writes input to the pod's stdin through the API server and the
// kubelet, as cork's kubernetes backend hands tokens to its proxy pod.
func attach(ctx context.Context, t *testing.T, cfg *rest.Config, cs kubernetes.Interface, pod, input string) {
	t.Helper()
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name(pod).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: "main", Stdin: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, req.URL())
	if err != nil {
		t.Fatalf("attach %s: %v", pod, err)
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	// The stream stays open (stdinOnce is false) until the context ends.
	err = exec.StreamWithContext(actx, remotecommand.StreamOptions{Stdin: io.MultiReader(strings.NewReader(input), ctxReader{actx})})
	if err != nil && actx.Err() == nil {
		t.Fatalf("attach %s: %v", pod, err)
	}
}

// ctxReader blocks until ctx ends, then reports EOF.
type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, io.EOF
}

// dialFrom asks the netcheck server in the pod at podIP to dial target.
func dialFrom(ctx context.Context, t *testing.T, podIP, target string) string {
	t.Helper()
	url := fmt.Sprintf("http://%s:8080/dial?addr=%s", podIP, target)
	var last string
	for range 20 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			last = err.Error()
			time.Sleep(250 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.TrimSpace(string(b))
	}
	t.Fatalf("GET %s: %s", url, last)
	return ""
}

// waitDial waits until a dial from the pod at podIP to target reports want
// (a new Service takes a kube-proxy sync to work).
func waitDial(ctx context.Context, t *testing.T, podIP, target, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := dialFrom(ctx, t, podIP, target)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s from %s = %q, want %q", target, podIP, got, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func denyEgress(ctx context.Context, t *testing.T, cs kubernetes.Interface, app string) {
	t.Helper()
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-egress-" + app},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}
	if _, err := cs.NetworkingV1().NetworkPolicies("default").Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create NetworkPolicy: %v", err)
	}
}

// checkGone fails t for anything of the cluster still on the machine.
func checkGone(t *testing.T, dir string) {
	t.Helper()
	// Under the machine's lock: another package's cluster (they run at
	// the same time) must not start while the machine is inspected.
	lock, err := lockMachine(t.Context(), LockFile)
	if err != nil {
		t.Fatalf("lock the machine to check it: %v", err)
	}
	defer lock.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still exists (stat: %v)", dir, err)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			t.Errorf("process %s still runs: %q", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
	if out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output(); bytes.Contains(out, []byte(nodeIP)) {
		t.Errorf("lo still has %s: %s", nodeIP, out)
	}
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		t.Errorf("bridge %s still exists", bridgeName)
	}
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Errorf("iptables-save -t %s: %v", table, err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") || strings.Contains(line, ruleComment) {
				t.Errorf("table %s still has %q", table, line)
			}
		}
	}
	if out, err := exec.Command("ipset", "list", "-n").Output(); err == nil && bytes.Contains(out, []byte("KUBE-")) {
		t.Errorf("ipsets left: %s", out)
	}
}

// helperEnv makes the test binary a cluster owner that never closes: the
// killed run TestStartAfterKilledRun cleans up after.
const helperEnv = "KUBECLUSTER_TEST_HELPER_STATE_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		if _, err := Start(context.Background(), Options{StateDir: dir}); err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Println("started")
		select {}
	}
	os.Exit(m.Run())
}

// TestStartAfterKilledRun kills a process that owns a running cluster
// (SIGKILL: no Close) and checks that the next Start cleans up after it
// and succeeds, and that its Close removes both runs' leftovers.
func TestStartAfterKilledRun(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	killedDir := filepath.Join(t.TempDir(), "killed")
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+killedDir)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "started" {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatalf("helper: %q, want started", line)
	}
	_ = helper.Process.Kill()
	_ = helper.Wait()

	c, err := Start(ctx, Options{Log: logWriter{t}})
	if err != nil {
		t.Fatalf("Start after a killed run: %v", err)
	}
	if _, err := os.Stat(killedDir); !os.IsNotExist(err) {
		t.Errorf("killed run's state dir %s still exists after Start (stat: %v)", killedDir, err)
	}
	dir := c.StateDir()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	checkGone(t, dir)
	checkGone(t, killedDir)
}
