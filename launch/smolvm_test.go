package launch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/smolvmstandin"
	"github.com/cork-sh/cork/internal/testing/testenv"
)

func TestSmolvmRegistered(t *testing.T) {
	b, err := Lookup("smolvm")
	if err != nil {
		t.Fatalf("Lookup(%q) = %v", "smolvm", err)
	}
	if _, ok := b.(*Smolvm); !ok || b.Name() != "smolvm" {
		t.Errorf("Lookup(%q) = %T named %q, want *Smolvm named smolvm", "smolvm", b, b.Name())
	}
}

// wantGuestEnv is the VM environment for testPlan with a proxy at
// proxyURL, as -e flags in order.
func wantGuestEnv(proxyURL string, extra ...string) []string {
	env := map[string]string{
		"API_TOKEN":          testPlaceholder,
		"API_TOKEN_FILE":     "/home/cork/" + testDummyFile,
		"HOME":               "/home/cork",
		"NO_PROXY":           "localhost,127.0.0.1,::1",
		"no_proxy":           "localhost,127.0.0.1,::1",
		"NODE_USE_ENV_PROXY": "1",
	}
	for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"} {
		env[k] = proxyURL
	}
	for _, k := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT", "npm_config_cafile"} {
		env[k] = "/home/cork/.cork/ca-bundle.pem"
	}
	for _, k := range []string{"NODE_EXTRA_CA_CERTS", "CODEX_CA_CERTIFICATE"} {
		env[k] = "/home/cork/.cork/ca.pem"
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var out []string
	for _, kv := range envList(env) {
		out = append(out, "--env", kv)
	}
	return out
}

func TestSmolvmArgs(t *testing.T) {
	t.Parallel()
	base := func() *Spec {
		return &Spec{
			Plan:    testPlan(),
			HostEnv: map[string]string{"API_TOKEN": testToken, testSecretVar: testSecretValue, "TERM": "xterm-256color", "PATH": "/usr/bin"},
			Command: []string{"codex", "--full-auto"},
			Image:   "ghcr.io/example/agent:1",
			Env:     map[string]string{"EXTRA": "~/x"},
		}
	}
	const proxy = "http://192.0.2.10:41234"
	cases := []struct {
		name string
		spec func() *Spec
		run  smolvmRun
		want []string
	}{
		{
			name: "workspace and stdin",
			spec: func() *Spec {
				s := base()
				s.Stdin = strings.NewReader("")
				return s
			},
			run: smolvmRun{home: "/tmp/cork-smolvm-1", workspace: "/src/project", guestIP: netip.MustParseAddr("192.0.2.10"), proxyURL: proxy},
			want: slices.Concat([]string{"machine", "run", "--net", "--image", "ghcr.io/example/agent:1",
				"--allow-cidr", "192.0.2.10/32", "--allow-host", "192.0.2.10", "--proxy", proxy,
				"--volume", "/tmp/cork-smolvm-1:/home/cork", "--volume", "/src/project:/workspace",
				"--workdir", "/workspace", "-i"},
				wantGuestEnv(proxy, "EXTRA=/home/cork/x", "TERM=xterm-256color"),
				[]string{"--", "codex", "--full-auto"}),
		},
		{
			name: "no workspace, tty, IPv6",
			spec: base,
			run:  smolvmRun{home: "/tmp/cork-smolvm-2", guestIP: netip.MustParseAddr("2001:db8::5"), proxyURL: "http://[2001:db8::5]:3128", tty: true},
			want: slices.Concat([]string{"machine", "run", "--net", "--image", "ghcr.io/example/agent:1",
				"--allow-cidr", "2001:db8::5/128", "--allow-host", "2001:db8::5", "--proxy", "http://[2001:db8::5]:3128",
				"--volume", "/tmp/cork-smolvm-2:/home/cork", "--workdir", "/home/cork", "-t"},
				wantGuestEnv("http://[2001:db8::5]:3128", "EXTRA=/home/cork/x", "TERM=xterm-256color"),
				[]string{"--", "codex", "--full-auto"}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec()
			ss := &session{spec: spec, home: tc.run.home}
			env := ss.sandboxEnv((&smolvmSandbox{}).layout(), tc.run.proxyURL, SmolvmHome+"/"+SandboxBundleFile, SmolvmHome+"/"+SandboxCAFile)
			got := smolvmArgs(spec, tc.run, env)
			if !slices.Equal(got, tc.want) {
				t.Errorf("smolvmArgs =\n%q\nwant\n%q", got, tc.want)
			}
			for _, a := range got {
				if strings.Contains(a, testToken) || strings.Contains(a, testSecretValue) {
					t.Errorf("argument %q holds a host secret", a)
				}
			}
		})
	}
}

