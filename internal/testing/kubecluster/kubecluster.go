package kubecluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// Defaults and the machine-wide constants of the one cluster.
const (
	// BinDirEnv names the environment variable that overrides
	// DefaultBinDir.
	BinDirEnv = "CORK_K8S_BIN"
	// DefaultBinDir is where .ci/kube-build.sh installs the binaries.
	DefaultBinDir = "/opt/cork-k8s/v1.32.4/bin"
	// LockFile is flocked while a cluster runs; it holds the running
	// cluster's state directory, so that the next Start can clean up after
	// a killed run.
	LockFile = "/run/cork-kubecluster.lock"
	// NodeName is the one node's name.
	NodeName = "cork-node"
	// PauseImage is the sandbox image, built from ./pause at Start.
	PauseImage = "localhost/cork-kubecluster/pause:1"
	// DefaultMaxPods is the kubelet's pod limit unless Options.MaxPods
	// says otherwise: 20 concurrent sessions of up to 4 pods, and room.
	DefaultMaxPods = 120

	nodeIP              = "198.18.2.1" // on lo: the kubelet refuses a loopback node IP
	podCIDR             = "10.244.0.0/24"
	clusterCIDR         = "10.244.0.0/16"
	serviceCIDR         = "10.96.0.0/24"
	apiServiceIP        = "10.96.0.1"
	apiPort             = 6443
	etcdClientPort      = 22379
	etcdPeerPort        = 22380
	kubeProxyHealthPort = 10256
	routerHealthPort    = 20244
	bridgeName          = "cni0"
	cniBinDir           = "/usr/lib/cni"
	ruleComment         = "cork-kubecluster"
)

// binaries are what Require checks in the bin dir.
var binaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-router"}

// hostTools are what Require checks on PATH.
var hostTools = []string{"etcd", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "iptables-save", "iptables-restore", "ipset", "ip", "go"}

// Options configures Start. The zero value is a cluster in a fresh temporary
// directory, with binaries from BinDir's default and no progress output.
type Options struct {
	// StateDir holds everything of the cluster; it is removed by Close.
	// Empty means a new directory under os.TempDir().
	StateDir string
	// BinDir holds the Kubernetes binaries and kube-router. Empty means
	// $CORK_K8S_BIN, else DefaultBinDir.
	BinDir string
	// Log receives one progress line per step. Nil means none.
	Log io.Writer
	// MaxPods is the kubelet's pod limit; 0 means DefaultMaxPods.
	MaxPods int
}

// Cluster is a running single-node cluster. Its methods are safe for
// concurrent use; Close ends it.
type Cluster struct {
	opts  Options
	dir   string
	bin   string
	lock  *os.File
	pki   *pki
	api   *http.Client
	start time.Time

	mu     sync.Mutex
	procs  []*proc // in start order
	router *proc
	closed bool
}

// Require ends t (testenv.Missing) unless a cluster can start here: Linux,
// root, the binaries in the bin dir and the host tools on PATH.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		testenv.Missing(t, "kubecluster needs linux")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "kubecluster needs root")
	}
	bin := binDir("")
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			testenv.Missing(t, "kubecluster needs %s in %s (run .ci/kube-build.sh, or set %s)", b, bin, BinDirEnv)
		}
	}
	for _, tool := range hostTools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "kubecluster needs %s on PATH (run .ci/kube-build.sh)", tool)
		}
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "bridge")); err != nil {
		testenv.Missing(t, "kubecluster needs the CNI plugins in %s (run .ci/kube-build.sh)", cniBinDir)
	}
}

func binDir(dir string) string {
	if dir != "" {
		return dir
	}
	if env := os.Getenv(BinDirEnv); env != "" {
		return env
	}
	return DefaultBinDir
}

// Kubeconfig returns the path of an admin (system:masters) kubeconfig.
func (c *Cluster) Kubeconfig() string {
	return filepath.Join(c.dir, "kubeconfig", "admin.kubeconfig")
}

// NodeIP returns the node's address, the one the API server listens on.
func (c *Cluster) NodeIP() string { return nodeIP }

// StateDir returns the directory holding the cluster's files and logs.
func (c *Cluster) StateDir() string { return c.dir }

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Log == nil {
		return
	}
	fmt.Fprintf(c.opts.Log, "kubecluster: %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(c.start).Seconds())
}

