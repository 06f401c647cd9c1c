package kubecluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// writeKubeconfig writes a kubeconfig for the client certificate name,
// pointing at the API server, and returns its path.
func (c *Cluster) writeKubeconfig(name string) (string, error) {
	path := filepath.Join(c.dir, "kubeconfig", name+".kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: cork
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: cork
  context:
    cluster: cork
    user: %s
current-context: cork
`, c.serverURL(), c.pki.path("ca", "crt"), name, c.pki.path(name, "crt"), c.pki.path(name, "key"), name)
	return path, writeFile(path, body, 0o600)
}

func (c *Cluster) serverURL() string {
	return "https://" + nodeIP + ":" + strconv.Itoa(apiPort)
}

func writeFile(path, body string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// containerdConfig is the cluster's own containerd: its root, state,
// socket, runc root and network namespaces all under the state directory,
// never Docker's containerd or /run/containerd's socket.
func (c *Cluster) containerdConfig() string {
	d := filepath.Join(c.dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # The sandbox has no CAP_SYS_RESOURCE: without this runc fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, filepath.Join(d, "root"), filepath.Join(d, "state"), c.containerdSocket(),
		filepath.Join(d, "opt"), PauseImage, filepath.Join(c.dir, "runc"),
		cniBinDir, filepath.Join(c.dir, "cni", "net.d"))
}

func (c *Cluster) containerdSocket() string {
	return filepath.Join(c.dir, "containerd", "containerd.sock")
}

// cniConfig is the bridge network: pods on cni0 in podCIDR, masqueraded
// when they leave it, host ports through portmap.
func (c *Cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "cork",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridgeName, podCIDR, filepath.Join(c.dir, "cni", "ipam"))
}

// kubeletConfig tunes the kubelet for a test node: cgroupfs, no swap
// check, anonymous AlwaysAllow (the API server's kubelet client
// certificate is still presented), no eviction or image GC worth the name
// (imported images cannot be pulled back), short status intervals.
func (c *Cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://%s
podLogsDirectory: %s
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failSwapOn: false
localStorageCapacityIsolation: false
maxPods: %d
podPidsLimit: -1
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
evictionPressureTransitionPeriod: 5s
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 10s
syncFrequency: 5s
fileCheckFrequency: 5s
httpCheckFrequency: 5s
runtimeRequestTimeout: 2m
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
makeIPTablesUtilChains: true
`, nodeIP, c.containerdSocket(), filepath.Join(c.dir, "pod-logs"), c.pki.path("ca", "crt"), c.opts.MaxPods)
}

// kubeProxyConfig is iptables mode; NodePorts only on the node IP (no
// localhost NodePorts, so route_localnet stays off); the host's conntrack
// sysctls are left as they are.
func (c *Cluster) kubeProxyConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
bindAddress: %s
nodePortAddresses: [%s/32]
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  syncPeriod: 10s
  minSyncPeriod: 0s
`, kubeconfig, NodeName, clusterCIDR, nodeIP, nodeIP, kubeProxyHealthPort)
}
