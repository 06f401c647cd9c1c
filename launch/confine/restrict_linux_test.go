//go:build linux && (amd64 || arm64)

package confine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/cork-sh/cork/internal/testing/testenv"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Restrictions cannot be undone, so each test that applies them re-runs
// the test binary as a helper process: the helper runs the same test
// function with helperEnv set to the test's name, applies, makes its
// checks on the restricted thread and prints one JSON line of results
// that the parent turns into subtests.
const (
	helperEnv     = "CONFINE_TEST_HELPER"
	helperDirEnv  = "CONFINE_TEST_DIR"
	helperRootEnv = "CONFINE_TEST_ROOT" // "1": the helper starts with every capability
	resultPrefix  = "CONFINE-RESULT "
)

// helperResult is one check made in the helper: Err is empty when the
// check passed, "skip: ..." when the kernel lacks what it needs.
type helperResult struct {
	Name string
	Err  string
}

func isHelper(t *testing.T) bool { return os.Getenv(helperEnv) == t.Name() }

func helperReport(results []helperResult) {
	b, _ := json.Marshal(results)
	fmt.Printf("\n%s%s\n", resultPrefix, b)
}

func helperFatal(err error) {
	helperReport([]helperResult{{"setup", err.Error()}})
	os.Exit(0)
}

// runHelper re-runs the top-level test function test as a helper, with
// cmd's stdin and SysProcAttr set by setup (nil: none), and returns its
// results.
func runHelper(t *testing.T, test string, setup func(*exec.Cmd), env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+test)...)
	if setup != nil {
		setup(cmd)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	results := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(nil, 1<<20)
	found := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), resultPrefix)
		if !ok {
			continue
		}
		var rs []helperResult
		if err := json.Unmarshal([]byte(line), &rs); err != nil {
			t.Fatalf("helper results %q: %v", line, err)
		}
		for _, r := range rs {
			results[r.Name] = r.Err
		}
		found = true
	}
	if !found || err != nil {
		t.Fatalf("helper: %v, results found: %v; output:\n%s", err, found, out.Bytes())
	}
	if msg, ok := results["setup"]; ok {
		t.Fatalf("helper setup: %s", msg)
	}
	return results
}

// checkHelper turns the helper's results into one subtest per wanted
// check; a check the helper did not report fails.
func checkHelper(t *testing.T, results map[string]string, want map[string]bool) {
	t.Helper()
	for name := range results {
		if !want[name] {
			t.Errorf("helper reported unknown check %q", name)
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			msg, ok := results[name]
			switch {
			case !ok:
				t.Fatalf("helper did not report %q", name)
			case strings.HasPrefix(msg, "skip: "):
				testenv.Missing(t, "%s", strings.TrimPrefix(msg, "skip: "))
			case msg != "":
				t.Error(msg)
			}
		})
	}
}

// restrictEnv is what the apply helper's checks work with.
type restrictEnv struct {
	rw, ro  string // a dir in RWDirs, and one outside every rule
	rwFile  string // a regular file given in RWDirs
	layers  []string
	abi     int  // the kernel's Landlock ABI, 0 = none
	root    bool // the helper started with every capability (of its user namespace)
	hasCtty bool // the helper runs with a controlling terminal (a pty)
}

