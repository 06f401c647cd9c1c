package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cork-sh/cork/launch/confine"
)

// runCork calls run in-process and returns its exit status and output.
func runCork(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, env, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return code, stdout.String(), stderr.String()
}

var (
	buildOnce sync.Once
	corkBin   string
	buildErr  error
	buildDir  string
)

// corkBinary builds the cork binary once per test run.
func corkBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "cork-bin-")
		if buildErr != nil {
			return
		}
		corkBin = filepath.Join(buildDir, "cork")
		out, err := exec.Command("go", "build", "-o", corkBin, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildFailure{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build cork: %v", buildErr)
	}
	return corkBin
}

type buildFailure struct {
	out string
	err error
}

func (b *buildFailure) Error() string { return b.err.Error() + ": " + b.out }

func TestMain(m *testing.M) {
	confine.Main()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"help", []string{"--help"}, 0, "Commands:", ""},
		{"no args", nil, 2, "", "Commands:"},
		{"version", []string{"version"}, 0, "cork ", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"version", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"proxy help", []string{"proxy", "--help"}, 0, "-policy-file", ""},
		{"run help", []string{"run", "--help"}, 0, "-backend", ""},
		{"demo help", []string{"demo", "--help"}, 0, "Usage: cork demo", ""},
		{"ca help", []string{"ca", "--help"}, 0, "-cert-out", ""},
		{"version help", []string{"version", "--help"}, 0, "Usage: cork version", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCork(t, nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("cork %v exit = %d, want %d (stderr %q)", tt.args, code, tt.wantCode, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("cork %v stdout = %q, want it to contain %q", tt.args, out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("cork %v stderr = %q, want it to contain %q", tt.args, errOut, tt.wantErr)
			}
		})
	}
}

func TestEverySubcommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		code, out, errOut := runCork(t, nil, c.name, "--help")
		if code != 0 || !strings.Contains(out, "Usage: cork "+c.name) {
			t.Errorf("cork %s --help = %d, %q, %q; want 0 and a usage", c.name, code, out, errOut)
		}
	}
}

func TestCA(t *testing.T) {
	dir := t.TempDir()
	cert, key := dir+"/ca.pem", dir+"/ca-key.pem"
	args := []string{"ca", "--policy-file", "../../examples/policy.yaml", "--cert-out", cert, "--key-out", key}
	if code, out, errOut := runCork(t, nil, args...); code != 0 || !strings.Contains(out, "wrote") {
		t.Fatalf("cork ca = %d, %q, %q", code, out, errOut)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if code, _, errOut := runCork(t, nil, args...); code != 2 || !strings.Contains(errOut, "exists") {
		t.Errorf("cork ca over existing files = %d, %q; want 2 and a refusal", code, errOut)
	}
	if code, _, errOut := runCork(t, nil, "ca"); code != 2 || errOut != "cork: ca: missing --cert-out, --key-out, --policy-file\n" {
		t.Errorf("cork ca without flags = %d, %q", code, errOut)
	}
}
