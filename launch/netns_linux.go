package launch

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// netns is a network namespace holding only loopback, created on a
// dedicated OS thread. The proxy's listener is opened inside it, so from a
// child started in it the proxy is the only thing reachable: no other
// port of the host, no other address. The proxy's own upstream dials run
// on other threads, in the host's namespace.
type netns struct {
	ln   net.Listener
	reqs chan nsReq
	done chan struct{}
}

type nsReq struct {
	cmd *exec.Cmd
	err chan error
}

// newNetns unshares a network namespace on a locked thread, brings its
// loopback up and listens on 127.0.0.1:0 there. It needs CAP_SYS_ADMIN.
func newNetns() (*netns, error) {
	ns := &netns{reqs: make(chan nsReq), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// The thread is never unlocked: when this goroutine returns the
		// runtime ends the thread rather than reuse it in the wrong
		// namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare network namespace: %w (needs root or CAP_SYS_ADMIN)", err)
			return
		}
		if err := loopbackUp(); err != nil {
			ready <- err
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ready <- fmt.Errorf("listen in namespace: %w", err)
			return
		}
		ns.ln = ln
		ready <- nil
		for {
			select {
			case r := <-ns.reqs:
				// Forked from this thread, the child inherits the namespace.
				r.err <- r.cmd.Start()
			case <-ns.done:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return ns, nil
}

// start starts cmd inside the namespace.
func (ns *netns) start(cmd *exec.Cmd) error {
	r := nsReq{cmd: cmd, err: make(chan error, 1)}
	ns.reqs <- r
	return <-r.err
}

// Close ends the namespace's thread; the namespace goes away with its
// last process and socket.
func (ns *netns) Close() error {
	close(ns.done)
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", errors.Unwrap(err))
	}
	return nil
}

// protectProcess makes cork's own /proc entries (environ, mem, fds) owned
// by root and refuses ptrace from same-user processes: a sandboxed child
// runs as the same user and would otherwise read the host credentials in
// cork's environment from /proc/<cork>/environ. exec resets the flag, so
// the child itself is unaffected.
func protectProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}

// confine keeps a child started in the namespace from leaving it. A root
// cork (the usual way to get --isolate-net) would otherwise start the
// command as root with every capability, and root can simply re-enter the
// host's network namespace (nsenter -t 1 -n). Under sudo the command runs
// as the invoking user (SUDO_UID/SUDO_GID), who gets the sandbox home;
// as plain root it runs in a user namespace of its own, root inside it but
// without capabilities over the host's namespaces. Not root: nothing to do.
func confine(cmd *exec.Cmd, home string, hostEnv map[string]string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	uid, errU := strconv.Atoi(hostEnv["SUDO_UID"])
	gid, errG := strconv.Atoi(hostEnv["SUDO_GID"])
	if errU == nil && errG == nil && uid > 0 {
		err := filepath.WalkDir(home, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("sandbox home for uid %d: %w", uid, err)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		return nil
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
	cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
	cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
	return nil
}