// restrictChecks are the apply helper's checks, each run on the
// restricted thread (or in a program it execs). Each returns nil when the
// behaviour is the wanted one.
var restrictChecks = []struct {
	name string
	run  func(e *restrictEnv) error
}{
	{"layers", func(e *restrictEnv) error {
		var want []string
		if e.root {
			want = append(want, "capabilities")
		}
		if e.abi > 0 {
			want = append(want, fmt.Sprintf("landlock ABI %d", e.abi))
		}
		want = append(want, "seccomp")
		if !slices.Equal(e.layers, want) {
			return fmt.Errorf("apply() layers = %q, want %q", e.layers, want)
		}
		return nil
	}},
	// Denied.
	{"ptrace attach parent", func(e *restrictEnv) error {
		return wantErrno(unix.PtraceAttach(os.Getppid()), unix.EPERM)
	}},
	{"ptrace attach own child", func(e *restrictEnv) error {
		// Same credentials and domain: only the filter stops this.
		cmd := exec.Command("/bin/sleep", "30")
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		err := unix.PtraceAttach(cmd.Process.Pid)
		if err == nil {
			_ = unix.PtraceDetach(cmd.Process.Pid)
		}
		return wantErrno(err, unix.EPERM)
	}},
	{"unshare(CLONE_NEWUSER)", func(e *restrictEnv) error {
		return wantErrno(unix.Unshare(unix.CLONE_NEWUSER), unix.EPERM)
	}},
	{"clone(CLONE_NEWUSER)", func(e *restrictEnv) error {
		return wantErrno(rawClone(unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD)), unix.EPERM)
	}},
	{"clone3", func(e *restrictEnv) error {
		args := make([]byte, 88) // struct clone_args, zero: a plain fork
		_, _, errno := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args[0])), uintptr(len(args)), 0)
		return wantErrno(errnoErr(errno), unix.ENOSYS)
	}},
	{"keyctl", func(e *restrictEnv) error {
		_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
		return wantErrno(err, unix.EPERM)
	}},
	{"bpf", func(e *restrictEnv) error {
		attr := make([]byte, 128)
		_, _, errno := unix.RawSyscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		return wantErrno(errnoErr(errno), unix.EPERM)
	}},
	{"mount tmpfs", func(e *restrictEnv) error {
		return wantErrno(unix.Mount("tmpfs", e.rw, "tmpfs", 0, ""), unix.EPERM)
	}},
	{"ioctl TIOCSTI", func(e *restrictEnv) error {
		b := byte('x')
		_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&b)))
		return wantErrno(errnoErr(errno), unix.EPERM)
	}},
	{"ioctl TIOCSTI with bit 32 set", func(e *restrictEnv) error {
		b := byte('x')
		_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, 0, 1<<32|unix.TIOCSTI, uintptr(unsafe.Pointer(&b)))
		return wantErrno(errnoErr(errno), unix.EPERM)
	}},
	{"io_uring_setup", func(e *restrictEnv) error {
		params := make([]byte, 120)
		_, _, errno := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		return wantErrno(errnoErr(errno), unix.ENOSYS)
	}},
	{"x32 system call", func(e *restrictEnv) error {
		if runtime.GOARCH != "amd64" {
			return nil
		}
		_, _, errno := unix.RawSyscall(unix.SYS_GETPID|x32Bit, 0, 0, 0)
		return wantErrno(errnoErr(errno), unix.EPERM)
	}},
	{"capabilities of this thread", func(e *restrictEnv) error {
		b, err := os.ReadFile("/proc/thread-self/status") // capabilities are per thread
		if err != nil {
			return err
		}
		return noCapsIn(b, e.root)
	}},
	{"securebits locked", func(e *restrictEnv) error {
		got, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
		if err != nil {
			return err
		}
		if want := 0; !e.root && got != want {
			return fmt.Errorf("securebits %#x, want %#x (no CAP_SETPCAP to set them)", got, want)
		}
		if want := pureCaps; e.root && got != want {
			return fmt.Errorf("securebits %#x, want %#x", got, want)
		}
		return nil
	}},
	{"capabilities of an exec'd child", func(e *restrictEnv) error {
		out, err := exec.Command("/bin/cat", "/proc/self/status").Output()
		if err != nil {
			return err
		}
		return noCapsIn(out, e.root)
	}},
	// Still allowed.
	{"read write in RWDirs", func(e *restrictEnv) error {
		p := filepath.Join(e.rw, "f")
		if err := os.WriteFile(p, []byte("data"), 0o600); err != nil {
			return err
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "data" {
			return fmt.Errorf("ReadFile(%q) = %q, %v", p, b, err)
		}
		return os.Remove(p)
	}},
	{"rename between dirs in RWDirs", func(e *restrictEnv) error {
		a, b := filepath.Join(e.rw, "a"), filepath.Join(e.rw, "b")
		for _, d := range []string{a, b} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(a, "obj"), nil, 0o600); err != nil {
			return err
		}
		return os.Rename(filepath.Join(a, "obj"), filepath.Join(b, "obj"))
	}},
	{"write a file given in RWDirs", func(e *restrictEnv) error {
		return os.WriteFile(e.rwFile, []byte("x"), 0o600)
	}},
	{"write outside RWDirs", func(e *restrictEnv) error {
		if e.abi == 0 {
			return errors.New("skip: kernel without Landlock")
		}
		err := os.WriteFile(filepath.Join(e.ro, "f"), nil, 0o600)
		return wantErrno(err, unix.EACCES)
	}},
	{"write /proc/thread-self/comm", func(e *restrictEnv) error {
		return os.WriteFile("/proc/thread-self/comm", []byte("stage2"), 0)
	}},
	{"read /etc/hostname", func(e *restrictEnv) error {
		_, err := os.ReadFile("/etc/hostname")
		return err
	}},
	{"fork exec /bin/true", func(e *restrictEnv) error {
		return exec.Command("/bin/true").Run()
	}},
	{"loopback socket", func(e *restrictEnv) error {
		return loopbackEcho()
	}},
	{"signal a process outside the domain", func(e *restrictEnv) error {
		if e.abi < 6 {
			return fmt.Errorf("skip: Landlock ABI %d has no scoping (6)", e.abi)
		}
		return wantErrno(unix.Kill(os.Getppid(), 0), unix.EPERM)
	}},
	{"terminal ioctls on a fresh /dev/tty", func(e *restrictEnv) error {
		if !e.hasCtty {
			return errors.New("skip: no pty for a controlling terminal")
		}
		fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/tty: %w", err)
		}
		defer unix.Close(fd)
		if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
			return fmt.Errorf("TCGETS: %w", err)
		}
		if _, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err != nil {
			return fmt.Errorf("TIOCGWINSZ: %w", err)
		}
		return nil
	}},
	{"new pty from /dev/ptmx", func(e *restrictEnv) error {
		fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/ptmx: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("TIOCSPTLCK: %w", err)
		}
		n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
		if err != nil {
			return fmt.Errorf("TIOCGPTN: %w", err)
		}
		// /dev/pts is in RWFiles: file rights, ioctls included, beneath it.
		pts, err := unix.Open("/dev/pts/"+strconv.Itoa(n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open the pty's slave: %w", err)
		}
		defer unix.Close(pts)
		if _, err := unix.IoctlGetTermios(pts, unix.TCGETS); err != nil {
			return fmt.Errorf("TCGETS on the pty's slave: %w", err)
		}
		return nil
	}},
	{"python3 exec'd inherits every layer", func(e *restrictEnv) error {
		py := "/usr/bin/python3" // not a shim under /root, which uid 65534 cannot read
		if _, err := os.Stat(py); err != nil {
			if py, err = exec.LookPath("python3"); err != nil {
				return errors.New("skip: no python3")
			}
		}
		cmd := exec.Command(py, "-c", pythonProbe, e.ro, e.rw, strconv.Itoa(e.abi), strconv.FormatBool(e.root))
		cmd.Stdin = os.Stdin
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			return fmt.Errorf("probe: %v: %s", err, out)
		}
		return nil
	}},
}

