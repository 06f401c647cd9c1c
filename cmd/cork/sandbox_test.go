package main

// The escape suite of the default local sandbox (docs/SECURITY.md, "The
// local sandbox"). Each probe is a shell command run twice as the same
// user with the same environment: once directly on the host, where it must
// succeed (so that the test can fail), and once inside `cork run`, where
// an escape must fail. Every fixture is a fresh fake secret; no output of
// the sandbox (its stdout, its stderr, cork's log) may hold one.
//
// The suite runs in three modes: as a non-root user, as root, and as root
// under sudo (SUDO_UID/SUDO_GID), where the command runs as the sudo user.
// The test process must be root for all three; elsewhere the root modes
// are testenv.Missing.

import (
	"encoding/json"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cork-sh/cork/internal/testing/echoupstream"
	"github.com/cork-sh/cork/internal/testing/testenv"
)

// sandboxMode is one way of starting cork.
type sandboxMode struct {
	cork account  // who runs cork
	cmd  account  // who the command runs as, whose home holds the credentials
	env  []string // cork's own variables (HOME, SUDO_*)
	args []string // further `cork run` flags
}

// sandboxModes are the suite's three modes; each makes its accounts, or
// ends the subtest with testenv.Missing.
var sandboxModes = []struct {
	name string
	mode func(t *testing.T) sandboxMode
}{
	{"non-root", func(t *testing.T) sandboxMode {
		a := plainUser(t)
		return sandboxMode{cork: a, cmd: a, env: []string{"HOME=" + a.home, "USER=" + a.name}}
	}},
	// Where the kernel lacks Landlock, the namespaces, the read-only
	// view and seccomp alone must hold every probe.
	{"non-root without Landlock", func(t *testing.T) sandboxMode {
		a := plainUser(t)
		return sandboxMode{cork: a, cmd: a, env: []string{"HOME=" + a.home, "USER=" + a.name}, args: []string{"--no-landlock"}}
	}},
	{"root", func(t *testing.T) sandboxMode {
		r := rootUser(t)
		return sandboxMode{cork: r, cmd: r, env: []string{"HOME=" + r.home, "USER=" + r.name}}
	}},
	{"root under sudo", func(t *testing.T) sandboxMode {
		r := rootUser(t)
		a := plainUser(t)
		return sandboxMode{cork: r, cmd: a, env: []string{
			"HOME=" + r.home, "USER=" + r.name, // sudo's env_reset sets the target's HOME
			"SUDO_UID=" + strconv.Itoa(a.uid), "SUDO_GID=" + strconv.Itoa(a.gid), "SUDO_USER=" + a.name,
		}}
	}},
}

// outcome is what a probe must do inside the sandbox.
type outcome int

const (
	denied  outcome = iota // succeeds outside, fails inside
	allowed                // succeeds inside too
	judged                 // verify alone decides
)

// escapeProbe is one row of the suite.
type escapeProbe struct {
	name  string // a word: the probe's marker in the script
	check string // what it tries, for failure messages
	cmd   string // sh text, run in the workspace
	want  outcome
	// skip, when set, says why the probe cannot run on this host
	// (testenv.Missing).
	skip string
	// insideOnly probes need the sandbox (its proxy): not run outside.
	insideOnly bool
	// verify, when set, checks more of a result.
	verify func(t *testing.T, r probeResult, inside bool)
}

// secretFiles are the credential files planted in the command user's
// real home.
var secretFiles = []struct{ name, rel string }{
	{"codex", ".codex/auth.json"},
	{"claude", ".claude/.credentials.json"},
	{"gh", ".config/gh/hosts.yml"},
	{"ssh", ".ssh/id_ed25519"},
	{"aws", ".aws/credentials"},
}

// escapeEnv is what one mode's probes need on the host.
type escapeEnv struct {
	mode      sandboxMode
	bin       string
	ws        string // the workspace, in the command user's home
	sec       secrets
	upstream  *echoupstream.Server
	caFile    string
	realToken string
	corkPID   int // set once cork has run
}

const escapeTokenVar = "ESC_API_TOKEN"

// homeMu keeps the tests that plant fixtures in the sandbox user's real
// home apart: one test's cleanup removing a credential directory another
// test has planted in would change what that test's sandbox hides.
var homeMu sync.Mutex

