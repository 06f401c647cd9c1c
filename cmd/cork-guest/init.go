//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cork-sh/cork/internal/guest"
)

// console is the serial port the host reads the command's output from.
const console = "/dev/ttyS0"

// guestInit is PID 1: it sets the guest up, runs the command, reports its
// status in the control share and powers off. A step that fails is
// reported there as "error: …" (and on the console) instead.
func guestInit() {
	code, err := initAndRun()
	status := strconv.Itoa(code)
	if err != nil {
		status = "error: " + err.Error()
		if c, cerr := os.OpenFile(console, os.O_WRONLY, 0); cerr == nil {
			fmt.Fprintf(c, "cork-guest: %v\n", err)
			c.Close()
		}
	}
	_ = os.WriteFile(filepath.Join(guest.ControlDir, guest.StatusFile), []byte(status+"\n"), 0o644)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // PID 1 must not exit
}

func initAndRun() (int, error) {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := mount(m.src, m.dst, m.fstype, ""); err != nil {
			return 0, err
		}
	}
	if err := loadModules("/" + modulesDir); err != nil {
		return 0, err
	}
	if err := mount(guest.ControlTag, guest.ControlDir, "9p", p9); err != nil {
		return 0, err
	}
	data, err := os.ReadFile(filepath.Join(guest.ControlDir, guest.SpecFile))
	if err != nil {
		return 0, err
	}
	var spec guest.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return 0, fmt.Errorf("%s: %w", guest.SpecFile, err)
	}
	if len(spec.Argv) == 0 {
		return 0, errors.New(guest.SpecFile + ": no command")
	}
	root, err := mountRoot(spec)
	if err != nil {
		return 0, err
	}
	if err := commandMounts(root); err != nil {
		return 0, err
	}
	if err := mount(guest.HomeTag, root+spec.Home, "9p", p9); err != nil {
		return 0, err
	}
	if spec.Workspace != "" {
		if err := mount(guest.WorkspaceTag, root+spec.Workspace, "9p", p9); err != nil {
			return 0, err
		}
	}
	if err := network(); err != nil {
		return 0, err
	}
	return run(spec, root)
}

// p9 are the 9p mount options: virtio transport, the Linux dialect.
const p9 = "trans=virtio,version=9p2000.L,msize=262144"

func mount(src, dst, fstype, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, fstype, 0, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, dst, err)
	}
	return nil
}

// loadModules loads the modules dir/order names, in that order. One the
// kernel has already (built in, or loaded) is fine.
func loadModules(dir string) error {
	order, err := os.ReadFile(filepath.Join(dir, "order"))
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		flags := 0
		if strings.HasSuffix(name, ".xz") || strings.HasSuffix(name, ".zst") || strings.HasSuffix(name, ".gz") {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		err = unix.FinitModule(int(f.Fd()), "", flags)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

// mountRoot mounts the root image, if any, and returns the directory
// the command's root is ("" for the initramfs).
func mountRoot(spec guest.Spec) (string, error) {
	const newRoot = "/newroot"
	switch spec.Root {
	case guest.RootInitramfs:
		return "", nil
	case guest.RootBlock:
		return newRoot, mount("/dev/vda", newRoot, "ext4", "")
	case guest.RootShare:
		// The host directory is shared read-only; an overlay with a
		// tmpfs on top gives the command a root it can write (and the
		// mount points cork needs), the writes staying in the guest.
		if err := mount(guest.RootTag, "/lower", "9p", p9+",ro"); err != nil {
			return "", err
		}
		if err := mount("tmpfs", "/upper", "tmpfs", "mode=0755"); err != nil {
			return "", err
		}
		for _, d := range []string{"/upper/data", "/upper/work"} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return "", err
			}
		}
		return newRoot, mount("overlay", newRoot, "overlay", "lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work")
	}
	return "", fmt.Errorf("%s: unknown root %q", guest.SpecFile, spec.Root)
}

// commandMounts gives the command's root what programs expect: /dev,
// /proc and /sys (the guest's, in a root image), and a private /tmp.
func commandMounts(root string) error {
	if root != "" {
		for _, m := range []struct{ src, dst, fstype string }{
			{"devtmpfs", "/dev", "devtmpfs"},
			{"proc", "/proc", "proc"},
			{"sysfs", "/sys", "sysfs"},
		} {
			if err := mount(m.src, root+m.dst, m.fstype, ""); err != nil {
				return err
			}
		}
	}
	if err := mount("tmpfs", root+"/tmp", "tmpfs", "mode=1777"); err != nil {
		return err
	}
	return mount("devpts", root+"/dev/pts", "devpts", "newinstance,ptmxmode=0666")
}

// network brings up lo and eth0 at guest.GuestCIDR: the proxy's forwarded
// address is on the link, so no route is needed (and there is none).
func network() error {
	if err := ifUp("lo", nil, nil); err != nil {
		return err
	}
	ip, ipn, err := net.ParseCIDR(guest.GuestCIDR)
	if err != nil {
		return err
	}
	return ifUp("eth0", ip.To4(), net.IP(ipn.Mask).To4())
}

func ifUp(name string, addr, mask net.IP) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	set := func(req uint, ip net.IP) error {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(ip); err != nil {
			return err
		}
		return unix.IoctlIfreq(fd, req, ifr)
	}
	if addr != nil {
		if err := set(unix.SIOCSIFADDR, addr); err != nil {
			return fmt.Errorf("%s: address: %w", name, err)
		}
		if err := set(unix.SIOCSIFNETMASK, mask); err != nil {
			return fmt.Errorf("%s: netmask: %w", name, err)
		}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: up: %w", name, err)
	}
	return nil
}

// run runs the command on the console, in root (chroot when not ""),
// reaps every orphan meanwhile (this is PID 1), and returns its status:
// 128+n when killed by signal n.
func run(spec guest.Spec, root string) (int, error) {
	tty, err := os.OpenFile(console, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer tty.Close()
	rawConsole(tty)
	env := spec.Env
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		env = append(env, "PATH="+defaultPath)
	}
	path := spec.Argv[0]
	if !strings.Contains(path, "/") {
		// Looked up in the sandbox's PATH, inside its root (not in this
		// init's environment, which has none).
		path = lookPath(root, path, env)
	}
	cmd := &exec.Cmd{Path: path, Args: spec.Argv, Env: env}
	cmd.Dir = spec.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Chroot: root}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			return 0, fmt.Errorf("wait: %w", err)
		}
		if pid != cmd.Process.Pid {
			continue // an orphan
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}

// defaultPath is the command's PATH when the sandbox sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds name in env's PATH under root; name itself if not found
// (the start then fails with its own error).
func lookPath(root, name string, env []string) string {
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		// Lstat: a link resolves inside the command's root, not this
		// init's (the exec in the chroot follows it there).
		st, err := os.Lstat(root + p)
		if err == nil && (st.Mode()&os.ModeSymlink != 0 || (st.Mode().IsRegular() && st.Mode()&0o111 != 0)) {
			return p
		}
	}
	return name
}

// rawConsole turns off the console's line discipline conversions, so
// that the command's bytes reach the host as written.
func rawConsole(f *os.File) {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return
	}
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Iflag &^= unix.ICRNL | unix.INLCR | unix.IGNCR | unix.IXON
	_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}