// pythonProbe checks, in a program that is not Go, what the command sees
// after exec: argv is RO dir, RW dir, Landlock ABI, whether it started as
// root (then its bounding set must be empty too).
const pythonProbe = `
import ctypes, errno, fcntl, os, sys, termios
ro, rw, abi, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "true"
libc = ctypes.CDLL(None, use_errno=True)
bad = []
def want(name, rc, err):
    e = ctypes.get_errno()
    if rc != -1 or e != err:
        bad.append("%s: rc %d errno %s, want errno %s" % (name, rc, errno.errorcode.get(e, e), errno.errorcode[err]))
want("unshare", libc.syscall(272 if os.uname().machine == "x86_64" else 97, 0x10000000), errno.EPERM)
want("ptrace", libc.ptrace(16, os.getppid(), 0, 0), errno.EPERM)
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    bad.append("TIOCSTI allowed")
except OSError as e:
    if e.errno != errno.EPERM:
        bad.append("TIOCSTI: %s" % e)
if abi > 0:
    try:
        open(os.path.join(ro, "py"), "w")
        bad.append("write outside RWDirs allowed")
    except PermissionError:
        pass
open(os.path.join(rw, "py"), "w").write("x")
for line in open("/proc/self/status"):
    k, v = line.split(":", 1)
    if (k in ("CapInh", "CapPrm", "CapEff", "CapAmb") or k == "CapBnd" and root) and int(v, 16) != 0:
        bad.append("%s %s" % (k, v.strip()))
    if k == "NoNewPrivs" and v.strip() != "1":
        bad.append("NoNewPrivs " + v.strip())
    if k == "Seccomp" and v.strip() != "2":
        bad.append("Seccomp " + v.strip())
print("\n".join(bad) if bad else "ok")
`

