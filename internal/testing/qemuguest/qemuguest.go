// Package qemuguest builds what the qemu backend's tests boot: Debian's
// guest kernel as .ci/run unpacks it, an initramfs that cork-guest
// writes, and a static cork binary for `cork relay`. Test-only.
package qemuguest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// KernelEnv names a directory holding the guest kernel: vmlinux
// (uncompressed) and lib/modules/VERSION with modules.dep. Unset means
// DefaultKernelDir, where .ci/run puts Debian's.
const KernelEnv = "CORK_TEST_GUEST_KERNEL"

// DefaultKernelDir is where .ci/run unpacks the guest kernel.
const DefaultKernelDir = "/opt/cork-guest-kernel"

// QemuBinary is the QEMU the tests need.
const QemuBinary = "qemu-system-x86_64"

// Guest is a bootable guest.
type Guest struct {
	Kernel, Initrd string
	// Cork is a static cork binary, for the relay (Relay).
	Cork string
	dir  string
}

var (
	once  sync.Once
	built *Guest
	err   error
)

// Require returns the guest, built once per test binary; without QEMU or
// a kernel the test skips, and fails under CI (testenv.Missing).
func Require(t testing.TB) *Guest {
	t.Helper()
	if _, err := exec.LookPath(QemuBinary); err != nil {
		testenv.Missing(t, "%s not found (Debian: qemu-system-x86)", QemuBinary)
	}
	dir := os.Getenv(KernelEnv)
	if dir == "" {
		dir = DefaultKernelDir
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinux")); err != nil {
		testenv.Missing(t, "no guest kernel in %s (set %s; .ci/run unpacks Debian's)", dir, KernelEnv)
	}
	once.Do(func() { built, err = build(dir) })
	if err != nil {
		t.Fatalf("build the guest: %v", err)
	}
	return built
}

// Relay is the relay command for launch.Qemu.Relay.
func (g *Guest) Relay() []string { return []string{g.Cork, "relay", "--quiet", "--socket"} }

// Cleanup removes what Require built; a TestMain calls it.
func Cleanup() {
	if built != nil {
		os.RemoveAll(built.dir)
	}
}

func build(kdir string) (*Guest, error) {
	mods, err := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*"))
	if err != nil || len(mods) != 1 {
		return nil, errors.New("want one lib/modules/VERSION in the kernel directory")
	}
	out, err := os.MkdirTemp("", "cork-qemu-guest-")
	if err != nil {
		return nil, err
	}
	g := &Guest{Kernel: filepath.Join(kdir, "vmlinux"), Initrd: filepath.Join(out, "initrd.img"), Cork: filepath.Join(out, "cork"), dir: out}
	guestInit := filepath.Join(out, "cork-guest")
	if err := Build(guestInit, "github.com/cork-sh/cork/cmd/cork-guest"); err != nil {
		return nil, err
	}
	if err := Build(g.Cork, "github.com/cork-sh/cork/cmd/cork"); err != nil {
		return nil, err
	}
	if o, err := exec.Command(guestInit, "initrd", "--modules", mods[0], "-o", g.Initrd).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cork-guest initrd: %v\n%s", err, o)
	}
	return g, nil
}

// Build builds pkg as a static binary at dst.
func Build(dst, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", dst, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, o)
	}
	return nil
}
