package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/kubeschema"
)

// TestManifests: `cork manifests` prints a kubernetes session's objects,
// valid against the API server's schemas (offline), without the token
// the host holds; its bad input is one line and exit 2.
func TestManifests(t *testing.T) {
	const real = "sk-proj-REALmanifestsTOKEN0123456789"
	env := map[string]string{"HOME": t.TempDir(), "EXAMPLE_TOKEN": real}
	args := []string{"manifests", "--namespace", "agent-1", "--inject", "api.example.test=EXAMPLE_TOKEN",
		"--image", "agent:1", "--", "agent", "--go"}
	code, stdout, stderr := runCork(t, env, args...)
	if code != 0 {
		t.Fatalf("cork manifests: exit %d: %s", code, stderr)
	}
	if err := kubeschema.Validate([]byte(stdout)); err != nil {
		t.Errorf("the manifests do not validate: %v", err)
	}
	if strings.Contains(stdout, real) {
		t.Error("the manifests hold the host's token")
	}
	for _, w := range []string{"name: agent-1", "kind: NetworkPolicy", "name: cork-trust", "$(CORK_PROXY_SERVICE_HOST)"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("the manifests lack %q", w)
		}
	}

	bad := []struct {
		name string
		args []string
		want string
	}{
		{"other backend", []string{"manifests", "--backend", "docker", "--image", "a", "--", "x"}, "--backend docker"},
		{"no command", []string{"manifests", "--image", "a", "--inject", "api.example.test=EXAMPLE_TOKEN"}, "no command"},
		{"no image", []string{"manifests", "--inject", "api.example.test=EXAMPLE_TOKEN", "--", "x"}, "--image"},
		{"bad namespace", []string{"manifests", "--namespace", "Agent_1", "--image", "a", "--inject", "api.example.test=EXAMPLE_TOKEN", "--", "x"}, "--namespace"},
		{"system namespace", []string{"manifests", "--namespace", "kube-system", "--image", "a", "--inject", "api.example.test=EXAMPLE_TOKEN", "--", "x"}, "the cluster's own"},
		{"default namespace", []string{"manifests", "--namespace", "default", "--image", "a", "--inject", "api.example.test=EXAMPLE_TOKEN", "--", "x"}, "the cluster's own"},
		{"kubeconfig", []string{"manifests", "--kubeconfig", "k", "--image", "a", "--inject", "api.example.test=EXAMPLE_TOKEN", "--", "x"}, "--kubeconfig"},
		{"token in env", []string{"manifests", "--env", "LEAK=" + real, "--image", "a", "--inject", "api.example.test=EXAMPLE_TOKEN", "--", "x"}, "--env"},
		{"trust without namespace", []string{"manifests", "trust"}, "--namespace"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCork(t, env, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, real) {
				t.Errorf("exit %d, stderr %q: want 2 and one line naming %q, without the token", code, stderr, tc.want)
			}
		})
	}
}

// TestManifestsTrust: `cork manifests trust` makes the agent's CA
// ConfigMap from the proxy's log, and refuses a log without a readiness
// line.
func TestManifestsTrust(t *testing.T) {
	const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	log := `{"level":"info","msg":"tokens updated"}` + "\n" + `{"ready":true,"listen":"0.0.0.0:3128","ca":` + strconv.Quote(ca) + "}\n"
	var stdout, stderr strings.Builder
	err := run(t.Context(), []string{"manifests", "trust", "--namespace", "agent-1"}, nil, strings.NewReader(log), &stdout, &stderr)
	if err != nil {
		t.Fatalf("cork manifests trust: %v: %s", err, stderr.String())
	}
	if err := kubeschema.Validate([]byte(stdout.String())); err != nil || !strings.Contains(stdout.String(), "name: cork-trust") {
		t.Errorf("trust ConfigMap %q: %v", stdout.String(), err)
	}
	stderr.Reset()
	err = run(t.Context(), []string{"manifests", "trust", "--namespace", "agent-1"}, nil, strings.NewReader("{}\n"), &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 2 || !strings.Contains(stderr.String(), "readiness") {
		t.Errorf("a log without a readiness line: exit %d, %q", code, stderr.String())
	}
}

// TestGCBackends: cork gc's flags are checked per backend, and an
// unreachable cluster is one line naming it.
func TestGCBackends(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n"+
		"contexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: x}\ncurrent-context: c\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown backend", []string{"gc", "--backend", "vmware"}, 2, "--backend"},
		{"kubeconfig for docker", []string{"gc", "--kubeconfig", kc}, 2, "--kubeconfig"},
		{"unreachable cluster", []string{"gc", "--backend", "kubernetes", "--kubeconfig", kc}, 1, "127.0.0.1:1"},
		{"missing kubeconfig", []string{"gc", "--backend", "kubernetes", "--kubeconfig", filepath.Join(dir, "none")}, 1, "kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCork(t, map[string]string{"HOME": dir}, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q: want %d and one line naming %q", code, stderr, tc.code, tc.want)
			}
		})
	}
}