// TestRestrictApply applies a Restrict in a helper process, with a pty as
// its controlling terminal, then checks what is denied and what still
// works: as root, as root of a new user namespace (stage 2 when cork runs
// as root), and as an unprivileged uid (stage 2 under RunAs).
func TestRestrictApply(t *testing.T) {
	if isHelper(t) {
		restrictHelper()
		return
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (to start helpers with every capability and as another uid)")
	}
	const nobody = 65534
	cases := []struct {
		name string
		root bool
		attr syscall.SysProcAttr
	}{
		{"root", true, syscall.SysProcAttr{}},
		{"root of a user namespace", true, syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		}},
		{"uid 65534", false, syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}},
	}
	want := map[string]bool{}
	for _, c := range restrictChecks {
		want[c.name] = true
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if !tc.root {
				// The helper makes its dirs in dir; ro is then its own, so
				// only Landlock can refuse a write there.
				if err := os.Chown(dir, nobody, nobody); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			bin := os.Args[0]
			if !tc.root {
				bin = copyExecutable(t, bin) // go test's build dir is 0700
			}
			slave, err := openPty(t)
			if err != nil {
				t.Logf("no pty (%v): the terminal checks will skip", err)
			}
			setup := func(cmd *exec.Cmd) {
				cmd.Path, cmd.Args[0] = bin, bin
				attr := tc.attr
				if slave != nil {
					cmd.Stdin = slave
					attr.Setsid, attr.Setctty, attr.Ctty = true, true, 0
				}
				cmd.SysProcAttr = &attr
			}
			root := "0"
			if tc.root {
				root = "1"
			}
			results := runHelper(t, "TestRestrictApply", setup, helperDirEnv+"="+dir, helperRootEnv+"="+root)
			checkHelper(t, results, want)
		})
	}
}

// restrictHelper is TestRestrictApply in the helper process.
func restrictHelper() {
	dir := os.Getenv(helperDirEnv)
	e := &restrictEnv{
		rw:     filepath.Join(dir, "rw"),
		ro:     filepath.Join(dir, "ro"),
		rwFile: filepath.Join(dir, "file"),
		root:   os.Getenv(helperRootEnv) == "1",
	}
	for _, d := range []string{e.rw, e.ro} {
		if err := os.Mkdir(d, 0o700); err != nil {
			helperFatal(err)
		}
	}
	if err := os.WriteFile(e.rwFile, nil, 0o600); err != nil {
		helperFatal(err)
	}
	if abi, err := ll.LandlockGetABIVersion(); err == nil {
		e.abi = abi
	}
	if fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
		e.hasCtty = true
		unix.Close(fd)
	}
	r := Restrict{
		RWDirs: []string{
			e.rw,
			e.rwFile,                           // a file: must become a file rule
			filepath.Join(dir, "missing"),      // skipped
			filepath.Join(e.rwFile, "notadir"), // ENOTDIR: skipped
		},
		RWFiles: []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/missing"},
	}
	layers, err := r.apply() // locks this goroutine to its thread for good
	if err != nil {
		helperFatal(fmt.Errorf("apply: %w", err))
	}
	e.layers = layers
	var results []helperResult
	for _, c := range restrictChecks {
		msg := ""
		if err := c.run(e); err != nil {
			msg = err.Error()
		}
		results = append(results, helperResult{c.name, msg})
	}
	helperReport(results)
}

// copyExecutable copies the file at path to a directory anyone may read,
// removed when t ends, and returns the copy's path.
func copyExecutable(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// openPty opens a pty pair and returns its slave; both ends close when t
// ends.
func openPty(t *testing.T) (*os.File, error) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		return nil, err
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { slave.Close() })
	// Drain the master so the helper never blocks writing to its tty.
	go func() { _, _ = io.Copy(io.Discard, master) }()
	return slave, nil
}

func errnoErr(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// wantErrno says how err differs from the errno want.
func wantErrno(err error, want syscall.Errno) error {
	if !errors.Is(err, want) {
		return fmt.Errorf("got %v, want %v", err, want)
	}
	return nil
}

// rawClone calls clone(flags) like fork; a child, if the call is let
// through, exits at once.
func rawClone(flags uintptr) error {
	r, _, errno := unix.RawSyscall6(unix.SYS_CLONE, flags, 0, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	if r == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(int(r), &ws, 0, nil)
	return nil
}

// noCapsIn checks a /proc/*/status text: every capability set empty
// (the bounding set too when root says the process could empty it),
// no_new_privs set, a seccomp filter on.
func noCapsIn(status []byte, root bool) error {
	want := map[string]string{
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
	}
	if root {
		want["CapBnd"] = "0000000000000000"
	}
	var bad []string
	for line := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		if w, ok := want[k]; ok {
			if v != w {
				bad = append(bad, fmt.Sprintf("%s %s, want %s", k, v, w))
			}
			delete(want, k)
		}
	}
	for k := range want {
		bad = append(bad, k+" missing")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// loopbackEcho listens on 127.0.0.1 and echoes one line through a
// connection to itself.
func loopbackEcho() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c)
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || line != "ping\n" {
		return fmt.Errorf("echo = %q, %v", line, err)
	}
	return <-done
}
