//go:build linux && (amd64 || arm64)

package confine

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Distinct errnos for the filter's two answers, so that a test can tell
// the filter's refusal from the kernel's own (a root process without the
// filter may get EPERM from mount, kexec_load, ...).
const (
	testDeny  = unix.EHWPOISON
	testNosys = unix.ENOTRECOVERABLE
)

// seccompCall is one system call given to the filter.
type seccompCall struct {
	name string
	arch uint32
	nr   uintptr
	args [6]uint64
}

// seccompCases are the calls the filter judges, with what it must answer:
// testDeny, testNosys or 0 (allowed). Every table entry is in it, with
// every argument -1 (harmless if the filter let it through: bad fds, bad
// pointers, bad flags).
func seccompCases(t *testing.T) []struct {
	call seccompCall
	want syscall.Errno
} {
	t.Helper()
	arch, err := auditArch(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	type tc = struct {
		call seccompCall
		want syscall.Errno
	}
	var cases []tc
	all := [6]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	for _, e := range seccompTable {
		want := testDeny
		switch e.action {
		case nosys:
			want = testNosys
		case ioctlArgs, persArgs, socketArgs:
			continue // arguments decide: below
		}
		cases = append(cases, tc{seccompCall{e.name + "(-1...)", arch, e.nr, all}, want})
	}
	call := func(name string, nr uintptr, args ...uint64) seccompCall {
		c := seccompCall{name: name, arch: arch, nr: nr}
		copy(c.args[:], args)
		return c
	}
	for _, f := range []struct {
		name string
		flag uint64
	}{
		{"CLONE_NEWUSER", unix.CLONE_NEWUSER}, {"CLONE_NEWNS", unix.CLONE_NEWNS},
		{"CLONE_NEWNET", unix.CLONE_NEWNET}, {"CLONE_NEWPID", unix.CLONE_NEWPID},
		{"CLONE_NEWIPC", unix.CLONE_NEWIPC}, {"CLONE_NEWUTS", unix.CLONE_NEWUTS},
		{"CLONE_NEWCGROUP", unix.CLONE_NEWCGROUP}, {"CLONE_NEWTIME", unix.CLONE_NEWTIME},
	} {
		cases = append(cases, tc{call("clone("+f.name+"|SIGCHLD)", unix.SYS_CLONE, f.flag|uint64(unix.SIGCHLD)), testDeny})
	}
	cases = append(cases,
		tc{call("getpid", unix.SYS_GETPID), 0},
		tc{call("clone(SIGCHLD) (fork)", unix.SYS_CLONE, uint64(unix.SIGCHLD)), 0},
		tc{call("ioctl(-1, TIOCSTI)", unix.SYS_IOCTL, ^uint64(0), unix.TIOCSTI), testDeny},
		tc{call("ioctl(-1, 1<<32|TIOCSTI)", unix.SYS_IOCTL, ^uint64(0), 1<<32|unix.TIOCSTI), testDeny},
		tc{call("ioctl(-1, 0xffffffff<<32|TIOCSTI)", unix.SYS_IOCTL, ^uint64(0), 0xffffffff<<32|unix.TIOCSTI), testDeny},
		tc{call("ioctl(-1, TIOCLINUX)", unix.SYS_IOCTL, ^uint64(0), unix.TIOCLINUX), testDeny},
		tc{call("ioctl(-1, TCGETS)", unix.SYS_IOCTL, ^uint64(0), unix.TCGETS), 0},
		tc{call("ioctl(-1, TIOCGWINSZ)", unix.SYS_IOCTL, ^uint64(0), unix.TIOCGWINSZ), 0},
		tc{call("socket(AF_VSOCK, SOCK_STREAM)", unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM), testDeny},
		tc{call("socket(1<<32|AF_VSOCK)", unix.SYS_SOCKET, 1<<32|unix.AF_VSOCK, unix.SOCK_STREAM), testDeny},
		tc{call("socket(AF_INET, SOCK_STREAM)", unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM), 0},
		tc{call("socket(AF_UNIX, SOCK_STREAM)", unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), 0},
		tc{call("personality(query)", unix.SYS_PERSONALITY, 0xffffffff), 0},
		tc{call("personality(ADDR_NO_RANDOMIZE)", unix.SYS_PERSONALITY, 0x0040000), testDeny},
		tc{call("personality(READ_IMPLIES_EXEC)", unix.SYS_PERSONALITY, 0x0400000), testDeny},
	)
	if runtime.GOARCH == "amd64" {
		cases = append(cases, tc{call("x32 getpid", unix.SYS_GETPID|x32Bit), testDeny})
	}
	return cases
}

// runFilter runs the filter in x/net/bpf's VM on c laid out as struct
// seccomp_data. The VM loads words big-endian, the kernel natively: each
// word is stored big-endian so that the VM reads the value the kernel
// would.
func runFilter(t *testing.T, vm *bpf.VM, c seccompCall) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[offNr:], uint32(c.nr))
	binary.BigEndian.PutUint32(data[offArch:], c.arch)
	for i, a := range c.args {
		binary.BigEndian.PutUint32(data[argLow(i):], uint32(a))
		binary.BigEndian.PutUint32(data[argLow(i)+4:], uint32(a>>32))
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatalf("vm.Run(%s): %v", c.name, err)
	}
	return uint32(ret)
}

