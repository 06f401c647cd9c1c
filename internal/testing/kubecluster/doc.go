// Package kubecluster starts a real single-node Kubernetes v1.32.4 for
// tests and the benchmark command: Debian's etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, a containerd of its own,
// kubelet, kube-proxy (iptables mode) and the bridge CNI; optionally
// kube-router enforcing NetworkPolicy. Images are built in Go (FROM
// scratch) and imported with ctr: nothing is ever pulled.
//
// It is test infrastructure: only tests and test-only commands import it
// (docs/DESIGN.md, the layout table). The binaries come from
// .ci/kube-build.sh.
//
// Invariants: one cluster per machine (fixed ports, node IP 198.18.2.1 on
// lo), serialised by an exclusive flock on LockFile; every file, mount and
// process of a cluster lives under or names its state directory, so Close,
// or the next Start after a killed run, finds and removes all of it.
// Firewall rules are removed by owner (chains KUBE-*, CNI-*, rules that jump
// to them or carry the comment "cork-kubecluster"); nobody else's rules
// (Docker's) are touched.
package kubecluster
