package confine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The descriptors cork gives init.
const (
	fdSpec   = 3 // the spec, then held open by cork as a lifeline
	fdStatus = 4 // status lines to cork; closed once the command runs
	fdSocket = 5 // the proxy's private directory (O_PATH)
)

// initSpec is what cork sends init: sandbox values only, never a secret.
type initSpec struct {
	Argv             []string `json:"argv"`
	Env              []string `json:"env"`
	Dir              string   `json:"dir"`
	Mounts           []mount  `json:"mounts"`
	EmptyFile        string   `json:"empty_file"`
	SocketName       string   `json:"socket"`
	Port             int      `json:"port"`
	RunAs            *User    `json:"run_as,omitempty"`
	ForwardInterrupt bool     `json:"forward_interrupt,omitempty"`
	Restrict         Restrict `json:"restrict"`
}

// status is one line init writes to cork.
type status struct {
	Error  string   `json:"error,omitempty"`
	Layers []string `json:"layers,omitempty"`
}

func writeStatus(w io.Writer, s status) {
	b, _ := json.Marshal(s)
	w.Write(append(b, '\n'))
}

// initMain is the sandbox's PID 1.
func initMain() int {
	// cork's child runs as cork's user; its /proc entries (fds, memory)
	// must not be open to the command, which is the same user.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// Descriptors cork inherited from its own parent are not the
	// command's: only 0, 1 and 2 reach it.
	unix.CloseRange(fdSocket+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	statusW := os.NewFile(fdStatus, "status")
	fail := func(format string, a ...any) int {
		writeStatus(statusW, status{Error: fmt.Sprintf(format, a...)})
		return 125
	}
	for _, fd := range []int{fdSpec, fdStatus, fdSocket} {
		syscall.CloseOnExec(fd)
	}
	specR := os.NewFile(fdSpec, "spec")
	var spec initSpec
	dec := json.NewDecoder(specR)
	if err := dec.Decode(&spec); err != nil {
		return fail("sandbox init: read spec: %v", err)
	}
	if err := buildView(spec.Mounts, spec.EmptyFile); err != nil {
		return fail("sandbox: %v", err)
	}
	// Init holds no reference into the host's directories: its working
	// directory was cork's.
	if err := os.Chdir("/"); err != nil {
		return fail("sandbox: %v", err)
	}
	if err := loopbackUp(); err != nil {
		return fail("sandbox: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(spec.Port))
	if err != nil {
		return fail("sandbox: proxy relay: %v", err)
	}
	go relay(ln, "/proc/self/fd/"+strconv.Itoa(fdSocket)+"/"+spec.SocketName)

	// Signals are caught before the command starts, so none is lost.
	sigs := make(chan os.Signal, 8)
	forwarded := []os.Signal{unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGINT, unix.SIGQUIT}
	signal.Notify(sigs, forwarded...)
	// Where Landlock cannot keep the command from signalling init (it is
	// PID 1 of its namespace and the same user), SIGABRT must not make
	// the runtime dump init's goroutines onto the command's stderr.
	signal.Notify(make(chan os.Signal, 1), unix.SIGABRT)

	pid, layers, err := startCommand(&spec)
	if err != nil {
		return fail("sandbox: %v", err)
	}
	writeStatus(statusW, status{Layers: layers})
	statusW.Close()

	// cork holds the spec pipe open for as long as it runs: when it dies,
	// so does the sandbox (init's exit kills the whole PID namespace).
	go func() {
		io.Copy(io.Discard, specR)
		os.Exit(137)
	}()
	go func() {
		for s := range sigs {
			if (s == unix.SIGINT || s == unix.SIGQUIT) && !spec.ForwardInterrupt {
				continue // the terminal sent it to the command too
			}
			unix.Kill(pid, s.(syscall.Signal))
		}
	}()
	return reap(pid)
}

// reap waits for every child (init adopts the namespace's orphans) and
// returns the command's exit status once it exits: its code, or 128+n
// when a signal n ended it.
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 125
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// startCommand starts the command from an OS thread of its own that
// first becomes what the command must be: RunAs's user, then restricted
// (Restrict.apply: capabilities, no_new_privs, Landlock, seccomp — all of
// them per thread). The child inherits the thread's state; init's other
// threads keep theirs. The thread is never unlocked, so the runtime
// retires it. It returns the command's pid and the layers applied.
func startCommand(spec *initSpec) (int, []string, error) {
	type result struct {
		pid    int
		layers []string
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		defer func() { ch <- r }()
		path, err := lookPath(spec.Argv[0], spec.Dir, spec.Env)
		if err != nil {
			r.err = err
			return
		}
		if spec.RunAs != nil {
			// Root of the namespace still: empty the bounding set while
			// that is allowed; the switch of user then clears the rest.
			if r.err = dropBounding(); r.err != nil {
				return
			}
			if r.err = becomeUser(spec.RunAs); r.err != nil {
				return
			}
		}
		if r.layers, r.err = spec.Restrict.apply(); r.err != nil {
			return
		}
		// No Pdeathsig: it would fire when this thread ends. Init's own
		// exit kills the namespace instead.
		r.pid, r.err = syscall.ForkExec(path, spec.Argv, &syscall.ProcAttr{
			Dir:   spec.Dir,
			Env:   spec.Env,
			Files: []uintptr{0, 1, 2},
		})
		if r.err != nil {
			r.err = fmt.Errorf("exec %s: %w", spec.Argv[0], r.err)
		}
	}()
	r := <-ch
	return r.pid, r.layers, r.err
}

// dropBounding empties the calling thread's capability bounding set.
func dropBounding() error {
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) { // past the kernel's last capability
			return nil
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
}

// becomeUser switches the calling thread (only: raw system calls, not
// Go's all-threads ones) to u, with no supplementary group.
func becomeUser(u *User) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", u.UID, e)
	}
	return nil
}

// relay copies each connection to 127.0.0.1:Port inside the namespace
// to a new connection on the proxy's Unix socket.
// Accept errors that are not the listener's end (out of descriptors, a
// connection aborted) are waited out, as net/http's server does: a flood
// from the command must not leave it without its proxy.
func relay(ln net.Listener, socket string) {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		go func() {
			defer c.Close()
			u, err := net.Dial("unix", socket)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(u, c)
				u.(*net.UnixConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, u)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// lookPath finds the command as a shell would, in env's PATH, in the
// sandbox's view; a relative name with a slash is taken in dir, the
// command's working directory.
func lookPath(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("exec %s: %w", name, err)
		}
		return p, nil
	}
	var path string
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = p
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %s: executable file not found in $PATH", name)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// loopbackUp brings up the namespace's loopback interface.
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
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
