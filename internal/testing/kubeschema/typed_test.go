package kubeschema

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestTypedObjects: objects built with k8s.io/api (a newer release than the
// schemas' API server) and printed with sigs.k8s.io/yaml, as cork prints
// them, validate. Zero values the typed structs always print
// (creationTimestamp: null, status: {}) must not trip the strict schemas.
func TestTypedObjects(t *testing.T) {
	t.Parallel()
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "cork-1", Labels: map[string]string{"cork": "1"}}
	}
	no, yes := false, true
	uid := int64(65532)
	objs := []any{
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "cork-1", Labels: map[string]string{"cork": "1"}}},
		&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: meta("policy"), Data: map[string]string{"policy.yaml": "routes: []\n"}},
		&corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: meta("cork-proxy"),
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: &no,
				RestartPolicy:                corev1.RestartPolicyNever,
				SecurityContext:              &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid},
				Containers: []corev1.Container{{
					Name:            "cork",
					Image:           "cork:dev",
					ImagePullPolicy: corev1.PullNever,
					Stdin:           true,
					Env:             []corev1.EnvVar{{Name: "CORK_TOKENS_FILE", Value: "-"}},
					Ports:           []corev1.ContainerPort{{Name: "proxy", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
						HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("proxy")},
					}},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
					},
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: &no,
						ReadOnlyRootFilesystem:   &yes,
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
				}},
			},
		},
		&corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta("cork-proxy"),
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"cork.sh/role": "proxy"},
				Ports:    []corev1.ServicePort{{Name: "proxy", Port: 8080, TargetPort: intstr.FromInt32(8080)}},
			},
		},
		&networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: meta("agent"),
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"cork.sh/role": "agent"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"cork.sh/role": "proxy"}}}},
				}},
			},
		},
	}
	var stream bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		stream.WriteString("---\n")
		stream.Write(b)
	}
	if err := Validate(stream.Bytes()); err != nil {
		t.Errorf("Validate(typed objects) = %v, want nil\n%s", err, stream.String())
	}
}
