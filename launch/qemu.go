package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cork-sh/cork/internal/guest"
)

// Qemu runs the command in a QEMU microVM (`-M microvm`): a guest kernel,
// an initramfs whose init is cork-guest (cmd/cork-guest), and cork's
// shares over virtio-9p — the sandbox home, the workspace and a control
// directory with the command. The VM's only way out is QEMU's restricted
// user network, whose one endpoint, 10.0.2.100:3128, is forwarded per
// connection to `cork relay` and on to the in-process proxy's Unix
// socket: the host opens no TCP port for the VM (docs/QEMU.md).
//
// The zero value needs Kernel and Initrd. A Qemu is safe for concurrent
// runs.
type Qemu struct {
	// Binary is the QEMU executable: a path, or a name looked up in the
	// PATH of Spec.HostEnv. Empty means DefaultQemuBinary.
	Binary string
	// Kernel is the guest kernel (an uncompressed vmlinux boots in about
	// half the time of a bzImage); Initrd the initramfs `cork-guest
	// initrd` wrote.
	Kernel, Initrd string
	// Accel is "kvm", "tcg", or "" to choose: KVM when /dev/kvm can be
	// opened and the host is not itself a VM (nested KVM often cannot run
	// a stock guest), else TCG.
	Accel string
	// Memory is the guest's memory in MiB; zero means DefaultQemuMemory.
	Memory int
	// Relay is the command QEMU runs for each guest connection to the
	// proxy, given the socket's path as its last argument. Nil means this
	// executable's `relay --socket`.
	Relay []string
}

var _ Backend = (*Qemu)(nil)

const (
	// DefaultQemuBinary is the QEMU executable looked up in PATH.
	DefaultQemuBinary = "qemu-system-x86_64"
	// DefaultQemuMemory is the guest's memory, in MiB.
	DefaultQemuMemory = 512
	// QemuHome is the sandbox home in the guest, and QemuWorkspace the
	// workspace.
	QemuHome      = "/home/cork"
	QemuWorkspace = "/workspace"
)

// Name implements Backend.
func (*Qemu) Name() string { return "qemu" }

// Run implements Backend.
func (q *Qemu) Run(ctx context.Context, spec *Spec) (int, error) {
	return runSession(ctx, spec, &qemuSandbox{cfg: q})
}

// qemuSandbox is one run of the qemu backend.
type qemuSandbox struct {
	cfg       *Qemu
	bin       string
	kernel    string // absolute
	initrd    string // absolute
	accel     string
	relay     []string
	workspace string     // absolute, or empty
	root      guest.Root // what --image is
	image     string     // absolute, or empty
	dir       string     // host: home, control directory, socket directory
	sock      string     // the proxy's socket
	ip        *inProcess
}

func (*qemuSandbox) layout() layout { return layout{home: QemuHome, hostEnv: vmGuestEnv} }

// preflight checks the binary, the kernel, the initramfs, the image, the
// workspace and the accelerator before anything exists.
func (vb *qemuSandbox) preflight(_ context.Context, s *session) error {
	spec, cfg := s.spec, vb.cfg
	var err error
	name := cfg.Binary
	if name == "" {
		name = DefaultQemuBinary
	}
	if vb.bin, err = lookExecutable(name, spec.HostEnv); err != nil {
		return setupErrorf("qemu: %v; install QEMU (Debian: qemu-system-x86) or pick another --backend", err)
	}
	for _, f := range []struct {
		flag string
		path *string
	}{{"--kernel", &vb.kernel}, {"--initrd", &vb.initrd}} {
		*f.path = map[string]string{"--kernel": cfg.Kernel, "--initrd": cfg.Initrd}[f.flag]
		if *f.path == "" {
			return setupErrorf("%s: the qemu backend needs one (docs/QEMU.md says how to get a kernel and build the initramfs)", f.flag)
		}
		// Absolute: QEMU runs in the session's directory.
		if *f.path, err = filepath.Abs(*f.path); err != nil {
			return setupErrorf("%s: %v", f.flag, err)
		}
		if err := readableFile(*f.path); err != nil {
			return setupErrorf("%s: %v", f.flag, err)
		}
	}
	if spec.Image != "" {
		if vb.image, err = filepath.Abs(spec.Image); err != nil {
			return setupErrorf("--image: %v", err)
		}
		st, err := os.Stat(vb.image)
		switch {
		case err != nil:
			return setupErrorf("--image: %v", pathError(err))
		case st.IsDir():
			vb.root = guest.RootShare
			err = CheckDir(vb.image)
		default:
			vb.root = guest.RootBlock
			err = readableFile(vb.image)
		}
		if err != nil {
			return setupErrorf("--image: %v", err)
		}
	}
	if ws := spec.Workspace; ws != "" {
		if ws, err = filepath.Abs(ws); err != nil {
			return setupErrorf("workspace: %v", err)
		}
		if err := CheckDir(ws); err != nil {
			return setupErrorf("workspace: %v", err)
		}
		vb.workspace = ws
	}
	if vb.accel, err = qemuAccel(cfg.Accel, kvmDevice); err != nil {
		return &SetupError{Err: err}
	}
	if vb.relay = cfg.Relay; vb.relay == nil {
		self, err := os.Executable()
		if err != nil {
			return setupErrorf("qemu: the relay: %v", err)
		}
		vb.relay = []string{self, "relay", "--quiet", "--socket"}
	}
	return nil
}