func lockHome(t *testing.T) {
	homeMu.Lock()
	t.Cleanup(homeMu.Unlock)
}

func TestSandboxEscapes(t *testing.T) {
	lockHome(t)
	for _, m := range sandboxModes {
		t.Run(m.name, func(t *testing.T) {
			// Not parallel: the modes share the sandbox user's home.
			e := newEscapeEnv(t, m.mode(t))
			probes := e.probes(t)
			var names, cmds []string
			for _, p := range probes {
				if p.skip == "" {
					names, cmds = append(names, p.name), append(cmds, p.cmd)
				}
			}
			script := probeScript(names, cmds)

			outside := start(t, e.mode.cmd, []string{
				"PATH=" + probePath(), "HOME=" + e.mode.cmd.home, "USER=" + e.mode.cmd.name, "TAG=out",
			}, e.ws, "sh", "-c", script)
			outRes := parseProbes(outside.stdout)

			inside := e.cork(t, "--env", "TAG=in", "--", "sh", "-c", script)
			e.corkPID = inside.pid
			inRes := parseProbes(inside.stdout)
			if inside.code != 0 {
				t.Errorf("cork run exit = %d, want 0; stderr:\n%s", inside.code, e.sec.redact(inside.stderr))
			}
			t.Logf("the probes inside the sandbox:\n%s", e.sec.redact(inside.stdout))
			if len(inRes) == 0 {
				t.Fatalf("no probe ran in the sandbox; stdout:\n%s", e.sec.redact(inside.stdout))
			}
			e.sec.check(t, "cork run's stdout", inside.stdout)
			e.sec.check(t, "cork run's stderr (and log)", inside.stderr)
			layers := []string{"sandbox ready (namespaces user,mount,pid,ipc,uts,net", "capabilities", "landlock", "seccomp"}
			if slices.Contains(e.mode.args, "--no-landlock") {
				layers = slices.DeleteFunc(layers, func(l string) bool { return l == "landlock" })
				if strings.Contains(inside.stderr, "landlock") {
					t.Errorf("--no-landlock: the progress line still names Landlock; stderr:\n%s", e.sec.redact(inside.stderr))
				}
			}
			for _, w := range layers {
				if !strings.Contains(inside.stderr, w) {
					t.Errorf("cork run's stderr lacks %q; stderr:\n%s", w, e.sec.redact(inside.stderr))
				}
			}

			for _, p := range probes {
				t.Run(p.name, func(t *testing.T) {
					if p.skip != "" {
						testenv.Missing(t, "%s: %s", p.check, p.skip)
					}
					if !p.insideOnly {
						r, ok := outRes[p.name]
						if !ok {
							t.Fatalf("outside: the probe did not run; output:\n%s", e.sec.redact(outside.stdout+outside.stderr))
						}
						if p.want != judged && r.code != 0 {
							t.Errorf("outside the sandbox, %s failed (status %d): %s\nthe probe cannot show an escape; output:\n%s", p.check, r.code, p.cmd, e.sec.redact(r.out))
						}
						if p.verify != nil {
							p.verify(t, r, false)
						}
					}
					r, ok := inRes[p.name]
					if !ok {
						t.Fatalf("inside: the probe did not run; stdout:\n%s\nstderr:\n%s", e.sec.redact(inside.stdout), e.sec.redact(inside.stderr))
					}
					switch {
					case p.want == denied && r.code == 0:
						t.Errorf("inside the sandbox, %s succeeded: %s\noutput:\n%s", p.check, p.cmd, e.sec.redact(r.out))
					case p.want == allowed && r.code != 0:
						t.Errorf("inside the sandbox, %s failed (status %d): %s\noutput:\n%s", p.check, r.code, p.cmd, e.sec.redact(r.out))
					}
					if p.verify != nil {
						p.verify(t, r, true)
					}
				})
			}
		})
	}
}

