package confine

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// devices are the host device nodes the sandbox's /dev holds; nothing
// else of the host's /dev shows (no disks, no other terminal).
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// buildView turns the new mount namespace into the sandbox's view:
// the host tree read-only, then a private /dev and /tmp, then the plan's
// binds and hides in order, then a /proc of the new PID namespace.
// emptyFile is a host path of an empty file, the source of file hides.
func buildView(ms []mount, emptyFile string) error {
	// Nothing done here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	srcs, err := openSources(ms, emptyFile)
	if err != nil {
		return err
	}
	defer srcs.close()

	if err := readOnlyTree(); err != nil {
		return err
	}
	if err := privateDev(func(d string) (string, bool) {
		_, ok := srcs["/dev/"+d]
		return srcs.path("/dev/" + d), ok
	}); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("private /tmp: %w", err)
	}
	if st, err := os.Stat("/run"); err == nil && st.IsDir() {
		if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return fmt.Errorf("private /run: %w", err)
		}
	}
	var sealed []string // tmpfs hides, made read-only once filled
	for _, m := range ms {
		seal, err := applyStep(m, srcs, emptyFile)
		if err != nil {
			return err
		}
		if seal {
			sealed = append(sealed, m.Path)
		}
	}
	for _, p := range sealed {
		if err := setReadOnly(p, true); err != nil {
			return fmt.Errorf("seal %s: %w", p, err)
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc for the PID namespace: %w", err)
	}
	return guardProc(srcs.path(emptyFile))
}

// sources are O_PATH descriptors of every bind's source, the empty file
// and the devices, opened before anything is mounted over them: a bind of
// something under /tmp or /dev then still finds it.
type sources map[string]int

func openSources(ms []mount, emptyFile string) (sources, error) {
	srcs := sources{}
	open := func(p string) error {
		if _, ok := srcs[p]; ok {
			return nil
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		srcs[p] = fd
		return nil
	}
	for _, m := range ms {
		if m.Op == opBind {
			if err := open(m.Src); err != nil {
				srcs.close()
				return nil, err
			}
		}
	}
	if err := open(emptyFile); err != nil {
		srcs.close()
		return nil, err
	}
	for _, d := range devices {
		if err := open("/dev/" + d); err != nil && d != "tty" {
			srcs.close()
			return nil, err
		}
	}
	return srcs, nil
}

// path is p through its descriptor.
func (s sources) path(p string) string { return "/proc/self/fd/" + strconv.Itoa(s[p]) }

func (s sources) close() {
	for _, fd := range s {
		unix.Close(fd)
	}
}

// applyStep performs one step of the view; seal reports a tmpfs to make
// read-only once every step is done.
func applyStep(m mount, srcs sources, emptyFile string) (seal bool, err error) {
	switch m.Op {
	case opHideHome:
		if err := unix.Mount("tmpfs", m.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
			return false, fmt.Errorf("hide %s: %w", m.Path, err)
		}
		return true, nil
	case opMask:
		done, err := mask(m.Path, m.Drop, srcs.path(emptyFile))
		if err != nil {
			return false, fmt.Errorf("hide in %s: %w", m.Path, err)
		}
		return done, nil
	case opHide:
		if _, err := os.Lstat(m.Path); err != nil {
			return false, nil // under a hidden home already
		}
		if m.Dir {
			if err := unix.Mount("tmpfs", m.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=16k"); err != nil {
				return false, fmt.Errorf("hide %s: %w", m.Path, err)
			}
			return true, nil
		}
		if err := bind(srcs.path(emptyFile), m.Path, false); err != nil {
			return false, fmt.Errorf("hide %s: %w", m.Path, err)
		}
	case opBind:
		if err := mountPoint(m.Path, srcs[m.Src]); err != nil {
			return false, fmt.Errorf("bind %s: %w", m.Path, err)
		}
		if err := bind(srcs.path(m.Src), m.Path, m.RW); err != nil {
			return false, fmt.Errorf("bind %s: %w", m.Path, err)
		}
	}
	return false, nil
}

// procReadOnly are the parts of /proc that write to the kernel itself
// (sysctls, the SysRq trigger, IRQ affinity): a command that is uid 0 —
// cork run as plain root — needs no capability to write some of them,
// core_pattern among them. procMasked are read-outs of kernel memory,
// keys and timers. The lists are runc's.
var (
	procReadOnly = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}
	procMasked   = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats", "/proc/acpi", "/proc/scsi"}
)

