package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The sidecar image's cork (`make image`: -tags nokube) links no
// client-go, refuses the kubernetes backend's commands with one line and
// exit 2, and still runs everything else (the docker and kubernetes
// end-to-end tests run their proxies on it).
func TestNoKubeBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cork twice")
	}
	bin := filepath.Join(t.TempDir(), "cork")
	build := exec.Command("go", "build", "-tags", "nokube", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nokube: %v\n%s", err, out)
	}
	mods, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mods), "k8s.io/") {
		t.Errorf("the nokube build links k8s.io modules:\n%s", mods)
	}
	full, err := exec.Command("go", "version", "-m", corkBinary(t)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(full), "k8s.io/client-go") {
		t.Errorf("the whole build does not link client-go: is the test looking at the right binary?")
	}

	for _, args := range [][]string{
		{"run", "--backend", "kubernetes", "--inject", "api.example.com=TEST_API_VAR", "--", "true"},
		{"manifests", "--inject", "api.example.com=TEST_API_VAR", "--", "true"},
		{"gc", "--backend", "kubernetes"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "TEST_API_VAR=not-a-secret"}
		out, err := cmd.CombinedOutput()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code == 0 || !strings.Contains(string(out), "built without the kubernetes backend (-tags nokube)") {
			t.Errorf("cork %s: exit %d, output %q; want a non-zero exit naming the nokube build", strings.Join(args, " "), code, out)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Errorf("cork version: %v\n%s", err, out)
	}
}