// newEscapeEnv prepares a mode: the cork binary where every account can
// run it, a workspace in the command user's home, a fake HTTPS upstream.
func newEscapeEnv(t *testing.T, m sandboxMode) *escapeEnv {
	t.Helper()
	requireSandbox(t)
	needTools(t, "sh", "python3", "curl", "getent", "timeout", "grep", "tr", "sleep", "id")
	dir := sharedDir(t)
	e := &escapeEnv{mode: m, bin: exposedCork(t, dir), sec: secrets{}}
	e.ws = ownedDir(t, m.cmd, "cork-ws")
	u, err := echoupstream.New(echoupstream.Config{Hosts: []string{"api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	e.upstream = u
	e.caFile = filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(e.caFile, u.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	e.realToken = e.sec.add("api_token")
	return e
}

// cork runs `cork run --inject api.example.com=ESC_API_TOKEN --workspace
// WS ARGS...` in the mode, with the upstream routed.
func (e *escapeEnv) cork(t *testing.T, args ...string) procRun {
	t.Helper()
	env := append([]string{
		"PATH=" + probePath(),
		escapeTokenVar + "=" + e.realToken,
		"CORK_RESOLVE=api.example.com:443=" + e.upstream.Addr(),
		"CORK_UPSTREAM_CA_FILE=" + e.caFile,
		"CORK_ALLOW_PRIVATE=127.0.0.0/8",
	}, e.mode.env...)
	argv := append([]string{e.bin, "run", "--inject", "api.example.com=" + escapeTokenVar, "--workspace", e.ws}, e.mode.args...)
	argv = append(argv, args...)
	return start(t, e.mode.cork, env, e.ws, argv...)
}

// probes plants the fixtures and starts the host servers of every check,
// and returns the rows.
func (e *escapeEnv) probes(t *testing.T) []escapeProbe {
	t.Helper()
	u := e.mode.cmd
	var ps []escapeProbe

	// Controls: the tools the probes use work inside, so that a probe
	// fails there for the reason it names.
	ps = append(ps,
		escapeProbe{name: "control-tools", check: "running python3, grep, getent and timeout", want: allowed,
			cmd: "python3 -c 'import socket' && grep -q root /etc/passwd && getent hosts localhost >/dev/null && timeout 5 true"},
		escapeProbe{name: "control-relay", check: "connecting to the proxy relay on 127.0.0.1:3128", want: allowed, insideOnly: true,
			cmd: `python3 -c 'import socket; socket.create_connection(("127.0.0.1", 3128), timeout=3)'`},
	)

	// 1. The credential files of the command user's real home.
	for _, f := range secretFiles {
		rel := f.rel
		content := "corktest-fixture " + e.sec.add(f.name) + "\n"
		if !plantFile(t, u, filepath.Join(u.home, rel), content) {
			// A real credential file is never overwritten: plant a new
			// name in the same credential directory.
			rel = filepath.Join(filepath.Dir(rel), "cork-esc-"+randText()+"-"+filepath.Base(rel))
			if !plantFile(t, u, filepath.Join(u.home, rel), content) {
				t.Fatalf("%s exists", filepath.Join(u.home, rel))
			}
		}
		path := filepath.Join(u.home, rel)
		if err := os.Symlink(path, filepath.Join(e.ws, "sl-"+f.name)); err != nil {
			t.Fatal(err)
		}
		hlSkip := ""
		if err := os.Link(path, filepath.Join(e.ws, "hl-"+f.name)); err != nil {
			hlSkip = fmt.Sprintf("hard link into the workspace: %v", err)
		}
		grep := "grep -h corktest-fixture "
		ps = append(ps,
			escapeProbe{name: "read-" + f.name + "-absolute", check: "reading ~/" + rel + " by its absolute path", cmd: grep + shq(path)},
			escapeProbe{name: "read-" + f.name + "-dotdot", check: "reading ~/" + rel + " via .. from the workspace", cmd: grep + shq("../"+rel)},
			escapeProbe{name: "read-" + f.name + "-symlink", check: "reading ~/" + rel + " via a symlink in the workspace", cmd: grep + "sl-" + f.name},
			escapeProbe{name: "read-" + f.name + "-hardlink", check: "reading ~/" + rel + " via a hard link in the workspace", cmd: grep + "hl-" + f.name, skip: hlSkip},
		)
	}

	// 2. Another process of the same user holding a token.
	holder := startHolder(t, u, e.sec.add("gh_token_env"))
	ps = append(ps, escapeProbe{name: "environ-other-process", check: "reading /proc/<pid>/environ of a same-user process",
		cmd: fmt.Sprintf(`tr '\0' '\n' < /proc/%d/environ | grep '^GH_TOKEN='`, holder)})

	// 3. Host TCP servers on every address, and a UDP exchange.
	banner := "cork-esc-banner-" + randText()
	tcp := func(ip string) escapeProbe {
		p := escapeProbe{name: "tcp-" + ip, check: "connecting to a host TCP server on " + ip}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			p.skip = fmt.Sprintf("listen on %s: %v", ip, err)
			return p
		}
		serveBanner(t, ln, banner)
		p.cmd = fmt.Sprintf("python3 -c %s %s %d %s", shq(pyTCP), ip, ln.Addr().(*net.TCPAddr).Port, banner)
		return p
	}
	ps = append(ps, tcp("127.0.0.1"), tcp("::1"))
	for _, ip := range hostAddrs(t) {
		ps = append(ps, tcp(ip.String()))
	}
	query := "q-" + randText()
	ps = append(ps, escapeProbe{name: "udp-127.0.0.1", check: "a DNS-like UDP exchange with a host server on 127.0.0.1",
		cmd: fmt.Sprintf("python3 -c %s 127.0.0.1 %d %s", shq(pyUDP), serveUDP(t), query)})

	// 4. Unix sockets: in the user's /run/user/<uid>, and abstract.
	sock := filepath.Join(runUserSocketDir(t, u), "cork-esc-"+randText()+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveBanner(t, ln, banner)
	u.chown(t, sock)
	ps = append(ps, escapeProbe{name: "unix-run-user", check: "connecting to a Unix socket in " + filepath.Dir(sock),
		cmd: fmt.Sprintf("python3 -c %s %s %s", shq(pyUnix), shq(sock), banner)})
	// A service's socket in /run (a database's, the journal's), which no
	// table names: the sandbox's /run is its own.
	svc := filepath.Join("/run", "cork-esc-"+randText()+".sock")
	svcSkip := ""
	if sln, err := net.Listen("unix", svc); err != nil {
		svcSkip = fmt.Sprintf("cannot make a socket in /run: %v", err)
	} else {
		t.Cleanup(func() { sln.Close(); os.Remove(svc) })
		serveBanner(t, sln, banner)
		u.chown(t, svc)
	}
	ps = append(ps, escapeProbe{name: "unix-run-service", check: "connecting to a service's Unix socket in /run", skip: svcSkip,
		cmd: fmt.Sprintf("python3 -c %s %s %s", shq(pyUnix), shq(svc), banner)})
	abstract := "@cork-esc-" + randText()
	aln, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	serveBanner(t, aln, banner)
	ps = append(ps, escapeProbe{name: "unix-abstract", check: "connecting to a host abstract Unix socket",
		cmd: fmt.Sprintf("python3 -c %s %s %s", shq(pyUnix), abstract, banner)})
	// vsock reaches the hypervisor, outside any network namespace.
	vsockSkip := ""
	if fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0); err != nil {
		vsockSkip = fmt.Sprintf("no vsock on this host: %v", err)
	} else {
		unix.Close(fd)
	}
	ps = append(ps, escapeProbe{name: "vsock", check: "opening an AF_VSOCK socket", skip: vsockSkip,
		cmd: `python3 -c 'import socket; socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)'`})
	// A command that is uid 0 (cork run as plain root) needs no
	// capability to write some sysctls, core_pattern among them (a pipe
	// there runs a program as host root): /proc/sys is read-only. The
	// probe writes the value back unchanged.
	if e.mode.cmd.uid == 0 {
		ps = append(ps, escapeProbe{name: "sysctl-write", check: "writing /proc/sys/kernel/core_pattern as uid 0",
			cmd: `v=$(cat /proc/sys/kernel/core_pattern) && printf '%s\n' "$v" > /proc/sys/kernel/core_pattern`})
	}

	// 5. Writes outside the workspace and the sandbox HOME fail; inside
	// them they succeed.
	out := ownedDir(t, u, "cork-out")
	varTmp := "/var/tmp/cork-esc-" + randText()
	homeFile := filepath.Join(u.home, "cork-esc-"+randText())
	t.Cleanup(func() {
		for _, tag := range []string{"out", "in"} {
			os.Remove(varTmp + "-" + tag)
			os.Remove(homeFile + "-" + tag)
		}
	})
	notOnHost := func(path string) func(*testing.T, probeResult, bool) {
		return func(t *testing.T, _ probeResult, inside bool) {
			if _, err := os.Lstat(path); inside && err == nil {
				t.Errorf("the sandbox created %s on the host", path)
			}
		}
	}
	mark := "cork-esc-mark-" + randText()
	ps = append(ps,
		escapeProbe{name: "write-owned-dir", check: "writing in a host directory the user owns",
			cmd: "echo probe > " + shq(out) + `/written-"$TAG"`, verify: notOnHost(filepath.Join(out, "written-in"))},
		escapeProbe{name: "write-var-tmp", check: "writing in /var/tmp",
			cmd: "echo probe > " + shq(varTmp) + `-"$TAG"`, verify: notOnHost(varTmp + "-in")},
		escapeProbe{name: "write-workspace", check: "writing in the workspace", want: allowed,
			cmd: "echo " + mark + ` > ws-written-"$TAG" && cat ws-written-"$TAG"`,
			verify: func(t *testing.T, r probeResult, inside bool) {
				if !inside {
					return
				}
				if got, err := os.ReadFile(filepath.Join(e.ws, "ws-written-in")); err != nil || string(got) != mark+"\n" {
					t.Errorf("the workspace write is not on the host: %q, %v", got, err)
				}
			}},
		escapeProbe{name: "write-home", check: "writing in $HOME", want: allowed,
			cmd: "echo " + mark + ` > "$HOME"/` + filepath.Base(homeFile) + `-"$TAG"`, verify: notOnHost(homeFile + "-in")},
	)

	// 6. DNS.
	dns := escapeProbe{name: "dns", check: "resolving a name via DNS"}
	if name := resolvableName(t, u); name == "" {
		dns.skip = "none of proxy.golang.org, deb.debian.org, registry.npmjs.org resolves on this host"
	} else {
		dns.cmd = "getent hosts " + name
		dns.check += " (" + name + ")"
	}
	ps = append(ps, dns)

	// 7. The proxy works from inside, injecting the real token.
	ps = append(ps, escapeProbe{name: "proxy-curl", check: "curl through the sandbox's HTTPS_PROXY to a routed upstream",
		want: allowed, insideOnly: true,
		cmd:    `curl -sS --max-time 20 -H "Authorization: Bearer $` + escapeTokenVar + `" https://api.example.com/json && echo && echo "placeholder=$` + escapeTokenVar + `"`,
		verify: e.verifyProxy})

	// 8. Only the sandbox's own processes; and who runs the command, with
	// which privileges.
	ps = append(ps,
		escapeProbe{name: "proc-pids", check: "listing /proc", want: judged,
			cmd: `ls /proc | grep -xE '[0-9]+' | tr '\n' ' '`, verify: e.verifyPIDs(holder)},
		escapeProbe{name: "uid", check: "id -u", want: judged, cmd: "id -u",
			verify: func(t *testing.T, r probeResult, inside bool) {
				if r.code != 0 || strings.TrimSpace(r.out) != strconv.Itoa(u.uid) {
					t.Errorf("id -u (inside %v) = %d %q, want %d", inside, r.code, r.out, u.uid)
				}
			}},
		escapeProbe{name: "privileges", check: "the capabilities and no_new_privs", want: judged,
			cmd: `grep -E '^(CapEff|NoNewPrivs):' /proc/self/status`,
			verify: func(t *testing.T, r probeResult, inside bool) {
				f := map[string]string{}
				for _, l := range strings.Split(r.out, "\n") {
					if k, v, ok := strings.Cut(l, ":"); ok {
						f[k] = strings.TrimSpace(v)
					}
				}
				switch {
				case r.code != 0 || f["CapEff"] == "":
					t.Errorf("/proc/self/status (inside %v): %d %q", inside, r.code, r.out)
				case !inside && u.uid == 0 && strings.Trim(f["CapEff"], "0") == "":
					t.Errorf("outside, root has no effective capability (%s): the probe cannot show a drop", f["CapEff"])
				case inside && (strings.Trim(f["CapEff"], "0") != "" || f["NoNewPrivs"] != "1"):
					t.Errorf("inside, CapEff = %s and NoNewPrivs = %s; want none and 1", f["CapEff"], f["NoNewPrivs"])
				}
			}},
	)
	return ps
}

// verifyProxy checks the curl probe: the upstream got the real token while
// the sandbox held only a placeholder, which the echo brought back.
func (e *escapeEnv) verifyProxy(t *testing.T, r probeResult, _ bool) {
	body, ph, _ := strings.Cut(r.out, "\nplaceholder=")
	if ph == "" || ph == e.realToken {
		t.Errorf("the sandbox's %s is %q: want a placeholder", escapeTokenVar, e.sec.redact(ph))
	}
	var echo map[string]string
	if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &echo); err != nil {
		t.Fatalf("curl output %q: %v", e.sec.redact(r.out), err)
	}
	if echo["auth"] != "Bearer "+ph {
		t.Errorf("the echoed Authorization = %q, want the placeholder back", e.sec.redact(echo["auth"]))
	}
	reqs := e.upstream.RequestsTo("/json")
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests to /json, want 1", len(reqs))
	}
	if got := reqs[0].Header.Get("Authorization"); got != "Bearer "+e.realToken {
		t.Errorf("upstream Authorization = %q, want the real token", e.sec.redact(got))
	}
}

// verifyPIDs checks the /proc listing: outside it shows the token holder;
// inside only a handful of pids, none of cork, the test or the holder.
func (e *escapeEnv) verifyPIDs(holder int) func(*testing.T, probeResult, bool) {
	return func(t *testing.T, r probeResult, inside bool) {
		pids := procPIDs(r.out)
		if !inside {
			if !slices.Contains(pids, holder) {
				t.Errorf("outside, /proc lacks the token holder %d: the probe cannot show hiding (%q)", holder, r.out)
			}
			return
		}
		if len(pids) == 0 || len(pids) > 10 {
			t.Errorf("inside, /proc lists %d pids (%q), want a handful", len(pids), r.out)
		}
		for _, p := range []struct {
			what string
			pid  int
		}{{"cork", e.corkPID}, {"the test", os.Getpid()}, {"the token holder", holder}} {
			if slices.Contains(pids, p.pid) {
				t.Errorf("inside, /proc lists %s's pid %d (%q)", p.what, p.pid, r.out)
			}
		}
	}
}

// flagEnv is a non-root account's cork for the flag tests.
type flagEnv struct {
	a     account
	bin   string
	ws    string
	sec   secrets // not written once made: the subtests run in parallel
	token string
}

func newFlagEnv(t *testing.T) *flagEnv {
	t.Helper()
	needTools(t, "sh", "cat")
	a := plainUser(t)
	f := &flagEnv{a: a, bin: exposedCork(t, sharedDir(t)), ws: ownedDir(t, a, "cork-ws"), sec: secrets{}}
	f.token = f.sec.add("api_token")
	return f
}

// cork runs `cork run --inject api.example.com=ESC_API_TOKEN ARGS...` as
// the account, in the workspace.
func (f *flagEnv) cork(t *testing.T, args ...string) procRun {
	t.Helper()
	env := []string{"PATH=" + probePath(), "HOME=" + f.a.home, "USER=" + f.a.name, escapeTokenVar + "=" + f.token}
	r := start(t, f.a, env, f.ws, append([]string{f.bin, "run", "--inject", "api.example.com=" + escapeTokenVar}, args...)...)
	f.sec.check(t, "cork run's output", r.stdout+r.stderr)
	return r
}

func TestSandboxFlags(t *testing.T) {
	requireSandbox(t)
	lockHome(t)
	f := newFlagEnv(t)
	u := f.a

	t.Run("exit status passes through", func(t *testing.T) {
		t.Parallel()
		if r := f.cork(t, "--workspace", f.ws, "--", "sh", "-c", "exit 7"); r.code != 7 {
			t.Errorf("cork run -- sh -c 'exit 7' = %d, want 7; stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("--no-isolate warns", func(t *testing.T) {
		t.Parallel()
		r := f.cork(t, "--no-isolate", "--workspace", f.ws, "--", "true")
		if r.code != 0 {
			t.Fatalf("cork run --no-isolate = %d; stderr:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "WARNING: --no-isolate") {
			t.Errorf("stderr lacks the warning:\n%s", r.stderr)
		}
		if !strings.Contains(r.stderr, `"event":"sandbox_unconfined"`) {
			t.Errorf("log lacks event sandbox_unconfined:\n%s", r.stderr)
		}
	})

	t.Run("--workspace $HOME refused", func(t *testing.T) {
		t.Parallel()
		r := f.cork(t, "--quiet", "--workspace", u.home, "--", "true")
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], u.home) {
			t.Errorf("cork run --workspace %s = %d, %q; want 2 and one line naming it", u.home, r.code, r.stderr)
		}
	})

	// Each flag case runs the probe without the flag, where it must do the
	// opposite, and with it.
	mark := "cork-flag-" + randText()
	plain := filepath.Join(ownedDir(t, u, "cork-hide"), "visible.txt")
	if !plantFile(t, u, plain, mark+"\n") {
		t.Fatalf("%s exists", plain)
	}
	// A file in a location hidden by default: a new name, never a real
	// credential file.
	hidden := filepath.Join(u.home, ".aws", "cork-ro-"+randText())
	if !plantFile(t, u, hidden, mark+"\n") {
		t.Fatalf("%s exists", hidden)
	}
	rw := ownedDir(t, u, "cork-rw")
	for _, tt := range []struct {
		name  string
		flags []string
		cmd   string
		// without and with the flag: does cmd succeed?
		without, with bool
		after         func(t *testing.T) // once both ran
	}{
		{"--hide a file", []string{"--hide", plain}, "grep -q " + mark + " " + shq(plain), true, false, nil},
		// plain lies in the user's home, outside the workspace.
		{"--hide-home", []string{"--hide-home"}, "grep -q " + mark + " " + shq(plain), true, false, nil},
		{"--hide-home keeps the workspace", []string{"--hide-home"}, `echo x > "$PWD/hh-$TAG" && test -s "$PWD/hh-$TAG"`, true, true, nil},
		{"--read-only a hidden file", []string{"--read-only", hidden}, "grep -q " + mark + " " + shq(hidden), false, true, nil},
		{"--read-only stays read-only", []string{"--read-only", hidden}, "echo x >> " + shq(hidden), false, false, nil},
		{"--read-write a directory", []string{"--read-write", rw}, `echo x > ` + shq(rw) + `/w-"$TAG"`, false, true, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(rw, "w-without")); err == nil {
				t.Errorf("without --read-write the sandbox wrote in %s", rw)
			}
			if _, err := os.Stat(filepath.Join(rw, "w-with")); err != nil {
				t.Errorf("with --read-write the write is not on the host: %v", err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				tag   string
				flags []string
				want  bool
			}{{"without", nil, tt.without}, {"with", tt.flags, tt.with}} {
				// The marker shows that the command ran: a failing cork
				// must not pass for a failing probe.
				args := append(append([]string{"--quiet", "--workspace", f.ws, "--env", "TAG=" + c.tag}, c.flags...), "--", "sh", "-c", "echo sandbox-ran; "+tt.cmd)
				r := f.cork(t, args...)
				if !strings.HasPrefix(r.stdout, "sandbox-ran\n") {
					t.Fatalf("%s the flag, the command did not run: status %d, stderr:\n%s", c.tag, r.code, r.stderr)
				}
				if got := r.code == 0; got != c.want {
					t.Errorf("%s the flag, %q succeeded = %v (status %d), want %v; stderr:\n%s", c.tag, tt.cmd, got, r.code, c.want, r.stderr)
				}
			}
			if tt.after != nil {
				tt.after(t)
			}
		})
	}
}

// TestSandboxUserNamespaceRefused makes the kernel refuse the sandbox's
// user namespace for real: in a user namespace of its own whose
// user.max_user_namespaces is 0, as a non-root user on the host.
func TestSandboxUserNamespaceRefused(t *testing.T) {
	needTools(t, "unshare", "sh")
	f := newFlagEnv(t)
	script := `echo 0 > /proc/sys/user/max_user_namespaces || exit 97; exec "$0" run --quiet --inject api.example.com=` + escapeTokenVar + ` -- true`
	env := []string{"PATH=" + probePath(), "HOME=" + f.a.home, escapeTokenVar + "=" + f.token}
	r := start(t, f.a, env, f.ws, "unshare", "--user", "--map-root-user", "sh", "-c", script, f.bin)
	if r.code == 97 || strings.Contains(r.stderr, "unshare:") {
		testenv.Missing(t, "cannot limit user namespaces to 0 in a user namespace: %d %s", r.code, r.stderr)
	}
	f.sec.check(t, "cork run's output", r.stdout+r.stderr)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], "--backend docker") {
		t.Errorf("cork run without user namespaces = %d, stderr %q; want 2 and one line naming --backend docker", r.code, r.stderr)
	}
}
