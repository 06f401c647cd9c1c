package kubeschema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestValidateSession(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/session.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(b); err != nil {
		t.Errorf("Validate(testdata/session.yaml) = %v, want nil", err)
	}
}

// pod is a valid Pod; the cases below break one field of it.
const pod = `apiVersion: v1
kind: Pod
metadata:
  name: agent
spec:
  containers:
    - name: agent
      image: busybox
      imagePullPolicy: Never
`

// service is a valid Service.
const service = `apiVersion: v1
kind: Service
metadata:
  name: cork-proxy
spec:
  ports:
    - port: 8080
      targetPort: 8080
`

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		manifests string
		want      []string // substrings of the error; nil: valid
	}{
		{name: "pod", manifests: pod},
		{name: "service", manifests: service},
		{name: "stream with leading separator", manifests: "---\n" + pod + "---\n" + service},
		{name: "json", manifests: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}`},
		{
			name:      "null optional field",
			manifests: strings.Replace(pod, "  name: agent\n", "  name: agent\n  creationTimestamp: null\n", 1),
		},
		{
			name:      "quantity as a number",
			manifests: pod + "      resources:\n        limits:\n          cpu: 1\n          memory: 64Mi\n",
		},
		{
			name:      "unknown field",
			manifests: strings.Replace(pod, "imagePullPolicy", "imagePullPolice", 1),
			want:      []string{"object 1 (Pod agent)", "spec.containers[0]", "imagePullPolice"},
		},
		{
			name:      "unknown top-level field",
			manifests: pod + "extra: 1\n",
			want:      []string{"object 1 (Pod agent)", "(top level)", "extra"},
		},
		{
			name:      "wrong type",
			manifests: strings.Replace(service, "port: 8080", `port: "x"`, 1),
			want:      []string{"object 1 (Service cork-proxy)", "spec.ports[0].port", "integer"},
		},
		{
			name:      "int-or-string takes neither",
			manifests: strings.Replace(service, "targetPort: 8080", "targetPort: 1.5", 1),
			want:      []string{"spec.ports[0].targetPort"},
		},
		{
			name:      "missing required field",
			manifests: strings.Replace(pod, "    - name: agent\n      image", "    - image", 1),
			want:      []string{"object 1 (Pod agent)", "spec.containers[0]", "'name'"},
		},
		{
			name:      "required field null",
			manifests: strings.Replace(pod, "    - name: agent\n", "    - name: null\n", 1),
			want:      []string{"spec.containers[0].name"},
		},
		{
			name:      "second object named",
			manifests: pod + "---\n" + strings.Replace(service, "port: 8080", `port: "x"`, 1),
			want:      []string{"object 2 (Service cork-proxy)"},
		},
		{
			name:      "kind with no schema",
			manifests: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
			want:      []string{"object 1 (Deployment web)", `apiVersion "apps/v1", kind "Deployment"`, ErrNoSchema.Error()},
		},
		{
			name:      "kind under the wrong group",
			manifests: strings.Replace(pod, "apiVersion: v1", "apiVersion: networking.k8s.io/v1", 1),
			want:      []string{"object 1 (Pod agent)", ErrNoSchema.Error()},
		},
		{
			// Same file name (networkpolicy-networking-v1.json), other group.
			name:      "group that shares the schema's file name",
			manifests: "apiVersion: networking.example.com/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  podSelector: {}\n",
			want:      []string{"object 1 (NetworkPolicy p)", `apiVersion "networking.example.com/v1"`, ErrNoSchema.Error()},
		},
		{
			name:      "missing kind",
			manifests: "apiVersion: v1\nmetadata:\n  name: x\n",
			want:      []string{"object 1", "missing 'kind' key"},
		},
		{
			name:      "missing apiVersion",
			manifests: "kind: Pod\nmetadata:\n  name: x\n",
			want:      []string{"object 1", "missing 'apiVersion' key"},
		},
		{
			name:      "duplicate key",
			manifests: strings.Replace(pod, "  name: agent\n", "  name: agent\n  name: again\n", 1),
			want:      []string{"object 1", `key "name" already set`},
		},
		{name: "empty", manifests: "", want: []string{"no objects"}},
		{name: "only separators and comments", manifests: "---\n# nothing\n---\n", want: []string{"no objects"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Validate([]byte(tc.manifests))
			if tc.want == nil {
				if err != nil {
					t.Errorf("Validate(%q) = %v, want nil", tc.manifests, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%q) = nil, want an error containing %q", tc.manifests, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate(%q) = %q, want it to contain %q", tc.manifests, err, w)
				}
			}
		})
	}
}

// TestSchemasSelfContained: no committed schema can make kubeconform load
// another document, as none holds a reference ($ref, $id, $schema); and
// each is strict at the top level. TestNoNetwork checks the whole.
func TestSchemasSelfContained(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("schemas/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 11 {
		t.Errorf("schemas/*.json: %d files, want 11 (one per kind in gen.Kinds)", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"$ref"`, `"$id"`, `"id"`, `"$schema"`} {
			if bytes.Contains(b, []byte(key+":")) {
				t.Errorf("%s contains %s: a schema must not load another document", f, key)
			}
		}
		var s map[string]any
		if err := json.Unmarshal(b, &s); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties = %v at the top level, want false", f, s["additionalProperties"])
		}
	}
}

// TestNoNetwork runs Validate in a child process whose HTTP_PROXY and
// HTTPS_PROXY (which kubeconform's HTTP loader honours) point at a listener
// that records each request line. Validating known, unknown and misfiled
// kinds must send nothing; the child's last request, to control.invalid,
// proves the trap would have seen one.
func TestNoNetwork(t *testing.T) {
	if os.Getenv("KUBESCHEMA_TEST_CHILD") == "1" {
		session, err := os.ReadFile("testdata/session.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{
			string(session),
			"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
			"apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
			"apiVersion: networking.example.com/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n",
		} {
			_ = Validate([]byte(m))
		}
		if resp, err := http.Get("http://control.invalid/"); err == nil {
			resp.Body.Close()
		}
		return
	}
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			seen = append(seen, strings.TrimSpace(line))
			mu.Unlock()
			c.Close()
		}
	}()
	proxy := "http://" + ln.Addr().String()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoNetwork$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KUBESCHEMA_TEST_CHILD=1",
		"HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "http_proxy="+proxy, "https_proxy="+proxy, "NO_PROXY=", "no_proxy=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	ln.Close()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"GET http://control.invalid/ HTTP/1.1"}; !slices.Equal(seen, want) {
		t.Errorf("requests through the proxy: %q, want only %q", seen, want)
	}
}

func TestValidateConcurrent(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Validate([]byte(pod)); err != nil {
				t.Errorf("Validate(pod) = %v, want nil", err)
			}
		}()
	}
	wg.Wait()
}

func TestField(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                                "(top level)",
		"/spec":                           "spec",
		"/spec/containers/0":              "spec.containers[0]",
		"/spec/containers/0/ports/1/name": "spec.containers[0].ports[1].name",
		"/metadata/labels/cork.sh~1role":  "metadata.labels.cork.sh/role",
	}
	for in, want := range tests {
		if got := field(in); got != want {
			t.Errorf("field(%q) = %q, want %q", in, got, want)
		}
	}
}