func TestPrimaryIPv4(t *testing.T) {
	t.Parallel()
	ip, err := primaryIPv4()
	if err != nil {
		testenv.Missing(t, "no IPv4 default route here: %v", err)
	}
	for _, a := range hostAddrs(t) {
		if a == ip {
			return
		}
	}
	t.Errorf("primaryIPv4() = %s, not one of this host's addresses %v", ip, hostAddrs(t))
}

func TestSmolvmProcessEnv(t *testing.T) {
	t.Parallel()
	spec := &Spec{Plan: testPlan(), HostEnv: map[string]string{
		"PATH": "/usr/bin", "HOME": "/home/me", "XDG_CACHE_HOME": "/c", "SMOLVM_DATA_DIR": "/d",
		"API_TOKEN": testToken, testSecretVar: testSecretValue, "HTTPS_PROXY": "http://corp:3128", "GH_TOKEN": "x",
	}}
	got := smolvmProcessEnv(spec)
	want := []string{"HOME=/home/me", "PATH=/usr/bin", "SMOLVM_DATA_DIR=/d", "XDG_CACHE_HOME=/c"}
	if !slices.Equal(got, want) {
		t.Errorf("smolvmProcessEnv = %q, want %q", got, want)
	}
}

func TestSmolvmProxyAddrs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		listen, wantListen, wantGuest, wantErr string
	}{
		{listen: "10.1.2.3:0", wantListen: "10.1.2.3:0", wantGuest: "10.1.2.3"},
		{listen: "[fd00::7]:3128", wantListen: "[fd00::7]:3128", wantGuest: "fd00::7"},
		{listen: "127.0.0.1:0", wantErr: "loopback"},
		{listen: "[::1]:0", wantErr: "loopback"},
		{listen: "localhost:0", wantErr: "want IP:port"},
		{listen: "10.1.2.3", wantErr: "want IP:port"},
	}
	for _, tc := range cases {
		listen, guest, err := (&Smolvm{ProxyListen: tc.listen}).proxyAddrs()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("proxyAddrs(%q) = %v, want an error about %s", tc.listen, err, tc.wantErr)
			}
			continue
		}
		if err != nil || listen.String() != tc.wantListen || guest.String() != tc.wantGuest {
			t.Errorf("proxyAddrs(%q) = %s, %s, %v, want %s, %s, nil", tc.listen, listen, guest, err, tc.wantListen, tc.wantGuest)
		}
	}
}

// TestSmolvmPreflight: every setup problem is a *SetupError, found before
// anything is created.
func TestSmolvmPreflight(t *testing.T) {
	tmp := isolatedTempDir(t)
	standin := helperLink(t, standinBin)
	emptyDir := t.TempDir()
	ok := func() (*Spec, *Smolvm) {
		return &Spec{
			Plan:    testPlan(),
			HostEnv: map[string]string{"PATH": filepath.Dir(standin), "API_TOKEN": testToken},
			Command: []string{"true"},
			Image:   "alpine:3.20",
		}, &Smolvm{ProxyListen: "0.0.0.0:0"}
	}
	cases := []struct {
		name   string
		change func(*Spec, *Smolvm)
		want   string
	}{
		{"no command", func(s *Spec, _ *Smolvm) { s.Command = nil }, "no command"},
		{"no image", func(s *Spec, _ *Smolvm) { s.Image = "" }, "--image"},
		{"no smolvm in PATH", func(s *Spec, _ *Smolvm) { s.HostEnv["PATH"] = emptyDir }, `"smolvm" not found in PATH`},
		{"binary path missing", func(_ *Spec, v *Smolvm) { v.Binary = filepath.Join(emptyDir, "smolvm") }, "smolvm binary"},
		{"workspace missing", func(s *Spec, _ *Smolvm) { s.Workspace = filepath.Join(emptyDir, "nope") }, "workspace"},
		{"workspace with a colon", func(s *Spec, _ *Smolvm) { s.Workspace = filepath.Join(emptyDir, "a:b") }, "colon"},
		{"missing credential", func(s *Spec, _ *Smolvm) { delete(s.HostEnv, "API_TOKEN") }, "API_TOKEN"},
		{"loopback listen", func(_ *Spec, v *Smolvm) { v.ProxyListen = "127.0.0.1:0" }, "loopback"},
		{"listen address not on this host", func(_ *Spec, v *Smolvm) { v.ProxyListen = "192.0.2.77:0" }, "proxy listener"},
		// Refused once the proxy's address is known, before anything else:
		// binds 0.0.0.0:0 for a moment; nothing connects.
		{"token in --env", func(s *Spec, _ *Smolvm) { s.Env = map[string]string{"LEAK": "Bearer " + testToken} }, "--env LEAK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, s := ok()
			tc.change(spec, s)
			if s.ProxyListen == "0.0.0.0:0" {
				if _, err := primaryIPv4(); err != nil {
					testenv.Missing(t, "no IPv4 default route here: %v", err)
				}
			}
			code, err := s.Run(context.Background(), resolved(spec))
			var se *SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %d, %v, want a *SetupError about %s", code, err, tc.want)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q reveals the token", err)
			}
			if left := tempEntries(t, tmp, "*"); len(left) != 0 {
				t.Errorf("left behind after a failed preflight: %q", left)
			}
		})
	}
}

