package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// Helpers of the escape suite (sandbox_test.go): the accounts cork and the
// probes run as, fixtures planted in real homes and removed afterwards,
// host servers the sandbox must not reach, and the probe script.

// sandboxUser is the non-root account the suite runs as when the test
// process is root (.ci/run creates it).
const sandboxUser = "cork-test"

// sandboxPath is the PATH of cork and the probes when the test process is
// root: the system's directories only (root's own may lie in /root, which
// the other accounts cannot read).
const sandboxPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// account is a user cork or a probe runs as.
type account struct {
	name     string
	uid, gid int
	home     string
}

// credential runs a child as a; nil when the test process is a already.
func (a account) credential() *syscall.Credential {
	if os.Getuid() == a.uid && os.Getgid() == a.gid {
		return nil
	}
	return &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid), Groups: []uint32{}}
}

// chown gives p to a (the test process may be root planting for another
// account).
func (a account) chown(t *testing.T, p string) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	if err := os.Lchown(p, a.uid, a.gid); err != nil {
		t.Fatal(err)
	}
}

func lookupAccount(t *testing.T, u *user.User) account {
	t.Helper()
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || u.HomeDir == "" {
		t.Fatalf("user %q: uid %q gid %q home %q", u.Username, u.Uid, u.Gid, u.HomeDir)
	}
	return account{name: u.Username, uid: uid, gid: gid, home: u.HomeDir}
}

// plainUser is the non-root account: sandboxUser when the test process is
// root, else the current user.
func plainUser(t *testing.T) account {
	t.Helper()
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return lookupAccount(t, u)
	}
	u, err := user.Lookup(sandboxUser)
	if err != nil {
		testenv.Missing(t, "user %s: %v (create it: useradd --create-home --shell /bin/sh %s)", sandboxUser, err, sandboxUser)
	}
	a := lookupAccount(t, u)
	if st, err := os.Stat(a.home); err != nil || !st.IsDir() {
		testenv.Missing(t, "user %s has no home directory %s", sandboxUser, a.home)
	}
	return a
}

// rootUser is root; not being root is testenv.Missing.
func rootUser(t *testing.T) account {
	t.Helper()
	if os.Getuid() != 0 {
		testenv.Missing(t, "needs root")
	}
	u, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	return lookupAccount(t, u)
}

// probePath is the PATH cork and the probes get.
func probePath() string {
	if os.Getuid() == 0 {
		return sandboxPath
	}
	return os.Getenv("PATH")
}

// needTools fails (testenv.Missing) unless every tool is on probePath.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		found := false
		for _, d := range filepath.SplitList(probePath()) {
			if st, err := os.Stat(filepath.Join(d, tool)); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				found = true
				break
			}
		}
		if !found {
			testenv.Missing(t, "%s not on %s", tool, probePath())
		}
	}
}

// randText is a fresh random name part.
func randText() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sharedDir is a new 0755 directory that every account can read (t.TempDir
// is 0700), removed at cleanup.
func sharedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cork-esc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// exposedCork copies the cork binary into dir (0755), where every account
// can run it.
func exposedCork(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(corkBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "cork")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// ownedDir creates a directory named prefix-XXXX in a's home, owned by a,
// removed at cleanup.
func ownedDir(t *testing.T, a account, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp(a.home, prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	a.chown(t, d)
	return d
}

// plantFile writes content to path, owned by a (mode 0600), creating the
// missing parents (0700, owned by a); it removes what it created at
// cleanup. It never overwrites: when path exists it returns false and
// changes nothing.
func plantFile(t *testing.T, a account, path, content string) bool {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	var created []string
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		created = append(created, d)
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := os.Mkdir(created[i], 0o700); err != nil {
			t.Fatal(err)
		}
		a.chown(t, created[i])
	}
	t.Cleanup(func() {
		os.Remove(path)
		for _, d := range created { // deepest first
			os.Remove(d)
		}
	})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a.chown(t, path)
	return true
}

// secrets holds the fixture values of one run. No output of the sandbox
// may hold any of them.
type secrets map[string]string // name → value

// add makes a fresh fake secret named name.
func (s secrets) add(name string) string {
	v := "corkesc_" + name + "_" + randText() + randText()
	s[name] = v
	return v
}

// check fails t for each secret text holds, naming it.
func (s secrets) check(t *testing.T, where, text string) {
	t.Helper()
	for name, v := range s {
		if strings.Contains(text, v) {
			t.Errorf("%s holds the secret %s", where, name)
		}
	}
}

// redact replaces each secret in text by its name.
func (s secrets) redact(text string) string {
	for name, v := range s {
		text = strings.ReplaceAll(text, v, "<secret "+name+">")
	}
	return text
}

// procRun is one finished process.
type procRun struct {
	code           int
	stdout, stderr string
	pid            int
}

// start runs argv as a with env ("K=V") in dir, up to 60 s.
func start(t *testing.T, a account, env []string, dir string, argv ...string) procRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: a.credential()}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s as %s: %v", argv[0], a.name, err)
	}
	r := procRun{pid: cmd.Process.Pid}
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s as %s: %v", argv[0], a.name, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s as %s: still running after 60 s; stderr:\n%s", argv[0], a.name, stderr.String())
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// probeMarker starts the lines the probe script frames each probe with.
const probeMarker = "@@cork-probe@@"