// Start starts a cluster and returns when its node is Ready and the
// default ServiceAccount exists. It waits for the machine-wide lock while
// another cluster runs (ctx bounds the wait), and first removes what a
// killed run left. On error everything started is torn down, and the error
// names the component, with the last lines of its log.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.MaxPods == 0 {
		opts.MaxPods = DefaultMaxPods
	}
	c := &Cluster{opts: opts, bin: binDir(opts.BinDir), start: time.Now()}
	lock, err := lockMachine(ctx, LockFile)
	if err != nil {
		return nil, err
	}
	c.lock = lock
	c.logf("locked %s", LockFile)
	if prev, _ := io.ReadAll(lock); len(strings.TrimSpace(string(prev))) > 0 || leftovers() {
		c.logf("cleaning up after a previous run (%s)", strings.TrimSpace(string(prev)))
		if err := teardown(ctx, strings.TrimSpace(string(prev))); err != nil {
			c.logf("cleanup: %v", err)
		}
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if opts.StateDir == "" {
		if c.dir, err = os.MkdirTemp("", "cork-kubecluster-"); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
	} else {
		if c.dir, err = filepath.Abs(opts.StateDir); err != nil {
			return nil, fmt.Errorf("state dir %s: %w", opts.StateDir, err)
		}
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
	}
	if err := recordDir(lock, c.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create logs dir: %w", err)
	}
	pause := make(chan error, 1)
	go func() { pause <- c.buildPause(ctx) }()
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := c.startNode(ctx, pause); err != nil {
		return nil, err
	}
	c.logf("cluster ready")
	return c, nil
}

// leftovers reports whether a cluster's bridge is present: a run killed
// before it recorded its state dir still left rules and links to remove.
func leftovers() bool {
	_, err := os.Stat("/sys/class/net/" + bridgeName)
	return err == nil
}

