//go:build linux && (amd64 || arm64)

package confine

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// action is what the seccomp filter does with a system call it names.
type action int

const (
	deny       action = iota // EPERM
	nosys                    // ENOSYS: the program falls back to an older call
	cloneArgs                // EPERM when a namespace flag is set
	ioctlArgs                // EPERM for TIOCSTI and TIOCLINUX
	persArgs                 // EPERM for any persona but the allowed few
	socketArgs               // EPERM for AF_VSOCK
)

// seccompTable is the filter's deny list; every call it does not name is
// allowed. The threat is the command itself: it must not regain
// capabilities in a new user namespace (and from there unmount what hides
// the host's credentials), mount, trace or read other processes, reach
// the kernel keyring or BPF, load code into the kernel, or type into the
// terminal it shares with the user.
var seccompTable = []struct {
	nr     uintptr
	name   string
	action action
}{
	// Other processes' memory.
	{unix.SYS_PTRACE, "ptrace", deny},
	{unix.SYS_PROCESS_VM_READV, "process_vm_readv", deny},
	{unix.SYS_PROCESS_VM_WRITEV, "process_vm_writev", deny},
	// Kernel keyring and BPF.
	{unix.SYS_KEYCTL, "keyctl", deny},
	{unix.SYS_ADD_KEY, "add_key", deny},
	{unix.SYS_REQUEST_KEY, "request_key", deny},
	{unix.SYS_BPF, "bpf", deny},
	// Namespaces and mounts.
	{unix.SYS_CLONE, "clone", cloneArgs},
	{unix.SYS_CLONE3, "clone3", nosys}, // its flags sit behind a pointer; libc falls back to clone
	{unix.SYS_UNSHARE, "unshare", deny},
	{unix.SYS_SETNS, "setns", deny},
	{unix.SYS_MOUNT, "mount", deny},
	{unix.SYS_UMOUNT2, "umount2", deny},
	{unix.SYS_PIVOT_ROOT, "pivot_root", deny},
	{unix.SYS_CHROOT, "chroot", deny},
	{unix.SYS_MOUNT_SETATTR, "mount_setattr", deny},
	{unix.SYS_OPEN_TREE, "open_tree", deny},
	{unix.SYS_MOVE_MOUNT, "move_mount", deny},
	{unix.SYS_FSOPEN, "fsopen", deny},
	{unix.SYS_FSCONFIG, "fsconfig", deny},
	{unix.SYS_FSMOUNT, "fsmount", deny},
	{unix.SYS_FSPICK, "fspick", deny},
	{unix.SYS_OPEN_BY_HANDLE_AT, "open_by_handle_at", deny}, // opens by inode, past every overmount
	// The kernel itself.
	{unix.SYS_KEXEC_LOAD, "kexec_load", deny},
	{unix.SYS_KEXEC_FILE_LOAD, "kexec_file_load", deny},
	{unix.SYS_INIT_MODULE, "init_module", deny},
	{unix.SYS_FINIT_MODULE, "finit_module", deny},
	{unix.SYS_DELETE_MODULE, "delete_module", deny},
	{unix.SYS_PERF_EVENT_OPEN, "perf_event_open", deny},
	{unix.SYS_USERFAULTFD, "userfaultfd", deny}, // stretches kernel races
	{unix.SYS_SWAPON, "swapon", deny},
	{unix.SYS_SWAPOFF, "swapoff", deny},
	{unix.SYS_REBOOT, "reboot", deny},
	{unix.SYS_ACCT, "acct", deny},
	{unix.SYS_SYSLOG, "syslog", deny},
	{unix.SYS_QUOTACTL, "quotactl", deny},
	{unix.SYS_PERSONALITY, "personality", persArgs},
	// The terminal.
	{unix.SYS_IOCTL, "ioctl", ioctlArgs},
	// vsock reaches the hypervisor (and what runs beside this machine),
	// outside the network namespace.
	{unix.SYS_SOCKET, "socket", socketArgs},
	// io_uring runs calls out of the filter's sight; programs fall back
	// to ordinary I/O.
	{unix.SYS_IO_URING_SETUP, "io_uring_setup", nosys},
	{unix.SYS_IO_URING_ENTER, "io_uring_enter", nosys},
	{unix.SYS_IO_URING_REGISTER, "io_uring_register", nosys},
}

// cloneNamespaces are the clone flags that make a namespace. clone (not
// clone3) takes them in its first argument, whose low 32 bits the kernel
// reads.
const cloneNamespaces = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET |
	unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS |
	unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// allowedPersonas are the personality(2) arguments allowed, as in
// Docker's default profile: PER_LINUX, PER_LINUX32, UNAME26 with either,
// and 0xffffffff (query). Others (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE,
// other ABIs) are EPERM.
var allowedPersonas = []uint32{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// x32Bit marks an x32 system call number on amd64; x32 numbers run the
// same kernel code under other numbers, so they are refused outright.
const x32Bit = 0x40000000

// seccomp_data offsets (linux/seccomp.h). A 64-bit argument's low half is
// at the lower address on the little-endian architectures built here.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16
)