// probeScript runs each named probe (sh text) in turn, each bounded by
// timeout(1), and frames its output and exit status.
func probeScript(names, cmds []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "p() { echo \"%[1]s begin $1\"; timeout 20 sh -c \"$2\" </dev/null 2>&1; echo \"\n%[1]s end $1 $?\"; }\n", probeMarker)
	for i := range names {
		fmt.Fprintf(&b, "p %s %s\n", names[i], shq(cmds[i]))
	}
	return b.String()
}

// probeResult is what one probe printed and its exit status.
type probeResult struct {
	code int
	out  string
}

var probeEnd = regexp.MustCompile(`^` + regexp.QuoteMeta(probeMarker) + ` end (\S+) (\d+)$`)

// parseProbes reads probeScript's output.
func parseProbes(out string) map[string]probeResult {
	res := map[string]probeResult{}
	var cur string
	var buf strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(l, probeMarker+" begin "); ok {
			cur = name
			buf.Reset()
			continue
		}
		if m := probeEnd.FindStringSubmatch(l); m != nil && m[1] == cur {
			code, _ := strconv.Atoi(m[2])
			res[cur] = probeResult{code: code, out: strings.TrimRight(buf.String(), "\n")}
			cur = ""
			continue
		}
		if cur != "" {
			buf.WriteString(l + "\n")
		}
	}
	return res
}

// Small Python clients the probes use: each exits 0 only when it reached
// the host server and got back what that server sends.
const (
	pyTCP = `import socket,sys
s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3)
sys.exit(0 if s.recv(64)==sys.argv[3].encode() else 3)`
	pyUDP = `import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3)
s.connect((sys.argv[1],int(sys.argv[2])));s.send(sys.argv[3].encode())
sys.exit(0 if s.recv(512)==b"answer:"+sys.argv[3].encode() else 3)`
	pyUnix = `import socket,sys
p=sys.argv[1]
p="\0"+p[1:] if p.startswith("@") else p
s=socket.socket(socket.AF_UNIX);s.settimeout(3);s.connect(p)
sys.exit(0 if s.recv(64)==sys.argv[2].encode() else 3)`
)

// serveBanner accepts on ln until cleanup and sends banner on each
// connection.
func serveBanner(t *testing.T, ln net.Listener, banner string) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(banner))
			c.Close()
		}
	}()
}

// serveUDP answers each datagram q on 127.0.0.1 with "answer:q", like a
// resolver, until cleanup; it returns the port.
func serveUDP(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("answer:"), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// hostAddrs are the host's addresses but loopback and link-local ones,
// and those of bridges and veths that other tests create and remove while
// this one runs (docker networks, the test cluster's CNI bridge): an
// address that vanishes mid-test proves nothing either way.
func hostAddrs(t *testing.T) []net.IP {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []net.IP
	for _, iface := range ifaces {
		// The loopback device's own addresses are probed by name; others
		// on it (the test cluster's node address) come and go.
		if iface.Flags&net.FlagLoopback != 0 || ephemeralInterface(iface.Name) {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.IsLinkLocalMulticast() {
				continue
			}
			out = append(out, n.IP)
		}
	}
	return out
}

// ephemeralInterface reports whether name is an interface that tests
// create and remove: a docker network's bridge (br-…), a veth, a CNI
// bridge (cni0) or kube-router's and kube-proxy's devices.
func ephemeralInterface(name string) bool {
	for _, p := range []string{"br-", "veth", "cni", "kube-", "cork"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// runUserSocketDir is /run/user/<uid> of a: created (0700, owned by a)
// when absent and then removed at cleanup.
func runUserSocketDir(t *testing.T, a account) string {
	t.Helper()
	d := filepath.Join("/run/user", strconv.Itoa(a.uid))
	if _, err := os.Stat(d); err == nil {
		return d
	}
	if err := os.MkdirAll("/run/user", 0o755); err != nil {
		testenv.Missing(t, "cannot create /run/user: %v", err)
	}
	if err := os.Mkdir(d, 0o700); err != nil {
		testenv.Missing(t, "cannot create %s: %v", d, err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	a.chown(t, d)
	return d
}

// startHolder starts `sleep 60` as a with GH_TOKEN=token in its
// environment: a process of the same user holding a credential.
func startHolder(t *testing.T, a account, token string) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = []string{"PATH=" + probePath(), "GH_TOKEN=" + token}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: a.credential()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// resolvableName is the first of a few public names that a resolves on
// the host (getent hosts), or "".
func resolvableName(t *testing.T, a account) string {
	t.Helper()
	env := []string{"PATH=" + probePath(), "HOME=" + a.home}
	for _, name := range []string{"proxy.golang.org", "deb.debian.org", "registry.npmjs.org"} {
		if r := start(t, a, env, "/", "timeout", "10", "getent", "hosts", name); r.code == 0 {
			return name
		}
	}
	return ""
}

// procPIDs are the numeric entries of an `ls /proc` listing.
func procPIDs(out string) []int {
	var pids []int
	for _, f := range strings.Fields(out) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}