func recordDir(lock *os.File, dir string) error {
	if err := lock.Truncate(0); err != nil {
		return fmt.Errorf("record state dir in %s: %w", LockFile, err)
	}
	if _, err := lock.WriteAt([]byte(dir+"\n"), 0); err != nil {
		return fmt.Errorf("record state dir in %s: %w", LockFile, err)
	}
	return nil
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	if _, err := run(ctx, "ip", "addr", "replace", nodeIP+"/32", "dev", "lo"); err != nil {
		return fmt.Errorf("node ip: %w", err)
	}
	if err := c.writePKI(); err != nil {
		return err
	}
	etcd, err := c.spawn("etcd", "etcd",
		"--name=cork",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdClientPort),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdClientPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeerPort),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeerPort),
		fmt.Sprintf("--initial-cluster=cork=http://127.0.0.1:%d", etcdPeerPort),
		"--listen-metrics-urls=",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	c.add(etcd)
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := c.waitFor(ctx, "etcd", 30*time.Second, httpOK(plain, fmt.Sprintf("http://127.0.0.1:%d/health", etcdClientPort)), etcd); err != nil {
		return err
	}
	pk := c.pki.path
	apiserver, err := c.spawn("kube-apiserver", filepath.Join(c.bin, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClientPort),
		"--advertise-address="+nodeIP,
		"--bind-address="+nodeIP,
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(c.dir, "apiserver"),
		"--tls-cert-file="+pk("apiserver", "crt"),
		"--tls-private-key-file="+pk("apiserver", "key"),
		"--client-ca-file="+pk("ca", "crt"),
		"--service-cluster-ip-range="+serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pk("sa", "pub"),
		"--service-account-signing-key-file="+pk("sa", "key"),
		"--authorization-mode=Node,RBAC",
		"--kubelet-client-certificate="+pk("apiserver-kubelet-client", "crt"),
		"--kubelet-client-key="+pk("apiserver-kubelet-client", "key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--event-ttl=30m",
	)
	if err != nil {
		return err
	}
	c.add(apiserver)
	if err := c.waitFor(ctx, "kube-apiserver", 60*time.Second, c.apiOK("/readyz"), apiserver); err != nil {
		return err
	}
	kcm, err := c.spawn("kube-controller-manager", filepath.Join(c.bin, "kube-controller-manager"),
		"--kubeconfig="+c.kubeconfigPath("controller-manager"),
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+pk("sa", "key"),
		"--root-ca-file="+pk("ca", "crt"),
		"--cluster-signing-cert-file="+pk("ca", "crt"),
		"--cluster-signing-key-file="+pk("ca", "key"),
		"--allocate-node-cidrs=true",
		"--cluster-cidr="+clusterCIDR,
		"--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+serviceCIDR,
		"--node-monitor-period=2s",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	c.add(kcm)
	sched, err := c.spawn("kube-scheduler", filepath.Join(c.bin, "kube-scheduler"),
		"--kubeconfig="+c.kubeconfigPath("scheduler"),
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	c.add(sched)
	return nil
}

func (c *Cluster) startNode(ctx context.Context, pause <-chan error) error {
	containerdConf := filepath.Join(c.dir, "containerd", "config.toml")
	if err := writeFile(containerdConf, c.containerdConfig(), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(c.dir, "cni", "net.d", "10-cork.conflist"), c.cniConfig(), 0o644); err != nil {
		return err
	}
	containerd, err := c.spawn("containerd", "containerd", "--config", containerdConf, "--log-level", "warn")
	if err != nil {
		return err
	}
	c.add(containerd)
	if err := c.waitFor(ctx, "containerd", 30*time.Second, func(ctx context.Context) error {
		_, err := run(ctx, "ctr", "--address", c.containerdSocket(), "version")
		return err
	}, containerd); err != nil {
		return err
	}
	select {
	case err := <-pause:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("build pause image: %w", ctx.Err())
	}
	if err := c.importPause(ctx); err != nil {
		return err
	}
	if err := forwardBridge(ctx); err != nil {
		return err
	}
	kubeletConf := filepath.Join(c.dir, "kubelet", "config.yaml")
	if err := writeFile(kubeletConf, c.kubeletConfig(), 0o644); err != nil {
		return err
	}
	kubelet, err := c.spawn("kubelet", filepath.Join(c.bin, "kubelet"),
		"--config="+kubeletConf,
		"--kubeconfig="+c.kubeconfigPath("kubelet"),
		"--root-dir="+filepath.Join(c.dir, "kubelet"),
		"--cert-dir="+filepath.Join(c.dir, "kubelet", "pki"),
		"--hostname-override="+NodeName,
		"--node-ip="+nodeIP,
	)
	if err != nil {
		return err
	}
	c.add(kubelet)
	proxyConf := filepath.Join(c.dir, "kube-proxy", "config.yaml")
	if err := writeFile(proxyConf, c.kubeProxyConfig(c.kubeconfigPath("kube-proxy")), 0o644); err != nil {
		return err
	}
	proxy, err := c.spawn("kube-proxy", filepath.Join(c.bin, "kube-proxy"), "--config="+proxyConf)
	if err != nil {
		return err
	}
	c.add(proxy)
	if err := c.waitFor(ctx, "node "+NodeName+" Ready", 90*time.Second, c.nodeReady, kubelet, containerd); err != nil {
		return err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := c.waitFor(ctx, "kube-proxy", 60*time.Second, httpOK(plain, fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeProxyHealthPort)), proxy); err != nil {
		return err
	}
	procs := c.snapshot()
	return c.waitFor(ctx, "default ServiceAccount", 60*time.Second, c.apiOK("/api/v1/namespaces/default/serviceaccounts/default"), procs[2:4]...)
}

// forwardBridge accepts the pod bridge's traffic in FORWARD and, when
// Docker runs, in DOCKER-USER: Docker's FORWARD policy is DROP.
func forwardBridge(ctx context.Context) error {
	chains := []string{"FORWARD"}
	if _, err := run(ctx, "iptables", "-w", "-n", "-L", "DOCKER-USER"); err == nil {
		chains = append(chains, "DOCKER-USER")
	}
	for _, chain := range chains {
		for _, dir := range []string{"-i", "-o"} {
			if _, err := run(ctx, "iptables", "-w", "-I", chain, "1", dir, bridgeName, "-m", "comment", "--comment", ruleComment, "-j", "ACCEPT"); err != nil {
				return fmt.Errorf("accept %s in %s: %w", bridgeName, chain, err)
			}
		}
	}
	return nil
}

func (c *Cluster) add(p *proc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, p)
}

func (c *Cluster) snapshot() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*proc(nil), c.procs...)
}