// guardProc makes procReadOnly read-only and hides procMasked (files
// under empty, directories under an empty read-only tmpfs).
func guardProc(empty string) error {
	for _, p := range procReadOnly {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := bind(p, p, false); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	for _, p := range procMasked {
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if err := hideAt(p, st.IsDir(), empty); err != nil {
			return err
		}
	}
	return nil
}

// hideAt hides the path p under an empty read-only tmpfs (a directory) or
// the empty file.
func hideAt(p string, dir bool, empty string) error {
	var err error
	if dir {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k")
	} else {
		err = bind(empty, p, false)
	}
	if err != nil {
		return fmt.Errorf("hide %s: %w", p, err)
	}
	return nil
}

// mask replaces the directory d by a tmpfs that shows what d holds now,
// but for the names in drop: entries are bound back (symbolic links
// copied), so they stay live, while d's own list of names is fixed. A
// name the host adds to d later does not show; nor does one it renames
// over (the bind goes with the old file). It reports false when d is not
// in this view (under an emptied home, say) or cannot be listed; then
// the names in drop are overmounted one by one (empty is the source of
// file hides).
func mask(d string, drop []string, empty string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(d, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, nil
	}
	ents, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrPermission) {
		return false, overmount(d, drop, empty)
	}
	if err != nil {
		return false, err
	}
	// The entries are reached through a descriptor of d once the tmpfs
	// covers it: one descriptor, whatever the number of entries.
	dfd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(dfd)
	under := "/proc/self/fd/" + strconv.Itoa(dfd) + "/"
	opts := fmt.Sprintf("mode=%o", st.Mode&0o7777)
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return false, err
	}
	unix.Chown(d, int(st.Uid), int(st.Gid)) // where the owner is mapped; cosmetic otherwise
	for _, e := range ents {
		if slices.Contains(drop, e.Name()) {
			continue
		}
		p := filepath.Join(d, e.Name())
		var err error
		switch {
		case e.Type()&os.ModeSymlink != 0:
			var target string
			if target, err = os.Readlink(under + e.Name()); err == nil {
				err = os.Symlink(target, p)
			}
		case e.IsDir():
			if err = os.Mkdir(p, 0o755); err == nil {
				err = bind(under+e.Name(), p, false)
			}
		default:
			if err = os.WriteFile(p, nil, 0o644); err == nil {
				err = bind(under+e.Name(), p, false)
			}
		}
		if err == nil {
			continue
		}
		os.Remove(p)
		// Gone between the listing and the bind (the host changes the
		// directory as the sandbox starts): hidden, which fails closed.
		if !errors.Is(err, unix.ENOENT) {
			return true, fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return true, nil
}

// overmount hides each name of drop in d under an empty read-only tmpfs
// (a directory) or the empty file.
func overmount(d string, drop []string, empty string) error {
	for _, name := range drop {
		p := filepath.Join(d, name)
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if err := hideAt(p, st.IsDir(), empty); err != nil {
			return err
		}
	}
	return nil
}

// bind mounts src (a path, or a /proc/self/fd link) at target,
// read-write or read-only.
func bind(src, target string, rw bool) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return setReadOnly(target, !rw)
}

// setReadOnly sets or clears the read-only flag of the mount at p (not
// of the mounts under it).
func setReadOnly(p string, ro bool) error {
	attr := &unix.MountAttr{}
	if ro {
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	} else {
		attr.Attr_clr = unix.MOUNT_ATTR_RDONLY
	}
	err := unix.MountSetattr(-1, p, 0, attr)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	// Before Linux 5.12: a bind remount keeping the flags the mount has
	// (a user namespace may not clear nosuid, nodev or noexec).
	flags, err := mountFlags(p)
	if err != nil {
		return err
	}
	flags &^= unix.MS_RDONLY
	if ro {
		flags |= unix.MS_RDONLY
	}
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
}

func mountFlags(p string) (uintptr, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return 0, err
	}
	// statfs's ST_* bits have the values of the MS_* ones.
	keep := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	return uintptr(st.Flags) & keep, nil
}

// readOnlyTree makes every mount of the namespace read-only.
func readOnlyTree() error {
	err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	if !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return fmt.Errorf("make the host tree read-only: %w", err)
		}
		return nil
	}
	points, err := mountPoints()
	if err != nil {
		return fmt.Errorf("make the host tree read-only: %w", err)
	}
	for _, p := range points {
		if err := setReadOnly(p, true); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

// mountPoints lists the namespace's mount points, shallow first.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMountinfo(fields[4]))
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return depth(a) - depth(b) })
	return out, sc.Err()
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// privateDev replaces /dev with a small tmpfs holding the host's null,
// zero, full, random, urandom and tty, a devpts instance of its own (so no
// other terminal of the host is reachable) and a private /dev/shm.
func privateDev(src func(dev string) (string, bool)) error {
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("private /dev: %w", err)
	}
	for _, d := range devices {
		s, ok := src(d)
		if !ok {
			continue
		}
		p := "/dev/" + d
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return fmt.Errorf("private /dev: %w", err)
		}
		if err := unix.Mount(s, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("private /dev: bind %s: %w", p, err)
		}
	}
	for _, d := range []string{"/dev/pts", "/dev/shm"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("private /dev: %w", err)
		}
	}
	if err := unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("private /dev/pts: %w", err)
	}
	if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("private /dev/shm: %w", err)
	}
	links := [][2]string{{"pts/ptmx", "/dev/ptmx"}, {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}}
	for _, l := range links {
		if err := os.Symlink(l[0], l[1]); err != nil {
			return fmt.Errorf("private /dev: %w", err)
		}
	}
	return nil
}

// mountPoint makes sure target exists, as a directory or a file like the
// source behind fd, creating it (and its parents) when it lies in one of
// the sandbox's own tmpfs directories.
func mountPoint(target string, fd int) error {
	if _, err := os.Lstat(target); err == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	return os.WriteFile(target, nil, 0o644)
}
