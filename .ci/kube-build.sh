#!/usr/bin/env bash
# Installs what internal/testing/kubecluster needs to run a real single-node
# Kubernetes v1.32.4 (its package doc says how): from Debian, etcd,
# containerd, runc, the CNI plugins (bridge, host-local, portmap), iptables
# (kube-proxy, kube-router) and ipset (kube-router); from Go modules, the
# control plane and node binaries (wrapper module .ci/k8s) and kube-router
# (NetworkPolicy enforcement; test infrastructure only, never shipped).
# Neither kube-proxy v1.32 (netlink) nor kube-router runs the conntrack
# tool. Idempotent: a stamp file records what was built. Cold, on 2 cores:
# ≈ 7 min for Kubernetes (kube-apiserver ≈ 5) and up to 7 min for
# kube-router with its module downloads; warm build cache ≈ 80 s; stamp up
# to date ≈ 1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

k8s_version=v1.32.4
router_version=v2.1.0
bin="${CORK_K8S_BIN:-/opt/cork-k8s/$k8s_version/bin}"
stamp="$bin/.stamp"
want_stamp="kubernetes=$k8s_version kube-router=$router_version go=$(go env GOVERSION) mod=$(sha256sum .ci/k8s/go.sum | cut -c1-16)"
start=$SECONDS

say() { printf 'kube-build: %s (%ds)\n' "$*" "$((SECONDS - start))"; }

need=()
for pkg in etcd-server containerd containernetworking-plugins runc iptables ipset; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
	say "apt-get install ${need[*]}"
	apt-get update -qq
	# policy-rc.d: no service may start (there is no init system here, and
	# the cluster runs its own etcd and containerd).
	rc=/usr/sbin/policy-rc.d
	had_rc=0; [ -e "$rc" ] && had_rc=1
	if [ "$had_rc" = 0 ]; then printf '#!/bin/sh\nexit 101\n' > "$rc"; chmod +x "$rc"; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	[ "$had_rc" = 1 ] || rm -f "$rc"
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
	say "binaries up to date in $bin"
	exit 0
fi

mkdir -p "$bin"
rm -f "$stamp"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
	say "go build $cmd $k8s_version"
	(cd .ci/k8s && CGO_ENABLED=0 go build -o "$bin/$cmd" \
		-ldflags "-X k8s.io/component-base/version.gitVersion=$k8s_version" \
		"k8s.io/kubernetes/cmd/$cmd")
done
say "go install kube-router $router_version"
GOBIN="$bin" CGO_ENABLED=0 go install \
	"github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$router_version"
echo "$want_stamp" > "$stamp"
say "built into $bin"
