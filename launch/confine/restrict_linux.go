//go:build linux && (amd64 || arm64)

package confine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Restrict is what init's command-starting thread applies to itself just
// before it forks and execs the command: no capability, no_new_privs, a Landlock domain and a seccomp
// filter. Everything is read+execute except the paths it names. The zero
// value leaves the whole tree read-only (except /proc). A Restrict is a
// plain value; apply changes the calling thread, not the Restrict.
type Restrict struct {
	// RWDirs are trees the command may read, write, execute, create and
	// remove in, and rename or link within (workspace, sandbox HOME, /tmp,
	// /dev/shm, extra --read-write paths). Pathname Unix sockets in them
	// may be connected to (Landlock ABI 9+; elsewhere they may not).
	RWDirs []string
	// RWFiles are single files (or trees of files) the command may read
	// and write, with device ioctls: /dev/null, /dev/zero, /dev/full,
	// /dev/tty, /dev/ptmx. A terminal program that opens a pty pair also
	// needs /dev/pts here.
	RWFiles []string
	// NoLandlock leaves Landlock out (a kernel where it misbehaves): the
	// namespaces, the read-only view and seccomp still confine.
	NoLandlock bool
}

// Securebits (linux/securebits.h; x/sys/unix does not name them).
const (
	secbitNoroot                  = 1 << 0
	secbitNorootLocked            = 1 << 1
	secbitNoSetuidFixup           = 1 << 2
	secbitNoSetuidFixupLocked     = 1 << 3
	secbitKeepCapsLocked          = 1 << 5
	secbitNoCapAmbientRaise       = 1 << 6
	secbitNoCapAmbientRaiseLocked = 1 << 7

	// pureCaps makes uid 0 mean nothing to the kernel from here on and
	// locks it so: no capability from a root uid or a setuid-root exec,
	// none kept across setuid (KEEP_CAPS off and locked: there is nothing
	// to keep), no ambient capability raised.
	pureCaps = secbitNoroot | secbitNorootLocked |
		secbitNoSetuidFixup | secbitNoSetuidFixupLocked |
		secbitKeepCapsLocked |
		secbitNoCapAmbientRaise | secbitNoCapAmbientRaiseLocked
)

// landlockScoped is the IPC the command may not use towards processes
// outside its domain (init, and anything on the host): signals and
// abstract Unix sockets (ABI 6).
const landlockScoped = ll.ScopeAbstractUnixSocket | ll.ScopeSignal

// landlockFS is every filesystem right go-landlock knows. The kernel's
// ABI trims it (BestEffort).
const landlockFS = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
	ll.AccessFSReadDir | ll.AccessFSRemoveDir | ll.AccessFSRemoveFile |
	ll.AccessFSMakeChar | ll.AccessFSMakeDir | ll.AccessFSMakeReg |
	ll.AccessFSMakeSock | ll.AccessFSMakeFifo | ll.AccessFSMakeBlock |
	ll.AccessFSMakeSym | ll.AccessFSRefer | ll.AccessFSTruncate |
	ll.AccessFSIoctlDev | ll.AccessFSResolveUnix

// apply restricts the calling OS thread, which must then start the command:
// every layer is per thread (seccomp without TSYNC, Landlock on this thread
// only), and execve hands the thread's state to the new program. apply
// locks the calling goroutine to its thread and never unlocks it, so the
// goroutine cannot move off the restricted thread and the runtime
// retires the thread when the goroutine ends.
//
// In order: no_new_privs; when the thread holds CAP_SETPCAP, securebits
// (pureCaps) and the bounding set emptied; ambient, inheritable,
// permitted and effective sets emptied (always: giving up needs no
// privilege); Landlock at the kernel's best ABI (none when the kernel has
// no Landlock); the seccomp filter. It returns the layers it applied in
// words for a progress line, e.g. ["capabilities", "landlock ABI 7",
// "seccomp"]. An error means the thread must not start the command; the
// thread may then be partly restricted.
func (r Restrict) apply() (layers []string, err error) {
	runtime.LockOSThread() // never unlocked: see the doc comment

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("set no_new_privs: %w", err)
	}
	dropped, err := dropCaps()
	if err != nil {
		return nil, err
	}
	if dropped || boundingEmpty() {
		layers = append(layers, "capabilities")
	}
	var abi int
	if !r.NoLandlock {
		if abi, err = r.landlock(); err != nil {
			return nil, err
		}
	}
	if abi > 0 {
		layers = append(layers, fmt.Sprintf("landlock ABI %d", abi))
	}
	if err := installSeccomp(); err != nil {
		return nil, err
	}
	return append(layers, "seccomp"), nil
}