// kvmDevice is KVM's device node (a variable for the tests).
var kvmDevice = "/dev/kvm"

// qemuAccel resolves --accel, with dev as KVM's device node.
func qemuAccel(asked, dev string) (string, error) {
	switch asked {
	case "tcg":
		return "tcg", nil
	case "kvm":
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", fmt.Errorf("--accel kvm: %v", pathError(err))
		}
		f.Close()
		return "kvm", nil
	case "", "auto":
		if f, err := os.OpenFile(dev, os.O_RDWR, 0); err == nil {
			f.Close()
			if !insideVM() {
				return "kvm", nil
			}
		}
		return "tcg", nil
	}
	return "", fmt.Errorf("--accel %q: want kvm, tcg or auto", asked)
}

// insideVM reports whether this host is itself a virtual machine (the
// CPU's hypervisor flag), where nested KVM often cannot run a stock guest.
func insideVM() bool {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "flags" {
			return strings.Contains(" "+v+" ", " hypervisor ")
		}
	}
	return false
}

func (vb *qemuSandbox) makeHome(*session) (string, error) {
	var err error
	if vb.dir, err = os.MkdirTemp("", "cork-qemu-"); err != nil {
		return "", fmt.Errorf("sandbox home: %w", err)
	}
	home := filepath.Join(vb.dir, "home")
	for _, d := range []string{home, filepath.Join(vb.dir, "ctl"), filepath.Join(vb.dir, "sock")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return "", fmt.Errorf("sandbox home: %w", err)
		}
	}
	return home, nil
}

// startProxy serves the proxy in cork on a Unix socket in a private
// directory; QEMU's relays reach it, on the guest's behalf.
func (vb *qemuSandbox) startProxy(_ context.Context, s *session) (*sessionProxy, error) {
	vb.sock = filepath.Join(vb.dir, "sock", proxySocket)
	ln, err := net.Listen("unix", vb.sock)
	if err != nil {
		return nil, fmt.Errorf("proxy socket: %w", err)
	}
	auth := sessionAuth()
	if vb.ip, err = startInProcess(s.spec, ln, s.tokens, auth); err != nil {
		ln.Close()
		return nil, err
	}
	s.spec.progress("proxy listening on %s (the VM reaches it at %s, through QEMU and cork relay)", vb.sock, guest.ProxyAddr)
	return &sessionProxy{url: proxyURL(auth, guest.ProxyAddr), sink: vb.ip.proxy, caPEM: vb.ip.proxy.CACertPEM()}, nil
}

func (vb *qemuSandbox) run(ctx context.Context, s *session, env map[string]string) (int, error) {
	spec := s.spec
	dir := QemuHome
	if vb.workspace != "" {
		dir = QemuWorkspace
	}
	gs := guest.Spec{Argv: spec.Command, Env: envList(env), Dir: dir, Home: QemuHome, Root: vb.root}
	if vb.workspace != "" {
		gs.Workspace = QemuWorkspace
	}
	data, err := json.Marshal(gs)
	if err != nil {
		return 0, err
	}
	ctl := filepath.Join(vb.dir, "ctl")
	if err := os.WriteFile(filepath.Join(ctl, guest.SpecFile), data, 0o600); err != nil {
		return 0, fmt.Errorf("guest spec: %w", err)
	}
	cmd := exec.Command(vb.bin, vb.args(s.home, ctl)...)
	cmd.Env = qemuProcessEnv(spec)
	cmd.Dir = vb.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	grouped := !isTerminal(spec.Stdin) // as for local: see localSandbox.run
	if grouped {
		ownProcessGroup(cmd)
	}
	cmd.WaitDelay = outputDrain
	spec.progress("starting a microVM (%s); running %s", vb.accel, filepath.Base(spec.Command[0]))
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", vb.bin, err)
	}
	code, err := waitChild(ctx, cmd, grouped)
	if err != nil {
		return code, err
	}
	if ctx.Err() != nil {
		// Stopped: QEMU exits 0 on SIGTERM; report what a command killed
		// by it would.
		return 128 + int(syscall.SIGTERM), nil
	}
	if code != 0 {
		return 0, fmt.Errorf("qemu exited with status %d before the guest reported (see its messages above)", code)
	}
	line, err := readStatus(filepath.Join(ctl, guest.StatusFile))
	if err != nil {
		return 0, errors.New("qemu: the guest ended without reporting the command's status (is the initramfs cork-guest's?)")
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return 0, &SetupError{Err: fmt.Errorf("qemu guest: %s", msg)}
	}
	if code, err = strconv.Atoi(line); err != nil {
		return 0, fmt.Errorf("qemu: the guest reported %q, not an exit status", line)
	}
	spec.progress("microVM exited with status %d; tearing down", code)
	return code, nil
}

