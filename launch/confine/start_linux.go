package confine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Supported reports whether this system has the local sandbox.
const Supported = true

// Sandbox is one confined command, from New to Close.
type Sandbox struct {
	// Cmd is init. Set its Stdin, Stdout and Stderr (the command's), and
	// Setpgid in its SysProcAttr if wanted, before Start; wait for it as
	// for the command: its exit status is the command's.
	Cmd *exec.Cmd
	// Layers name what confines the command, for a progress line; set by
	// Start.
	Layers []string
	// Notes are things the caller should tell the user (a hard link to a
	// credential file that had to be hidden, ...).
	Notes []string

	spec             initSpec
	specR, specW     *os.File
	statusR, statusW *os.File
	dir              *os.File
}

// New prepares a sandbox for s without starting anything. Errors are
// one line naming what is wrong.
func New(s *Spec) (*Sandbox, error) {
	if !hooked.Load() {
		return nil, errNotHooked
	}
	if len(s.Argv) == 0 {
		return nil, errorf("sandbox: no command")
	}
	view := s.View
	view.ReadOnly = append(slices.Clip(view.ReadOnly), commandDirs(s.Argv[0], s.Dir, s.Env)...)
	mounts, secrets, err := view.mounts()
	if err != nil {
		return nil, err
	}
	var notes []string
	linked, err := linkedSecrets(secrets, mounts)
	if err != nil {
		return nil, err
	}
	for _, l := range linked {
		mounts = append(mounts, mount{Op: opHide, Path: l.link})
		notes = append(notes, fmt.Sprintf("%s is a hard link to the hidden %s; it is hidden too", l.link, l.secret))
	}
	empty := filepath.Join(s.SocketDir, "empty")
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	sb := &Sandbox{Notes: notes}
	sb.spec = initSpec{
		Argv: s.Argv, Env: s.Env, Dir: s.Dir,
		Mounts: mounts, EmptyFile: empty,
		SocketName: s.SocketName, Port: s.Port,
		RunAs: s.RunAs, ForwardInterrupt: s.ForwardInterrupt,
		Restrict: restrictFor(mounts),
	}
	sb.spec.Restrict.NoLandlock = s.NoLandlock
	if sb.dir, err = os.OpenFile(s.SocketDir, unix.O_PATH|unix.O_DIRECTORY, 0); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if sb.specR, sb.specW, err = os.Pipe(); err != nil {
		sb.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if sb.statusR, sb.statusW, err = os.Pipe(); err != nil {
		sb.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	sb.Cmd = &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{initArg0},
		Env:        []string{"GOTRACEBACK=none"}, // init's own: nothing of cork's environment
		ExtraFiles: []*os.File{sb.specR, sb.statusW, sb.dir},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneFlags,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	mapIDs(sb.Cmd.SysProcAttr, s.RunAs)
	return sb, nil
}

// cloneFlags are the sandbox's namespaces.
const cloneFlags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
	syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET

// Probe reports whether this system lets cork create the sandbox's
// namespaces, by running `true` in them; the error is the one-line
// explanation Start would give.
func Probe() error {
	path, err := exec.LookPath("true")
	if err != nil {
		return fmt.Errorf("local sandbox probe: %w", err)
	}
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags}
	mapIDs(cmd.SysProcAttr, nil)
	if err := cmd.Run(); err != nil {
		return userNamespaceError(err)
	}
	return nil
}

// mapIDs maps cork's user into the new user namespace: itself when not
// root; as root, uid 0 (init needs it to switch to RunAs) and RunAs.
func mapIDs(attr *syscall.SysProcAttr, runAs *User) {
	uid, gid := os.Getuid(), os.Getgid()
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
	if uid != 0 {
		// Exec clears the capabilities of a non-zero uid: init keeps the
		// ones it needs (mounts, loopback; the thread that starts the
		// command then empties the bounding set) as ambient capabilities of the new
		// namespace.
		attr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETPCAP}
		return
	}
	attr.GidMappingsEnableSetgroups = true
	if runAs != nil && runAs.UID != 0 {
		attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: runAs.UID, HostID: runAs.UID, Size: 1})
		if runAs.GID != gid {
			attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: runAs.GID, HostID: runAs.GID, Size: 1})
		}
	}
}

