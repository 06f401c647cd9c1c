//go:build !nokube

package launch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// Where an agent pod deployed from manifests finds the proxy and the CA.
const (
	// kubeServiceProxy is the proxy's Service address as the kubelet
	// gives it to a pod with service links (the Service is cork-proxy).
	kubeServiceProxy = "$(CORK_PROXY_SERVICE_HOST):$(CORK_PROXY_SERVICE_PORT)"
	// KubeTrustName is the ConfigMap holding the proxy's CA for an agent
	// deployed from manifests (KubeTrust makes it).
	KubeTrustName = "cork-trust"
	kubeTrustDir  = "/cork-trust"
)

// KubeManifests returns, as a YAML stream, the objects of a kubernetes
// session for people who deploy with GitOps: those `cork run --backend
// kubernetes` creates, in namespace (empty: the prefix and a fresh id),
// but for three differences a deployment without cork needs. No token is
// in them: the proxy reads its token stream on stdin (docs/KUBERNETES.md,
// "Manifests"). The agent reaches the proxy through its Service's
// variables; it trusts the CA of the ConfigMap KubeTrustName, which
// KubeTrust makes from the proxy's readiness line (the kubelet holds the
// agent until it exists); the probe and canary pods, and the proxy's
// client credential, are left out (the NetworkPolicy is all). tokens,
// when not nil, are refused anywhere in spec's command or variables.
func KubeManifests(spec *Spec, k *Kubernetes, namespace string, tokens resolve.Tokens) ([]byte, error) {
	if len(spec.Command) == 0 {
		return nil, setupErrorf("no command to run")
	}
	if tokens != nil {
		if err := refuseTokens(spec, tokens, nil); err != nil {
			return nil, err
		}
	}
	id := newSessionID()
	o, err := k.objects(spec, namespace, id, owner{})
	if err != nil {
		return nil, err
	}
	// Labelled by namespace: `cork manifests trust`, which knows only
	// the namespace, labels its ConfigMap the same.
	o.Session = o.Namespace
	files, err := planFiles(spec)
	if err != nil {
		return nil, err
	}
	s := &session{spec: spec}
	env := s.sandboxEnv(layout{home: SandboxHome}, "http://"+kubeServiceProxy, kubeTrustDir+"/bundle.pem", kubeTrustDir+"/ca.pem")
	agent := o.agentPod(env, files, kubeServiceProxy, nil)
	yes := true
	agent.Spec.EnableServiceLinks = &yes
	agent.Spec.Volumes = append(agent.Spec.Volumes, corev1.Volume{Name: "trust", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: KubeTrustName}}}})
	c := &agent.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "trust", MountPath: kubeTrustDir, ReadOnly: true})

	objs := []any{o.namespace(), o.proxyConfig()}
	for _, np := range o.networkPolicies() {
		objs = append(objs, np)
	}
	objs = append(objs, o.service(), o.proxyPod(""), o.homeConfig(files), agent)
	return yamlStream(objs...)
}

// planFiles are the plan's dummy files as the home ConfigMap holds them.
func planFiles(spec *Spec) ([]homeFile, error) {
	dir, err := os.MkdirTemp("", "cork-manifests-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := WriteFiles(dir, spec.Plan.Files); err != nil {
		return nil, err
	}
	return readHome(dir)
}

// KubeTrust reads the proxy pod's output (its log: JSON lines and the
// readiness line, settings.Ready) from r and returns the ConfigMap
// KubeTrustName for namespace, as YAML: the proxy's CA certificate and a
// bundle of the system roots with it, for an agent deployed from
// KubeManifests.
func KubeTrust(namespace string, r io.Reader) ([]byte, error) {
	rd, err := settings.ReadReady(r)
	if err != nil {
		return nil, fmt.Errorf("the proxy's output: %w (is it the log of a cork proxy pod that has its tokens?)", err)
	}
	if rd.CA == "" {
		return nil, fmt.Errorf("the proxy's readiness line has no CA certificate: is its image a cork built from this repository?")
	}
	o := &kubeObjects{Session: namespace, Namespace: namespace}
	cm := &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: o.meta(KubeTrustName, kubeRoleSandbox),
		Data:       map[string]string{"ca.pem": rd.CA, "bundle.pem": string(CABundle([]byte(rd.CA)))},
	}
	return yamlStream(cm)
}

// yamlStream renders objects as a YAML stream, without the fields only
// the API server fills (status, creationTimestamp).
func yamlStream(objs ...any) ([]byte, error) {
	var b bytes.Buffer
	for _, obj := range objs {
		data, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		delete(m, "status")
		if meta, ok := m["metadata"].(map[string]any); ok {
			delete(meta, "creationTimestamp")
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}
