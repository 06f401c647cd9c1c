package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/guest"
	"github.com/cork-sh/cork/internal/testing/qemuguest"
	"github.com/cork-sh/cork/internal/testing/testenv"
)

// qemuGuest is what the qemu tests boot, and the root directory with the
// probe agent at /bin/probe.
var (
	qemuGuest     *qemuguest.Guest
	qemuProbeOnce sync.Once
	qemuProbeRoot string
	qemuProbeErr  error
)

func requireQemu(t *testing.T) {
	t.Helper()
	qemuGuest = qemuguest.Require(t)
	qemuProbeOnce.Do(func() {
		if qemuProbeRoot, qemuProbeErr = os.MkdirTemp("", "cork-qemu-root-"); qemuProbeErr == nil {
			qemuProbeErr = qemuguest.Build(filepath.Join(qemuProbeRoot, "bin", "probe"), "github.com/cork-sh/cork/internal/testing/e2e/fakeagent")
		}
		if qemuProbeErr == nil {
			// The command is given by name, through a link: found in
			// the guest's PATH, the link resolved in the guest's root.
			qemuProbeErr = os.Symlink("probe", filepath.Join(qemuProbeRoot, "bin", "probe-link"))
		}
	})
	if qemuProbeErr != nil {
		t.Fatalf("build the probe: %v", qemuProbeErr)
	}
}

// removeQemuGuest removes what the qemu tests built (TestMain calls it).
func removeQemuGuest() {
	qemuguest.Cleanup()
	if qemuProbeRoot != "" {
		os.RemoveAll(qemuProbeRoot)
	}
}

func qemuBackend() *Qemu {
	return &Qemu{Kernel: qemuGuest.Kernel, Initrd: qemuGuest.Initrd, Accel: "auto", Relay: qemuGuest.Relay()}
}