// Start starts init and waits until the command has been exec'd (or has
// failed to start, which is an error). ctx bounds only the wait.
func (sb *Sandbox) Start(ctx context.Context) error {
	if err := sb.Cmd.Start(); err != nil {
		return userNamespaceError(err)
	}
	sb.specR.Close()
	sb.statusW.Close()
	sb.dir.Close()
	b, err := json.Marshal(sb.spec)
	if err != nil {
		return err
	}
	go sb.specW.Write(b) // the pipe stays open: init's lifeline

	type result struct {
		layers []string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		sc := bufio.NewScanner(sb.statusR)
		for sc.Scan() {
			var st status
			if json.Unmarshal(sc.Bytes(), &st) != nil {
				continue
			}
			if st.Error != "" && r.err == nil {
				r.err = &Error{Msg: st.Error}
			}
			r.layers = append(r.layers, st.Layers...)
		}
		done <- r
	}()
	select {
	case r := <-done:
		sb.Layers = append([]string{"namespaces user,mount,pid,ipc,uts,net"}, r.layers...)
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends init's lifeline (which stops the sandbox if it still runs)
// and releases the descriptors. Call it once init has been waited for.
func (sb *Sandbox) Close() error {
	for _, f := range []*os.File{sb.specR, sb.specW, sb.statusR, sb.statusW, sb.dir} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

// userNamespaceError turns the kernel's refusal of a user namespace into
// a line that says what to do.
func userNamespaceError(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSPC) ||
		errors.Is(err, unix.EUSERS) || errors.Is(err, unix.EINVAL) {
		return errorf("local sandbox: the kernel refused an unprivileged user namespace (%v): allow it "+
			"(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces>0; on Ubuntu 24.04 or later "+
			"kernel.apparmor_restrict_unprivileged_userns=0), run cork as root, or use --backend docker "+
			"(--no-isolate runs the command unconfined)", unwrapErrno(err))
	}
	return fmt.Errorf("local sandbox: start: %w", err)
}

func unwrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// commandDirs are the directories of the command, as named and with
// every link resolved, that lie in the host's /tmp, which the sandbox
// replaces: they are shown read-only so that the command can run (the
// command alone when it lies in /tmp itself).
func commandDirs(argv0, dir string, env []string) []string {
	path := argv0
	if strings.Contains(argv0, "/") && !filepath.IsAbs(argv0) {
		path = filepath.Join(dir, argv0)
	}
	if !strings.Contains(argv0, "/") {
		for _, kv := range env {
			if p, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = lookIn(argv0, p)
			}
		}
	}
	if path == "" {
		return nil
	}
	var out []string
	add := func(file string) {
		if !within(file, "/tmp") || file == "/tmp" {
			return
		}
		if d := filepath.Dir(file); d != "/tmp" {
			file = d
		}
		if !slices.Contains(out, file) {
			out = append(out, file)
		}
	}
	if abs, err := filepath.Abs(path); err == nil {
		if dir, err := realPath(filepath.Dir(abs)); err == nil {
			add(filepath.Join(dir, filepath.Base(abs)))
		}
	}
	if r, err := realPath(path); err == nil {
		add(r)
	}
	return out
}

func lookIn(name, path string) string {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// restrictFor is what the command may write: the read-write binds, the
// sandbox's own /tmp and /dev/shm, its terminals and a few devices.
func restrictFor(ms []mount) Restrict {
	r := Restrict{
		RWDirs: []string{"/tmp", "/dev/shm"},
		// Devices need the ioctl right RWDirs does not give.
		RWFiles: []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/random", "/dev/urandom"},
	}
	for _, m := range ms {
		if m.Op == opBind && m.RW {
			r.RWDirs = append(r.RWDirs, m.Path)
		}
	}
	return r
}