// vmNet is the stand-in's "VM network": a namespace whose only link is a
// veth to the host, guestIP on its end and hostIP on the host's, and no
// other route. The proxy listens on hostIP.
type vmNet struct {
	ns              string
	hostIP, guestIP netip.Addr
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newVMNet(t *testing.T) *vmNet {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	suffix := hex.EncodeToString(b[:3])
	existing, err := exec.Command("ip", "-o", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	// A /30 in 10.231.0.0/16 that this host does not use yet.
	var third int
	for i := 0; ; i++ {
		third = (int(b[3]) + i) % 256
		if !strings.Contains(string(existing), fmt.Sprintf(" 10.231.%d.", third)) {
			break
		}
		if i == 255 {
			t.Fatal("no free /30 in 10.231.0.0/16")
		}
	}
	n := &vmNet{
		ns:      "cork-smolvm-" + suffix,
		hostIP:  netip.MustParseAddr(fmt.Sprintf("10.231.%d.1", third)),
		guestIP: netip.MustParseAddr(fmt.Sprintf("10.231.%d.2", third)),
	}
	hostIf, guestIf := "cksh"+suffix, "cksg"+suffix
	ipCmd(t, "netns", "add", n.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.ns).Run() })
	ipCmd(t, "link", "add", hostIf, "type", "veth", "peer", "name", guestIf, "netns", n.ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	ipCmd(t, "addr", "add", n.hostIP.String()+"/30", "dev", hostIf)
	ipCmd(t, "link", "set", hostIf, "up")
	ipCmd(t, "-n", n.ns, "addr", "add", n.guestIP.String()+"/30", "dev", guestIf)
	ipCmd(t, "-n", n.ns, "link", "set", guestIf, "up")
	ipCmd(t, "-n", n.ns, "link", "set", "lo", "up")
	return n
}

// standinSetup puts the stand-in in a directory of its own with its
// configuration and returns that directory and where it records argv.
func standinSetup(t *testing.T, ns string) (dir, record string) {
	t.Helper()
	bin := helperLink(t, standinBin)
	dir = filepath.Dir(bin)
	record = filepath.Join(t.TempDir(), "argv.json")
	cfg, _ := json.Marshal(smolvmstandin.Config{Netns: ns, Record: record})
	if err := os.WriteFile(filepath.Join(dir, smolvmstandin.ConfigFile), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, record
}

// countingServer accepts and counts connections on addr.
type countingServer struct {
	ln   net.Listener
	mu   sync.Mutex
	hits int
	wg   sync.WaitGroup
}

func startCounting(t *testing.T, addr string) *countingServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &countingServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.hits++
			s.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *countingServer) port() string { return strconv.Itoa(s.ln.Addr().(*net.TCPAddr).Port) }

func (s *countingServer) stop() { s.ln.Close(); s.wg.Wait() }

func (s *countingServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

func TestSmolvmStandIn(t *testing.T) {
	requirePrivileged(t, true)
	t.Parallel()
	vm := newVMNet(t)
	standinDir, record := standinSetup(t, vm.ns)
	probe := helperLink(t, probeName)
	up := startUpstream(t)
	host := vm.hostIP.String()

	newSpec := func(command ...string) (*Spec, *bytes.Buffer, *bytes.Buffer) {
		var stdout, stderr bytes.Buffer
		return &Spec{
			Plan: testPlan(),
			HostEnv: map[string]string{
				"PATH":        standinDir + string(os.PathListSeparator) + os.Getenv("PATH"),
				"API_TOKEN":   testToken,
				testSecretVar: testSecretValue,
				"TERM":        "xterm",
				"HOME":        "/root",
			},
			Command:   append([]string{probe}, command...),
			Workspace: t.TempDir(),
			Image:     "alpine:3.20",
			Proxy:     up.proxyOptions(),
			Stdout:    &stdout,
			Stderr:    &stderr,
		}, &stdout, &stderr
	}
	backend := &Smolvm{ProxyListen: host + ":0"}

	t.Run("egress only through the proxy", func(t *testing.T) {
		// A service on every host address, and one on host loopback only.
		wild := startCounting(t, "0.0.0.0:0")
		local := startCounting(t, "127.0.0.1:0")
		upHost, upPort, _ := net.SplitHostPort(up.Addr())
		dials := map[string]string{
			up.Addr():                              "ECONNREFUSED", // the VM's own loopback
			net.JoinHostPort(host, upPort):         "ECONNREFUSED", // the upstream listens on host loopback only
			net.JoinHostPort(host, local.port()):   "ECONNREFUSED",
			net.JoinHostPort(upHost, local.port()): "ECONNREFUSED",
			// smolvm's allow list is per address, not per port: a host
			// service listening on every address is reachable at the
			// proxy's address too. The same holds for real smolvm.
			net.JoinHostPort(host, wild.port()): "ok",
		}
		for _, ip := range hostAddrs(t) {
			if ip != vm.hostIP {
				dials[net.JoinHostPort(ip.String(), wild.port())] = "ENETUNREACH" // no route: nothing is sent
			}
		}
		targets := slices.Sorted(maps.Keys(dials))
		spec, stdout, stderr := newSpec("report", "get=https://"+testHost+"/v1/ping", "dial="+strings.Join(targets, ","))
		code, err := backend.Run(context.Background(), resolved(spec))
		if err != nil || code != 0 {
			t.Fatalf("Run = %d, %v, want 0, nil; stderr:\n%s", code, err, stderr)
		}

		// The invocation, exactly.
		raw, err := os.ReadFile(record)
		if err != nil {
			t.Fatal(err)
		}
		var argv []string
		if err := json.Unmarshal(raw, &argv); err != nil {
			t.Fatal(err)
		}
		proxyURL, home := "", ""
		for i := 0; i+1 < len(argv); i++ {
			switch {
			case argv[i] == "--proxy":
				proxyURL = argv[i+1]
			case argv[i] == "--volume" && strings.HasSuffix(argv[i+1], ":/home/cork"):
				home = strings.TrimSuffix(argv[i+1], ":/home/cork")
			}
		}
		if !regexp.MustCompile(`^http://cork:[A-Za-z0-9_-]{24}@` + regexp.QuoteMeta(host) + `:[0-9]+$`).MatchString(proxyURL) {
			t.Errorf("--proxy %q, want http://cork:<session credential>@%s:PORT", proxyURL, host)
		}
		if filepath.Dir(home) != os.TempDir() || !strings.HasPrefix(filepath.Base(home), "cork-smolvm-") {
			t.Errorf("sandbox home %q, want a cork-smolvm-* directory in %s", home, os.TempDir())
		}
		guestEnv := wantGuestEnv(proxyURL, "TERM=xterm")
		want := slices.Concat([]string{"machine", "run", "--net", "--image", "alpine:3.20",
			"--allow-cidr", host + "/32", "--allow-host", host, "--proxy", proxyURL,
			"--volume", home + ":/home/cork", "--volume", spec.Workspace + ":/workspace", "--workdir", "/workspace"},
			guestEnv,
			[]string{"--"}, spec.Command)
		if !slices.Equal(argv, want) {
			t.Errorf("smolvm invoked with\n%q\nwant\n%q", argv, want)
		}
		for i, a := range argv {
			if strings.Contains(a, testToken) || strings.Contains(a, testSecretValue) {
				t.Errorf("smolvm argument %d %q holds a host secret", i, a)
			}
		}

		lines := parseProbe(t, stdout.String())
		if len(lines) != 3 {
			t.Fatalf("probe printed %d lines, want 3:\n%s\nstderr:\n%s", len(lines), stdout, stderr)
		}
		rep, get, dial := lines[0], lines[1], lines[2]
		// The stand-in maps /home/cork back to the host directory.
		checkSandboxEnv(t, rep.Env, proxyURL, home)
		if rep.Env["PATH"] != smolvmstandin.GuestPath || len(rep.Env) != len(guestEnv)/2+1 {
			t.Errorf("the command's environment is %q, want only the -e variables and the image PATH", slices.Sorted(maps.Keys(rep.Env)))
		}
		if !slices.Equal(rep.Files, wantHomeFiles) {
			t.Errorf("HOME holds %q, want %q", rep.Files, wantHomeFiles)
		}
		if rep.Cwd != spec.Workspace {
			t.Errorf("working directory %q, want the workspace %q", rep.Cwd, spec.Workspace)
		}
		if get.Status != 200 || get.Sent != "Bearer "+testPlaceholder {
			t.Errorf("GET through the proxy = %d %q (sent %q, err %q), want 200 with the placeholder", get.Status, get.Body, get.Sent, get.Err)
		}
		if got := up.got(); !slices.Equal(got, []string{"Bearer " + testToken}) {
			t.Errorf("upstream got Authorization %q, want the real token once", got)
		}
		for _, target := range targets {
			if got := dial.Dials[target]; got != dials[target] {
				t.Errorf("dial %s from the VM = %s, want %s", target, got, dials[target])
			}
		}
		if n := local.count(); n != 0 {
			t.Errorf("the host-loopback service accepted %d connection(s) from the VM, want 0", n)
		}
		if n := wild.count(); n != 1 {
			t.Errorf("the every-address service accepted %d connection(s), want 1 (at the proxy's address only)", n)
		}
		if _, err := os.Stat(home); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("sandbox home %s after the run: %v, want it removed", home, err)
		}
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(proxyURL, "http://"), time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("the proxy at %s still accepts connections after the run", proxyURL)
		}
	})

	t.Run("live refresh", func(t *testing.T) {
		up := startUpstream(t)
		spec, _, _ := newSpec()
		spec.Proxy = up.proxyOptions()
		checkRefresh(t, backend, spec, up)
	})

	t.Run("exit status", func(t *testing.T) {
		for _, want := range []int{0, 3} {
			spec, _, stderr := newSpec("exit=" + strconv.Itoa(want))
			code, err := backend.Run(context.Background(), resolved(spec))
			if err != nil || code != want {
				t.Errorf("Run(exit=%d) = %d, %v, want %d, nil; stderr:\n%s", want, code, err, want, stderr)
			}
		}
	})

	t.Run("cancel tears down", func(t *testing.T) {
		spec, _, stderr := newSpec("sleep=60s")
		started := make(chan struct{})
		spec.Progress = func(m string) {
			if strings.HasPrefix(m, "starting a") {
				close(started)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan time.Time, 1)
		go func() { <-started; time.Sleep(500 * time.Millisecond); cancelled <- time.Now(); cancel() }()
		code, err := backend.Run(ctx, resolved(spec))
		if err != nil || code != 128+int(syscall.SIGTERM) {
			t.Errorf("Run cancelled = %d, %v, want %d, nil; stderr:\n%s", code, err, 128+int(syscall.SIGTERM), stderr)
		}
		if d := time.Since(<-cancelled); d > ChildStopGrace {
			t.Errorf("Run took %v after cancel, want it within the %v grace", d, ChildStopGrace)
		}
		raw, err := os.ReadFile(record)
		if err != nil {
			t.Fatal(err)
		}
		var argv []string
		json.Unmarshal(raw, &argv)
		for i := 0; i+1 < len(argv); i++ {
			if home, ok := strings.CutSuffix(argv[i+1], ":/home/cork"); ok && argv[i] == "--volume" {
				if _, err := os.Stat(home); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("sandbox home %s after the cancelled run: %v, want it removed", home, err)
				}
			}
		}
	})
}