func filterVM(t *testing.T) *bpf.VM {
	t.Helper()
	raw, err := seccompProgram(testDeny, testNosys)
	if err != nil {
		t.Fatalf("seccompProgram: %v", err)
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("seccompProgram: cannot disassemble its output")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return vm
}

func retFor(errno syscall.Errno) uint32 {
	if errno == 0 {
		return unix.SECCOMP_RET_ALLOW
	}
	return unix.SECCOMP_RET_ERRNO | uint32(errno)
}

// TestSeccompProgram runs the filter in a BPF interpreter: every table
// entry, the argument checks, and the architecture checks.
func TestSeccompProgram(t *testing.T) {
	vm := filterVM(t)
	for _, c := range seccompCases(t) {
		t.Run(c.call.name, func(t *testing.T) {
			if got, want := runFilter(t, vm, c.call), retFor(c.want); got != want {
				t.Errorf("filter(%s) = %#x, want %#x", c.call.name, got, want)
			}
		})
	}
	foreign := []struct {
		name string
		arch uint32
	}{
		{"i386 (int 0x80)", unix.AUDIT_ARCH_I386},
		{"x86_64", unix.AUDIT_ARCH_X86_64},
		{"aarch64", unix.AUDIT_ARCH_AARCH64},
		{"arm", unix.AUDIT_ARCH_ARM},
	}
	native, _ := auditArch(runtime.GOARCH)
	for _, f := range foreign {
		if f.arch == native {
			continue
		}
		t.Run("arch "+f.name, func(t *testing.T) {
			c := seccompCall{name: "getpid on " + f.name, arch: f.arch, nr: unix.SYS_GETPID}
			if got, want := runFilter(t, vm, c), retFor(testDeny); got != want {
				t.Errorf("filter(%s) = %#x, want %#x", c.name, got, want)
			}
		})
	}
}

// TestSeccompProgramErrnos checks that production answers EPERM and
// ENOSYS, the errnos the tests above replace.
func TestSeccompProgramErrnos(t *testing.T) {
	raw, err := seccompProgram(unix.EPERM, unix.ENOSYS)
	if err != nil {
		t.Fatal(err)
	}
	insns, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	arch, _ := auditArch(runtime.GOARCH)
	for _, c := range []struct {
		nr   uintptr
		want uint32
	}{
		{unix.SYS_MOUNT, retFor(unix.EPERM)},
		{unix.SYS_IO_URING_SETUP, retFor(unix.ENOSYS)},
		{unix.SYS_CLONE3, retFor(unix.ENOSYS)},
		{unix.SYS_READ, unix.SECCOMP_RET_ALLOW},
	} {
		call := seccompCall{name: fmt.Sprintf("nr %d", c.nr), arch: arch, nr: c.nr}
		if got := runFilter(t, vm, call); got != c.want {
			t.Errorf("filter(%s) = %#x, want %#x", call.name, got, c.want)
		}
	}
}

// TestSeccompKernel installs the filter (with the test errnos) in a
// helper process that keeps every capability of root, and makes each
// call for real: the kernel, not the interpreter, must give the filter's
// answer.
func TestSeccompKernel(t *testing.T) {
	if isHelper(t) {
		runtime.LockOSThread() // never unlocked: the thread is filtered
		raw, err := seccompProgram(testDeny, testNosys)
		if err == nil {
			err = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
		}
		if err == nil {
			err = loadFilter(raw)
		}
		if err != nil {
			helperFatal(err)
		}
		var results []helperResult
		for _, c := range seccompCases(t) {
			results = append(results, helperResult{c.call.name, kernelCall(c.call, c.want)})
		}
		helperReport(results)
		return
	}
	want := map[string]bool{}
	for _, c := range seccompCases(t) {
		want[c.call.name] = true
	}
	checkHelper(t, runHelper(t, t.Name(), nil), want)
}

// kernelCall makes c on this thread and says how its errno differs from
// want. A clone that succeeds (the filter let it through) exits at once
// in the child.
func kernelCall(c seccompCall, want syscall.Errno) string {
	a := c.args
	r, _, errno := unix.RawSyscall6(c.nr, uintptr(a[0]), uintptr(a[1]), uintptr(a[2]), uintptr(a[3]), uintptr(a[4]), uintptr(a[5]))
	if c.nr == unix.SYS_CLONE && errno == 0 {
		if r == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(int(r), &ws, 0, nil)
	}
	switch {
	case want == 0 && (errno == testDeny || errno == testNosys):
		return fmt.Sprintf("errno %d (%v), want the call let through", int(errno), errno)
	case want != 0 && errno != want:
		return fmt.Sprintf("errno %d (%v), want %d (%v)", int(errno), errno, int(want), want)
	}
	return ""
}
