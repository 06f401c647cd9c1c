package confine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The descriptors cork gives init, and init gives stage 2.
const (
	fdSpec   = 3 // init: the spec, then held open by cork as a lifeline; stage 2: its spec
	fdStatus = 4 // status lines to cork; closed on the command's exec
	fdSocket = 5 // init: the proxy's private directory (O_PATH)
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

// stage2Spec is what init sends stage 2.
type stage2Spec struct {
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Restrict Restrict `json:"restrict"`
}

// status is one line init or stage 2 writes to cork.
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

	pid, err := startStage2(&spec, statusW)
	if err != nil {
		return fail("sandbox: start %s: %v", spec.Argv[0], err)
	}
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

// startStage2 re-executes this program as stage 2, which restricts
// itself and execs the command.
func startStage2(spec *initSpec, statusW *os.File) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	b, err := json.Marshal(stage2Spec{Argv: spec.Argv, Env: spec.Env, Restrict: spec.Restrict})
	if err != nil {
		w.Close()
		return 0, err
	}
	go func() {
		w.Write(b)
		w.Close()
	}()
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{0, 1, 2, r.Fd(), statusW.Fd()},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if spec.RunAs != nil {
		attr.Sys.Credential = &syscall.Credential{Uid: uint32(spec.RunAs.UID), Gid: uint32(spec.RunAs.GID), Groups: []uint32{}}
	}
	return syscall.ForkExec("/proc/self/exe", []string{stage2Arg0}, attr)
}

// relay copies each connection to 127.0.0.1:Port inside the namespace
// to a new connection on the proxy's Unix socket.
func relay(ln net.Listener, socket string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
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

// stage2Main restricts this process and execs the command; it returns
// only when that fails.
func stage2Main() int {
	statusW := os.NewFile(fdStatus, "status")
	syscall.CloseOnExec(fdStatus)
	fail := func(code int, format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		writeStatus(statusW, status{Error: msg})
		return code
	}
	var spec stage2Spec
	if err := json.NewDecoder(os.NewFile(fdSpec, "spec")).Decode(&spec); err != nil {
		return fail(125, "sandbox: stage 2: read spec: %v", err)
	}
	unix.Close(fdSpec)
	if len(spec.Argv) == 0 {
		return fail(125, "sandbox: no command")
	}
	path, err := lookPath(spec.Argv[0])
	if err != nil {
		return fail(127, "%v", err)
	}
	// Restrictions are per thread; exec happens on this one.
	lockThread()
	layers, err := spec.Restrict.apply()
	if err != nil {
		return fail(125, "sandbox: %v", err)
	}
	writeStatus(statusW, status{Layers: layers})
	err = syscall.Exec(path, spec.Argv, spec.Env)
	return fail(126, "sandbox: exec %s: %v", spec.Argv[0], err)
}

func lockThread() { runtime.LockOSThread() }

// lookPath finds the command in the sandbox's PATH (stage 2 runs with the
// command's environment, and inside the sandbox's view).
func lookPath(name string) (string, error) {
	return exec.LookPath(name)
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
