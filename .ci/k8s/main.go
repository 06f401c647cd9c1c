// Command k8s is never run: this module only pins k8s.io/kubernetes v1.32.4
// and its staging modules (see the replace directives in go.mod) so that
// .ci/kube-build.sh can build the control plane and node binaries the
// kubecluster test package starts (internal/testing/kubecluster).
package main

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {}