// A real guest under QEMU: the command runs inside it with the
// placeholder, its one request through the relay and the proxy reaches
// the upstream with the real token, nothing else on the network answers
// (a host server on another loopback port through the slirp gateway, the
// gateway, DNS), the dummy files and the workspace are there, and the
// exit status passes through. Nothing is left behind.
func TestQemuEndToEnd(t *testing.T) {
	requireQemu(t)
	t.Run("root directory", func(t *testing.T) { qemuEndToEnd(t, qemuProbeRoot) })
	t.Run("ext4 image", func(t *testing.T) {
		mkfs, err := exec.LookPath("mkfs.ext4")
		if err != nil {
			testenv.Missing(t, "mkfs.ext4 not found (Debian: e2fsprogs)")
		}
		img := filepath.Join(t.TempDir(), "rootfs.ext4")
		if out, err := exec.Command(mkfs, "-q", "-F", "-d", qemuProbeRoot, img, "64M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		qemuEndToEnd(t, img)
	})
}

func qemuEndToEnd(t *testing.T, image string) {
	tmp := isolatedTempDir(t)
	up := startUpstream(t)
	// Another host service, on loopback: 10.0.2.2 would be the host's
	// loopback were the network not restricted.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from the host\n"))
			c.Close()
		}
	}()
	otherPort := other.Addr().(*net.TCPAddr).Port
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "README"), []byte("workspace file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	spec := &Spec{
		Plan:      testPlan(),
		HostEnv:   map[string]string{"PATH": os.Getenv("PATH"), "API_TOKEN": testToken, testSecretVar: testSecretValue, "TERM": "xterm"},
		Image:     image,
		Workspace: ws,
		Command: []string{"probe-link", "probe", "-api", "https://" + testHost + "/v1/ping", "-token-env", "API_TOKEN",
			"-direct", "10.0.2.2:" + strconv.Itoa(otherPort) + ",10.0.2.2:22,10.0.2.3:53", "-dump", "-exit", "7"},
		Proxy:    up.proxyOptions(),
		Stdout:   &stdout,
		Stderr:   &stderr,
		Progress: func(m string) { t.Log(m) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	code, err := qemuBackend().Run(ctx, resolved(spec))
	t.Logf("boot to exit: %v", time.Since(start).Round(time.Millisecond))
	out := stdout.String()
	if err != nil || code != 7 {
		t.Fatalf("Run = %d, %v; want 7 (the command's status)\nstdout:\n%s\nstderr:\n%s", code, err, out, stderr.String())
	}
	for _, want := range []string{
		"API status=200 body=hello from " + testHost,
		"DIRECT 10.0.2.2:" + strconv.Itoa(otherPort) + " err=",
		"DIRECT 10.0.2.2:22 err=",
		"DIRECT 10.0.2.3:53 err=",
		"DIRECT " + testHost + " err=", // by name: no DNS
		`FILE /home/cork/` + testDummyFile + ` "` + testPlaceholder + `\n"`,
		`FILE /workspace/README "workspace file\n"`,
		"ENV API_TOKEN=" + testPlaceholder,
		"ENV HOME=/home/cork",
		"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"ENV HTTPS_PROXY=http://cork:", // the session credential, then the forwarded address
		"DONE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("guest output lacks %q:\n%s", want, out)
		}
	}
	if got := up.got(); len(got) != 1 || got[0] != "Bearer "+testToken {
		t.Errorf("upstream got %q, want the real token once", got)
	}
	for _, s := range []string{testToken, testSecretValue} {
		if strings.Contains(out+stderr.String(), s) {
			t.Errorf("the guest saw a host secret %q", s)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left behind in TMPDIR: %v", left)
	}
}

// Bad input is refused before anything exists, naming what is wrong.
func TestQemuPreflight(t *testing.T) {
	tmp := isolatedTempDir(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeQemu := filepath.Join(dir, "qemu-system-x86_64")
	if err := os.WriteFile(fakeQemu, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    Qemu
		edit func(*Spec)
		want string
	}{
		{"no qemu", Qemu{Kernel: kernel, Initrd: kernel}, func(s *Spec) { s.HostEnv["PATH"] = t.TempDir() }, `"qemu-system-x86_64" not found in PATH`},
		{"no kernel", Qemu{Initrd: kernel}, nil, "--kernel: the qemu backend needs one"},
		{"missing kernel", Qemu{Kernel: filepath.Join(dir, "nope"), Initrd: kernel}, nil, "--kernel: " + filepath.Join(dir, "nope") + ": no such file"},
		{"initrd a directory", Qemu{Kernel: kernel, Initrd: dir}, nil, "--initrd: " + dir + ": is a directory"},
		{"unreadable image", Qemu{Kernel: kernel, Initrd: kernel}, func(s *Spec) { s.Image = filepath.Join(dir, "rootfs.ext4") }, "--image: " + filepath.Join(dir, "rootfs.ext4") + ": no such file"},
		{"bad accel", Qemu{Kernel: kernel, Initrd: kernel, Accel: "hvf"}, nil, `--accel "hvf": want kvm, tcg or auto`},
		{"--accel kvm without KVM", Qemu{Kernel: kernel, Initrd: kernel, Accel: "kvm"}, func(*Spec) {
			old := kvmDevice
			kvmDevice = filepath.Join(dir, "no-kvm")
			t.Cleanup(func() { kvmDevice = old })
		}, "--accel kvm: " + filepath.Join(dir, "no-kvm") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &Spec{Plan: testPlan(), HostEnv: map[string]string{"PATH": dir, "API_TOKEN": testToken}, Command: []string{"true"}}
			if tc.edit != nil {
				tc.edit(spec)
			}
			_, err := tc.q.Run(context.Background(), resolved(spec))
			var se *SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run = %v, want a one-line *SetupError containing %q", err, tc.want)
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	// --accel kvm where KVM's device is missing; auto falls back to TCG.
	missing := filepath.Join(dir, "kvm")
	if _, err := qemuAccel("kvm", missing); err == nil || err.Error() != "--accel kvm: "+missing+": no such file or directory" {
		t.Errorf("qemuAccel(kvm) without KVM = %v", err)
	}
	if a, err := qemuAccel("auto", missing); err != nil || a != "tcg" {
		t.Errorf("qemuAccel(auto) without KVM = %q, %v; want tcg", a, err)
	}
}

// Ctrl-C (the run's context ending) stops the VM: Run returns at once,
// and nothing is left — no QEMU, no relay, no temporary file.
func TestQemuCancel(t *testing.T) {
	requireQemu(t)
	tmp := isolatedTempDir(t)
	out := newLineWriter()
	spec := &Spec{
		Plan:    testPlan(),
		HostEnv: map[string]string{"PATH": os.Getenv("PATH"), "API_TOKEN": testToken},
		Image:   qemuProbeRoot,
		Command: []string{"/bin/probe", "sleep"},
		Stdout:  out,
		Stderr:  io.Discard,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		code, err := qemuBackend().Run(ctx, resolved(spec))
		if err == nil && code != 128+int(syscall.SIGTERM) {
			err = fmt.Errorf("status %d, want %d: a stopped run is not a success", code, 128+int(syscall.SIGTERM))
		}
		done <- err
	}()
	ready := false
	for deadline := time.After(2 * time.Minute); !ready; {
		select {
		case l := <-out.lines:
			ready = strings.TrimSpace(l) == "READY"
		case err := <-done:
			t.Fatalf("Run ended before the guest command was ready: %v; output:\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("the guest command never started; output:\n%s", out.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Ctrl-C = %v", err)
		}
	case <-time.After(ChildStopGrace + 10*time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left behind in TMPDIR: %v", left)
	}
	if out, _ := exec.Command("pgrep", "-f", qemuGuest.Initrd).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes left running the guest: %s", out)
	}
}

// The guest writes the control share: its status file is read without
// following a link, and only its first line.
func TestQemuReadStatus(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-file")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "status-link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if got, err := readStatus(link); err == nil {
		t.Errorf("readStatus(link) = %q, want an error", got)
	}
	status := filepath.Join(dir, "status")
	if err := os.WriteFile(status, []byte("7\nmore\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readStatus(status); err != nil || got != "7" {
		t.Errorf("readStatus = %q, %v; want 7", got, err)
	}
}

// A comma in any path QEMU is given (a TMPDIR, a workspace) is doubled:
// QEMU would end the option there.
func TestQemuArgsCommas(t *testing.T) {
	vb := &qemuSandbox{cfg: &Qemu{}, kernel: "/k,1/vmlinux", initrd: "/i/initrd", accel: "tcg", sock: "/t,x/sock/proxy.sock",
		relay: []string{"/bin/cork", "relay", "--quiet", "--socket"}, workspace: "/w,s", root: guest.RootBlock, image: "/img,1.ext4"}
	args := strings.Join(vb.args("/t,x/home", "/t,x/ctl"), "\x00")
	for _, want := range []string{"/k,,1/vmlinux", "path=/t,,x/home,", "path=/t,,x/ctl,", "path=/w,,s,", "file=/img,,1.ext4,", "'/t,,x/sock/proxy.sock'"} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU's arguments lack %q:\n%s", want, strings.ReplaceAll(args, "\x00", " "))
		}
	}
}
