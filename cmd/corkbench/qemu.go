package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The qemu phase (only when asked for: -only qemu) measures `cork run
// --backend qemu` from its start to the command's exit status, the
// command being mark, a static program that exits at once: the cost of a
// microVM (QEMU's start, the guest kernel's boot, cork-guest's set-up,
// the power-off) plus cork's session. The guest is Debian's kernel as
// .ci/run unpacks it (-qemu-kernel) and an initramfs cork-guest writes.

// runQemuBoot runs the qemu phase and writes its report.
func runQemuBoot(o options, out io.Writer) error {
	kdir := o.qemuKernel
	mods, err := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*"))
	if err != nil || len(mods) != 1 {
		return fmt.Errorf("qemu: -qemu-kernel %s: want vmlinux and one lib/modules/VERSION (docs/QEMU.md)", kdir)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cork-bench-qemu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ws := filepath.Join(dir, "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		return err
	}
	logf("building cork, cork-guest and the start marker into %s", dir)
	for _, b := range []struct{ pkg, dst string }{
		{"./cmd/cork", filepath.Join(dir, "cork")},
		{"./cmd/cork-guest", filepath.Join(dir, "cork-guest")},
		{"./cmd/corkbench/mark", filepath.Join(ws, "mark")},
	} {
		cmd := exec.Command("go", "build", "-o", b.dst, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", b.pkg, err)
		}
	}
	initrd := filepath.Join(dir, "initrd.img")
	if o, err := exec.Command(filepath.Join(dir, "cork-guest"), "initrd", "--modules", mods[0], "-o", initrd).CombinedOutput(); err != nil {
		return fmt.Errorf("cork-guest initrd: %v: %s", err, o)
	}
	argv := []string{filepath.Join(dir, "cork"), "run", "--backend", "qemu",
		"--kernel", filepath.Join(kdir, "vmlinux"), "--initrd", initrd, "--accel", o.qemuAccel,
		"--workspace", ws, "--inject", "api.example.com=STARTUP_VAR", "--", "/workspace/mark"}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "STARTUP_VAR=bench-not-a-secret"}
	var whole []time.Duration
	accel := ""
	for r := -1; r < o.qemuRounds; r++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("qemu round %d: %v: %s", r+1, err, stderr.String())
		}
		// The progress line names the accelerator --accel chose.
		if _, rest, ok := strings.Cut(stderr.String(), "starting a microVM ("); ok {
			accel, _, _ = strings.Cut(rest, ")")
		}
		if r < 0 {
			continue // the page cache
		}
		whole = append(whole, d)
		logf("qemu round %d: cork run to exit status %s", r+1, fmtDur(d))
	}
	if len(whole) == 0 {
		return errors.New("qemu: no rounds")
	}
	slices.Sort(whole)
	pct := func(p float64) time.Duration { return whole[min(len(whole)-1, int(p*float64(len(whole))))] }
	fmt.Fprintf(out, "## qemu backend: `cork run` to the command's exit status\n\n")
	fmt.Fprintf(out, "%s; --accel %s (%s); %d rounds (one more not counted); the command is a static program that exits at once.\n\n", machineInfo(), o.qemuAccel, accel, len(whole))
	fmt.Fprintf(out, "| min | median | p90 | max |\n|---|---|---|---|\n| %s | %s | %s | %s |\n",
		fmtDur(whole[0]), fmtDur(pct(0.5)), fmtDur(pct(0.9)), fmtDur(whole[len(whole)-1]))
	return nil
}