// boundingEmpty reports whether the calling thread's bounding set is
// empty (emptied before a switch of user, say).
func boundingEmpty() bool {
	for c := 0; ; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return true // past the kernel's last capability
		}
		if in == 1 {
			return false
		}
	}
}

// dropCaps empties the calling thread's capability sets. The bounding set
// and the securebits need CAP_SETPCAP; without it (a non-zero uid holds no
// capability) they are left alone and dropped is false.
func dropCaps() (dropped bool, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		if err := unix.Prctl(unix.PR_SET_SECUREBITS, pureCaps, 0, 0, 0); err != nil {
			return false, fmt.Errorf("set securebits: %w", err)
		}
		for c := 0; ; c++ {
			err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
			if errors.Is(err, unix.EINVAL) { // past the kernel's last capability
				break
			}
			if err != nil {
				return false, fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
		dropped = true
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return false, fmt.Errorf("clear ambient capabilities: %w", err)
	}
	data = [2]unix.CapUserData{}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capset: %w", err)
	}
	return dropped, nil
}

// landlock applies the Landlock domain to the calling thread and returns
// the kernel's ABI version, 0 when it has no Landlock (not an error).
//
// Network rights are not handled: the network namespace confines the
// network, and the command may run local servers.
func (r Restrict) landlock() (abi int, err error) {
	abi, err = ll.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		return 0, nil // ENOSYS or EOPNOTSUPP: no Landlock in this kernel
	}
	dirs, files, err := sortPaths(r.RWDirs)
	if err != nil {
		return 0, err
	}
	// File rights on a directory cover the files beneath it (/dev/pts).
	devDirs, devFiles, err := sortPaths(r.RWFiles)
	if err != nil {
		return 0, err
	}
	devs := append(devDirs, devFiles...)
	rw := landlock.RWDirs(dirs...).WithResolveUnix()
	if abi >= 2 {
		// Cross-directory rename and link (git moves objects between
		// directories) need "refer", which ABI 1 lacks; asking for it
		// there would make BestEffort drop Landlock altogether.
		rw = rw.WithRefer()
	}
	cfg := landlock.Config{HandledAccessFS: landlockFS, Scoped: landlockScoped}.
		BestEffort().EnableLoggingForSubprocesses()
	rules := []landlock.Rule{
		landlock.RODirs("/"),
		rw,
		// A single file given as a read-write "dir": directory rights on
		// a file make landlock_add_rule fail with EINVAL.
		landlock.RWFiles(files...),
		landlock.RWFiles(devs...).WithIoctlDev(),
		// The sandbox has its own /proc; /proc/self/fd/N reopens are
		// judged by the file's own path, not by this rule.
		landlock.RWDirs("/proc").IgnoreIfMissing(),
	}
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil {
		return 0, fmt.Errorf("landlock ruleset: %w", err)
	}
	if fd < 0 {
		return 0, nil
	}
	defer unix.Close(fd)
	if err := ll.LandlockRestrictSelf(fd, flags); err != nil {
		return 0, fmt.Errorf("landlock restrict self: %w", err)
	}
	return abi, nil
}

// sortPaths splits paths into directories and other files, skipping
// those that do not exist. go-landlock's IgnoreIfMissing is not enough:
// it skips ENOENT only, not ENOTDIR (a path through a regular file), and
// RWDirs on a regular file is EINVAL rather than a file rule.
func sortPaths(paths []string) (dirs, files []string, err error) {
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("landlock path: %w", err)
		case fi.IsDir():
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
	}
	return dirs, files, nil
}