func (c *Cluster) kubeconfigPath(name string) string {
	return filepath.Join(c.dir, "kubeconfig", name+".kubeconfig")
}

// writePKI issues every certificate and kubeconfig: the API server's
// serving certificate, the service-account key pair, and one client
// identity per component, the kubelet client the API server uses for logs,
// attach and exec, and admin.
func (c *Cluster) writePKI() error {
	p, err := newPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	c.pki = p
	if err := p.server("apiserver",
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", NodeName},
		[]net.IP{net.ParseIP(apiServiceIP), net.ParseIP(nodeIP), net.ParseIP("127.0.0.1")}); err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	clients := []struct{ name, cn, org string }{
		{"admin", "cork-admin", "system:masters"},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		{"kubelet", "system:node:" + NodeName, "system:nodes"},
		{"kube-proxy", "system:kube-proxy", ""},
		// kube-router has no bootstrap role; a test cluster's admin will do.
		{"kube-router", "cork-kube-router", "system:masters"},
	}
	for _, cl := range clients {
		var orgs []string
		if cl.org != "" {
			orgs = []string{cl.org}
		}
		if err := p.client(cl.name, cl.cn, orgs...); err != nil {
			return err
		}
		if cl.name == "apiserver-kubelet-client" {
			continue
		}
		if _, err := c.writeKubeconfig(cl.name); err != nil {
			return err
		}
	}
	return c.newAPIClient()
}

func (c *Cluster) newAPIClient() error {
	caPEM, err := os.ReadFile(c.pki.path("ca", "crt"))
	if err != nil {
		return fmt.Errorf("read ca: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(c.pki.path("admin", "crt"), c.pki.path("admin", "key"))
	if err != nil {
		return fmt.Errorf("load admin cert: %w", err)
	}
	c.api = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		},
	}
	return nil
}

// apiGet GETs path from the API server as admin into v (if non-nil).
func (c *Cluster) apiGet(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.serverURL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if v != nil {
		return json.Unmarshal(body, v)
	}
	return nil
}

func (c *Cluster) apiOK(path string) func(context.Context) error {
	return func(ctx context.Context) error { return c.apiGet(ctx, path, nil) }
}

func (c *Cluster) nodeReady(ctx context.Context) error {
	var node struct {
		Status struct {
			Conditions []struct {
				Type, Status, Message string
			}
		}
	}
	if err := c.apiGet(ctx, "/api/v1/nodes/"+NodeName, &node); err != nil {
		return err
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			if cond.Status == "True" {
				return nil
			}
			return fmt.Errorf("node not ready: %s", cond.Message)
		}
	}
	return errors.New("node has no Ready condition yet")
}

func httpOK(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// buildPause compiles ./pause (static) into the state dir.
func (c *Cluster) buildPause(ctx context.Context) error {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("build pause image: cannot locate the kubecluster sources")
	}
	src := filepath.Join(filepath.Dir(self), "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(c.dir, "pause", "pause"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build pause image from %s: %w: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *Cluster) importPause(ctx context.Context) error {
	return c.ImportImage(ctx, PauseImage, Image{
		Files:      map[string]File{"/pause": {Source: filepath.Join(c.dir, "pause", "pause"), Mode: 0o755}},
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
	})
}

// Close stops every component (SIGTERM, then SIGKILL), removes the pods'
// containers, mounts and network namespaces, the cluster's iptables
// chains and rules, ipsets, the bridge, the lo address and the state
// directory, then releases the machine lock. Calling it again is a no-op.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	procs := append([]*proc(nil), c.procs...)
	if c.router != nil {
		procs = append(procs, c.router)
	}
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := teardown(ctx, c.dir)
	if c.lock != nil {
		if err == nil {
			_ = c.lock.Truncate(0)
		}
		c.lock.Close() // releases the flock
	}
	c.logf("closed")
	if err != nil {
		return fmt.Errorf("tear down cluster: %w", err)
	}
	return nil
}
