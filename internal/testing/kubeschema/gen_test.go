package kubeschema

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// kubernetesModule must match gen.KubernetesModule.
const kubernetesModule = "k8s.io/kubernetes@v1.32.4"

// TestSchemasUpToDate regenerates the schemas from the Kubernetes module
// and compares them with the committed ones.
func TestSchemasUpToDate(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "needs the go tool on PATH")
	}
	// GOPROXY=off: this test reads the module cache, it never downloads.
	cmd := exec.Command(goTool, "mod", "download", "-json", kubernetesModule)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off", "GOFLAGS=")
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		testenv.Missing(t, "needs %s in the module cache (go mod download %s): %v %s", kubernetesModule, kubernetesModule, err, mod.Error)
	}
	dir := t.TempDir()
	gen := exec.Command(goTool, "run", "./gen", "-out", dir, "-spec", filepath.Join(mod.Dir, "api/openapi-spec/swagger.json"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen: %v\n%s", err, out)
	}
	got := readDir(t, "schemas")
	want := readDir(t, dir)
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("schemas/%s differs from what gen writes: run go generate ./internal/testing/kubeschema", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("schemas/%s: gen does not write it: run go generate ./internal/testing/kubeschema", name)
		}
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = b
	}
	return m
}