func argLow(i int) uint32 { return uint32(offArg0 + 8*i) }

// auditArch returns the AUDIT_ARCH value of goarch's native calls.
func auditArch(goarch string) (uint32, error) {
	switch goarch {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("seccomp: no filter for GOARCH %s", goarch)
}

// seccompProgram assembles the filter for this GOARCH from seccompTable.
// The errnos are parameters so that a test can tell the filter's answer
// from the kernel's own; production uses EPERM and ENOSYS.
func seccompProgram(denyErrno, nosysErrno syscall.Errno) ([]bpf.RawInstruction, error) {
	goarch := runtime.GOARCH
	arch, err := auditArch(goarch)
	if err != nil {
		return nil, err
	}
	var p program
	p.add(bpf.LoadAbsolute{Off: offArch, Size: 4}, "", "")
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: arch}, "", "deny") // another arch: i386 numbers differ
	p.add(bpf.LoadAbsolute{Off: offNr, Size: 4}, "", "")
	if goarch == "amd64" {
		p.add(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: x32Bit}, "deny", "")
	}
	labels := map[action]string{deny: "deny", nosys: "nosys", cloneArgs: "clone", ioctlArgs: "ioctl", persArgs: "personality", socketArgs: "socket"}
	for _, e := range seccompTable {
		p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(e.nr)}, labels[e.action], "")
	}
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}, "", "") // not in the table

	// Classic BPF jumps forward only: the argument checks and the
	// answers follow the table.
	p.label("clone")
	p.add(bpf.LoadAbsolute{Off: argLow(0), Size: 4}, "", "")
	p.add(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: cloneNamespaces}, "deny", "allow")

	// The kernel truncates the request to unsigned int: compare the low
	// 32 bits only, so 0x1_0000_5412 is TIOCSTI too.
	p.label("ioctl")
	p.add(bpf.LoadAbsolute{Off: argLow(1), Size: 4}, "", "")
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCSTI}, "deny", "")
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCLINUX}, "deny", "allow")

	p.label("socket") // the domain is an int
	p.add(bpf.LoadAbsolute{Off: argLow(0), Size: 4}, "", "")
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_VSOCK}, "deny", "allow")

	p.label("personality") // personality takes an unsigned int
	p.add(bpf.LoadAbsolute{Off: argLow(0), Size: 4}, "", "")
	for _, v := range allowedPersonas {
		p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v}, "allow", "")
	}
	p.label("deny")
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(denyErrno)}, "", "")
	p.label("nosys")
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(nosysErrno)}, "", "")
	p.label("allow")
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}, "", "")
	return p.assemble()
}

// program is a classic BPF program with named jump targets.
type program struct {
	insns  []bpf.Instruction
	jt, jf []string // per instruction: label to jump to, "" = next
	at     map[string]int
}

// add appends ins; for a JumpIf, jt and jf name the targets ("" = next).
func (p *program) add(ins bpf.Instruction, jt, jf string) {
	p.insns = append(p.insns, ins)
	p.jt = append(p.jt, jt)
	p.jf = append(p.jf, jf)
}

// label names the next instruction.
func (p *program) label(name string) {
	if p.at == nil {
		p.at = map[string]int{}
	}
	p.at[name] = len(p.insns)
}

// assemble resolves the labels into skips and assembles the program.
func (p *program) assemble() ([]bpf.RawInstruction, error) {
	skip := func(i int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		at, ok := p.at[name]
		if !ok {
			return 0, fmt.Errorf("seccomp: no label %q", name)
		}
		d := at - i - 1
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("seccomp: jump to %q out of range (%d)", name, d)
		}
		return uint8(d), nil
	}
	out := make([]bpf.Instruction, len(p.insns))
	for i, ins := range p.insns {
		if j, ok := ins.(bpf.JumpIf); ok {
			var err error
			if j.SkipTrue, err = skip(i, p.jt[i]); err != nil {
				return nil, err
			}
			if j.SkipFalse, err = skip(i, p.jf[i]); err != nil {
				return nil, err
			}
			ins = j
		}
		out[i] = ins
	}
	return bpf.Assemble(out)
}

// installSeccomp installs the filter on the calling thread only (no TSYNC):
// the thread that then execs the command carries it, other threads of
// this Go process do not need it. no_new_privs must already be set.
func installSeccomp() error {
	raw, err := seccompProgram(unix.EPERM, unix.ENOSYS)
	if err != nil {
		return err
	}
	return loadFilter(raw)
}

// loadFilter installs raw with seccomp(SECCOMP_SET_MODE_FILTER) on the
// calling thread.
func loadFilter(raw []bpf.RawInstruction) error {
	prog := unix.SockFprog{
		Len:    uint16(len(raw)),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&raw[0])),
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(raw)
	if errno != 0 {
		return fmt.Errorf("seccomp: install filter: %w", errno)
	}
	return nil
}
