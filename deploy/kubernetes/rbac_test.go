// Package kubernetes holds no code: its test checks rbac.yaml, the
// ClusterRole users of `cork run --backend kubernetes` are bound to.
package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/cork-sh/cork/internal/testing/kubeschema"
)

// grant is one verb on one resource of one API group.
type grant struct{ group, resource, verb string }

// want is everything cork-launcher may do; rbac.yaml's header says why.
var want = grants(
	"", "namespaces", "create get list delete",
	"", "configmaps", "create get",
	"", "services", "create get",
	"", "pods", "create get delete deletecollection",
	"", "pods/log", "get",
	"", "pods/attach", "create get",
	"networking.k8s.io", "networkpolicies", "create get",
)

func grants(triples ...string) []grant {
	var g []grant
	for i := 0; i < len(triples); i += 3 {
		for _, v := range strings.Fields(triples[i+2]) {
			g = append(g, grant{triples[i], triples[i+1], v})
		}
	}
	return sortGrants(g)
}

func sortGrants(g []grant) []grant {
	slices.SortFunc(g, func(a, b grant) int {
		return strings.Compare(a.group+"\x00"+a.resource+"\x00"+a.verb, b.group+"\x00"+b.resource+"\x00"+b.verb)
	})
	return slices.Compact(g)
}

func TestRBAC(t *testing.T) {
	b, err := os.ReadFile("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeschema.Validate(b); err != nil {
		t.Fatalf("kubeschema.Validate(rbac.yaml) = %v, want nil", err)
	}
	docs := documents(t, b)
	if len(docs) != 1 {
		t.Fatalf("rbac.yaml: %d objects, want 1 (the ClusterRole; the binding is a commented example)", len(docs))
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(docs[0], &role); err != nil {
		t.Fatalf("rbac.yaml: %v", err)
	}
	if role.Kind != "ClusterRole" || role.Name != "cork-launcher" {
		t.Fatalf("rbac.yaml: %s %q, want ClusterRole \"cork-launcher\"", role.Kind, role.Name)
	}
	if role.AggregationRule != nil {
		t.Errorf("rbac.yaml: aggregationRule set: it would add other roles' rules")
	}
	var got []grant
	for i, r := range role.Rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("rules[%d]: nonResourceURLs %q, resourceNames %q, want neither", i, r.NonResourceURLs, r.ResourceNames)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" || strings.Contains(res, "*") {
						t.Errorf("rules[%d]: wildcard in %q %q %q", i, g, res, v)
					}
					if res == "secrets" {
						t.Errorf("rules[%d]: %s on secrets: cork never touches a Secret", i, v)
					}
					got = append(got, grant{g, res, v})
				}
			}
		}
	}
	got = sortGrants(got)
	if !slices.Equal(got, want) {
		t.Errorf("rbac.yaml grants\n%v\nwant exactly\n%v", got, want)
	}
}

// TestRBACBindingExample checks the commented ClusterRoleBinding at the end
// of rbac.yaml, as a user would get it by uncommenting.
func TestRBACBindingExample(t *testing.T) {
	b, err := os.ReadFile("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example := uncommentExample(t, b)
	if err := kubeschema.Validate(example); err != nil {
		t.Fatalf("kubeschema.Validate(rbac.yaml's example) = %v, want nil", err)
	}
	var binding rbacv1.ClusterRoleBinding
	if err := yaml.UnmarshalStrict(documents(t, example)[0], &binding); err != nil {
		t.Fatalf("rbac.yaml's example: %v", err)
	}
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cork-launcher"}
	if binding.Kind != "ClusterRoleBinding" || binding.RoleRef != wantRef {
		t.Errorf("rbac.yaml's example: %s with roleRef %+v, want ClusterRoleBinding with roleRef %+v", binding.Kind, binding.RoleRef, wantRef)
	}
	wantSubjects := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "cork-user"}}
	if !slices.Equal(binding.Subjects, wantSubjects) {
		t.Errorf("rbac.yaml's example: subjects %+v, want %+v", binding.Subjects, wantSubjects)
	}
}

// documents splits a YAML stream into its non-empty documents.
func documents(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			t.Fatal(err)
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
}

// uncommentExample returns the lines after the "# ---" line with their
// "# " (or "#") prefix removed.
func uncommentExample(t *testing.T, b []byte) []byte {
	t.Helper()
	_, tail, ok := bytes.Cut(b, []byte("\n# ---\n"))
	if !ok {
		t.Fatal("rbac.yaml: no commented example after a \"# ---\" line")
	}
	var out bytes.Buffer
	for line := range strings.Lines(string(tail)) {
		rest, ok := strings.CutPrefix(line, "#")
		if !ok {
			t.Fatalf("rbac.yaml: example line %q is not commented", line)
		}
		out.WriteString(strings.TrimPrefix(rest, " "))
	}
	return out.Bytes()
}