// readStatus reads the guest's status line. The guest writes the control
// share, so the file is not followed if it is a link and is read only so
// far: a guest must not make cork read, or print, a host file.
func readStatus(p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	line, _, _ := strings.Cut(string(b[:n]), "\n")
	return strings.ToValidUTF8(strings.TrimSpace(line), "?"), nil
}

// args are QEMU's arguments, in a fixed order.
func (vb *qemuSandbox) args(home, ctl string) []string {
	mem := vb.cfg.Memory
	if mem <= 0 {
		mem = DefaultQemuMemory
	}
	cmdline := "panic=-1 quiet"
	if khz := hostTSCkHz(); khz > 0 {
		// Without it a TCG guest may hang calibrating its clock.
		cmdline += " tsc_early_khz=" + strconv.Itoa(khz)
	}
	a := []string{"-M", "microvm", "-accel", vb.accel, "-cpu", "max", "-m", strconv.Itoa(mem), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", qemuValue(vb.kernel), "-initrd", qemuValue(vb.initrd), "-append", cmdline,
		// The only network: QEMU's user mode, restricted, with one
		// forwarded endpoint, relayed per connection to the proxy.
		"-netdev", "user,id=n0,restrict=on,ipv6=off,guestfwd=tcp:" + guest.ProxyAddr + "-cmd:" + qemuCmd(append(vb.relay, vb.sock)),
		"-device", "virtio-net-device,netdev=n0",
	}
	share := func(id, tag, path, opts string) {
		a = append(a, "-fsdev", "local,id="+id+",path="+qemuValue(path)+","+opts,
			"-device", "virtio-9p-device,fsdev="+id+",mount_tag="+tag)
	}
	rw := writableShareModel()
	share("ctl", guest.ControlTag, ctl, rw)
	share("home", guest.HomeTag, home, rw)
	if vb.workspace != "" {
		share("ws", guest.WorkspaceTag, vb.workspace, rw)
	}
	switch vb.root {
	case guest.RootShare:
		// Read-only, so passed through as it is: links work, and the
		// guest writes nothing there (its /tmp is its own).
		share("root", guest.RootTag, vb.image, "security_model=none,readonly=on")
	case guest.RootBlock:
		// A snapshot: the guest's writes never reach the image.
		a = append(a, "-drive", "file="+qemuValue(vb.image)+",format=raw,if=none,id=root,snapshot=on",
			"-device", "virtio-blk-device,drive=root")
	}
	return a
}

// qemuCmd quotes argv for guestfwd's cmd: (libslirp splits it as a
// shell would, g_shell_parse_argv, and runs it without one), a comma
// doubled (qemuValue).
func qemuCmd(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return qemuValue(strings.Join(q, " "))
}

// qemuValue is v as the value of a QEMU option: a comma would end it, so
// it is doubled.
func qemuValue(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// writableShareModel is the 9p security model of the shares the guest
// writes (home, workspace, control). Run as root, QEMU would pass the
// guest's owners and modes through: mapped-xattr instead keeps them in
// extended attributes, and what the guest creates is cork's user's, 0600
// or 0700 — no root-owned or setuid file planted on the host, at the
// price of symbolic links (the guest sees none). Run as a user, QEMU
// cannot create another user's file: none, passed through, links and all.
func writableShareModel() string {
	if os.Geteuid() == 0 {
		return "security_model=mapped-xattr"
	}
	return "security_model=none"
}

// hostTSCkHz is the host's CPU clock in kHz (/proc/cpuinfo), 0 if unknown.
func hostTSCkHz() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

// qemuProcessEnv is QEMU's own environment: where it finds its files, and
// nothing that holds a credential.
func qemuProcessEnv(spec *Spec) []string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_ALL", "TERM", "XDG_RUNTIME_DIR"} {
		if v, ok := spec.HostEnv[k]; ok {
			env[k] = v
		}
	}
	return envList(env)
}

func (vb *qemuSandbox) teardown(*session) error {
	var errs []error
	if vb.ip != nil {
		errs = append(errs, vb.ip.Close())
	}
	if vb.dir != "" {
		errs = append(errs, os.RemoveAll(vb.dir))
	}
	return errors.Join(errs...)
}

// readableFile checks that p is a regular file cork can open.
func readableFile(p string) error {
	f, st, err := openStat(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if st.IsDir() {
		return fmt.Errorf("%s: is a directory", p)
	}
	return nil
}
