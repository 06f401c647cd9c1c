package launch

// What cork relies on in smolvm (smol-machines/smolvm; read from its docs/
// and src/ in the repository, since nothing here can run it):
//
//   - `smolvm machine run [FLAGS] --image IMAGE -- COMMAND...` runs one
//     command in an ephemeral VM that is removed on exit (README quickstart;
//     src/cli/machine.rs RunCmd). Flags used: `-v/--volume HOST:GUEST[:ro]`,
//     `-e/--env K=V`, `-w/--workdir DIR`, `-i` (keep stdin open), `-t`
//     (allocate a pty), `--net`, `--allow-cidr CIDR`, `--allow-host HOST`,
//     `--proxy URL` (proxy for the in-VM image pull).
//   - Without `--net` the guest has no network, and the image pull happens
//     inside the guest (docs/sandbox/README.md).
//   - `--allow-cidr`/`--allow-host` imply `--net`; either one makes smolvm
//     pick the virtio-net backend, because only its host-side gateway
//     enforces the allow list (TSI does not: src/network/launch.rs). Policy
//     is per address, never per port (src/cli/parsers.rs).
//   - `--allow-host` given an IP literal adds IP/32 and turns on the
//     gateway's DNS filter with that literal as the only allowed "name", so
//     no name resolves in the guest (src/cli/parsers.rs
//     resolve_host_to_cidrs; crates/smolvm-network/src/egress.rs). This is
//     read from the source, not documented.
//   - The host from inside the VM: the virtio-net gateway terminates every
//     guest TCP flow and re-dials the destination from the host
//     (crates/smolvm-network/src/lib.rs), so the guest reaches a host
//     service at one of the host's own non-loopback addresses. The guest's
//     127.0.0.1 is the guest itself, and the host's loopback is refused by
//     default (egress.rs FloorMode::MetadataAndLoopback);
//     src/cli/proxy_opts.rs rewrites a loopback proxy to "the host's
//     primary outbound IP" for the same reason. The docs name no host alias
//     such as host.smolvm.internal.
//
// Choices where the docs are silent:
//   - The proxy listens on the host's primary IPv4 address (the source
//     address of its default route), on a random port: the narrowest
//     address the guest can reach. Smolvm.ProxyListen overrides it.
//   - Egress is limited to that one address with --allow-cidr, plus
//     --allow-host of the same literal for the DNS filter. smolvm cannot
//     narrow it to one port: any host service listening on that address
//     (or on 0.0.0.0) is reachable from the VM too.
//   - The image pull goes through cork's proxy (--proxy), since the allow
//     list admits nothing else: a registry image needs its registry hosts
//     allowed (cork run --allow HOST), or use a local image (a `docker save`
//     archive or a rootfs directory), which needs no pull.
//   - The sandbox home is mounted at /home/cork and HOME points there; the
//     workspace at /workspace. smolvm boots at most four -v mounts
//     (docs/sandbox/SKILL.md); cork uses two.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Smolvm runs the command in an ephemeral smolvm microVM (`smolvm machine
// run`). The proxy runs inside cork on the host, listening on an address
// the VM reaches through smolvm's network gateway; the VM's egress is
// limited to that address. The zero value is ready to use; a Smolvm is
// safe for concurrent runs.
type Smolvm struct {
	// Binary is the smolvm executable: a path, or a name looked up in the
	// PATH of Spec.HostEnv. Empty means DefaultSmolvmBinary.
	Binary string
	// ProxyListen is the host address ("IP:port"; port 0 picks one) the
	// in-process proxy listens on, and the VM dials. Empty means the
	// host's primary IPv4 address on a random port. An unspecified IP
	// (0.0.0.0) listens everywhere and tells the VM the primary address. A
	// loopback IP is an error: inside the VM, loopback is the VM.
	ProxyListen string
}

var _ Backend = (*Smolvm)(nil)

const (
	// DefaultSmolvmBinary is the smolvm executable looked up in PATH.
	DefaultSmolvmBinary = "smolvm"
	// SmolvmHome is where the sandbox home (dummy files, CA) is mounted in
	// the VM, and the VM's HOME.
	SmolvmHome = "/home/cork"
	// SmolvmWorkspace is where Spec.Workspace is mounted in the VM.
	SmolvmWorkspace = "/workspace"
)

// smolvmHostEnv are the host variables the smolvm process itself keeps
// (where its cache and config live). The VM gets none of them: only -e.
var smolvmHostEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ",
	"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"}

// vmGuestEnv are the host variables a microVM (smolvm, qemu) keeps:
// terminal and locale settings only.
var vmGuestEnv = []string{"TERM", "COLORTERM", "LANG", "LC_ALL", "LC_CTYPE", "TZ"}

// Name implements Backend.
func (*Smolvm) Name() string { return "smolvm" }

// Run implements Backend.
func (s *Smolvm) Run(ctx context.Context, spec *Spec) (int, error) {
	return runSession(ctx, spec, &smolvmSandbox{cfg: s})
}

// smolvmSandbox is one run of the smolvm backend.
type smolvmSandbox struct {
	cfg *Smolvm
	bin string
	ln  net.Listener
	ip  *inProcess
	vm  smolvmRun // what smolvm's arguments need
}

func (*smolvmSandbox) layout() layout {
	return layout{home: SmolvmHome, hostEnv: vmGuestEnv}
}

// preflight: every check that can fail runs before anything exists, the
// proxy's listener last (it is the first thing that exists).
func (vb *smolvmSandbox) preflight(_ context.Context, s *session) error {
	spec := s.spec
	if spec.Image == "" {
		return setupErrorf("smolvm: no image: give one with --image (a registry reference, a docker save archive or a rootfs directory)")
	}
	var err error
	if vb.bin, err = vb.cfg.lookBinary(spec.HostEnv); err != nil {
		return &SetupError{Err: err}
	}
	if ws := spec.Workspace; ws != "" {
		if ws, err = filepath.Abs(ws); err != nil {
			return setupErrorf("workspace: %w", err)
		}
		if strings.Contains(ws, ":") {
			return setupErrorf("workspace %s: smolvm cannot mount a path with a colon", ws)
		}
		if err := CheckDir(ws); err != nil {
			return setupErrorf("workspace: %w", err)
		}
		vb.vm.workspace = ws
	}
	listen, guestIP, err := vb.cfg.proxyAddrs()
	if err != nil {
		return &SetupError{Err: err}
	}
	if vb.ln, err = net.Listen("tcp", listen.String()); err != nil {
		return setupErrorf("smolvm: proxy listener on %s: %w", listen, err)
	}
	vb.vm.guestIP = guestIP
	vb.vm.tty = isTerminal(spec.Stdin) && isTerminal(spec.Stdout)
	return nil
}

func (*smolvmSandbox) makeHome(*session) (string, error) {
	home, err := os.MkdirTemp("", "cork-smolvm-")
	if err != nil {
		return "", fmt.Errorf("sandbox home: %w", err)
	}
	return home, nil
}

// startProxy serves the proxy in cork on the listener preflight opened:
// the VM's only way out.
func (vb *smolvmSandbox) startProxy(_ context.Context, s *session) (*sessionProxy, error) {
	auth := sessionAuth()
	addr := vb.ln.Addr().(*net.TCPAddr)
	var err error
	if vb.ip, err = startInProcess(s.spec, vb.ln, s.tokens, auth); err != nil {
		return nil, err
	}
	vb.ln = nil // the proxy's now
	s.spec.progress("proxy listening on %s (the VM's only way out)", addr)
	// The session credential is in smolvm's argv (the VM's environment),
	// which local users can read with ps; it keeps the rest of the
	// network, which can reach this address, from using the proxy.
	url := proxyURL(auth, net.JoinHostPort(vb.vm.guestIP.String(), strconv.Itoa(addr.Port)))
	vb.vm.proxyURL = url
	return &sessionProxy{url: url, sink: vb.ip.proxy, caPEM: vb.ip.proxy.CACertPEM()}, nil
}

func (vb *smolvmSandbox) run(ctx context.Context, s *session, env map[string]string) (int, error) {
	spec := s.spec
	vb.vm.home = s.home
	cmd := exec.Command(vb.bin, smolvmArgs(spec, vb.vm, env)...)
	cmd.Env = smolvmProcessEnv(spec)
	// Not the caller's directory: smolvm must not pick up a project's
	// Smolfile, which could widen the VM's mounts or egress.
	cmd.Dir = s.home
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	grouped := !isTerminal(spec.Stdin) // as for local: see localSandbox.run
	if grouped {
		ownProcessGroup(cmd)
	}
	cmd.WaitDelay = outputDrain
	if _, err := os.Stat(spec.Image); err != nil {
		spec.progress("the VM pulls %s through the proxy: its registry's hosts must be allowed (--allow), or use a docker save archive", spec.Image)
	}
	spec.progress("starting a %s microVM; running %s", spec.Image, filepath.Base(spec.Command[0]))
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", vb.bin, err)
	}
	code, err := waitChild(ctx, cmd, grouped)
	spec.progress("microVM exited with status %d; tearing down", code)
	return code, err
}

func (vb *smolvmSandbox) teardown(s *session) error {
	var errs []error
	if vb.ln != nil {
		errs = append(errs, vb.ln.Close())
	}
	if vb.ip != nil {
		errs = append(errs, vb.ip.Close())
	}
	if s.home != "" {
		errs = append(errs, os.RemoveAll(s.home))
	}
	return errors.Join(errs...)
}

// smolvmRun is what one run adds to the spec to build smolvm's arguments.
type smolvmRun struct {
	home      string     // host directory mounted as SmolvmHome
	workspace string     // absolute host directory mounted as SmolvmWorkspace; empty for none
	guestIP   netip.Addr // the proxy's address as the VM dials it
	proxyURL  string     // the proxy as the VM reaches it
	tty       bool
}

// smolvmArgs returns the arguments of `smolvm machine run` for spec, in a
// fixed order; env is the VM's environment (the session's sandboxEnv).
func smolvmArgs(spec *Spec, r smolvmRun, env map[string]string) []string {
	bits := 32
	if r.guestIP.Is6() {
		bits = 128
	}
	args := []string{"machine", "run", "--net", "--image", spec.Image,
		// Egress: the proxy's address only. The literal as an allowed host
		// also switches on smolvm's DNS filter, so no name resolves in the
		// guest either.
		"--allow-cidr", netip.PrefixFrom(r.guestIP, bits).String(),
		"--allow-host", r.guestIP.String(),
		// The in-VM image pull is egress too: through the proxy.
		"--proxy", r.proxyURL,
		"--volume", r.home + ":" + SmolvmHome,
	}
	workdir := SmolvmHome
	if r.workspace != "" {
		args = append(args, "--volume", r.workspace+":"+SmolvmWorkspace)
		workdir = SmolvmWorkspace
	}
	args = append(args, "--workdir", workdir)
	if spec.Stdin != nil {
		args = append(args, "-i")
	}
	if r.tty {
		args = append(args, "-t")
	}
	for _, kv := range envList(env) {
		args = append(args, "--env", kv)
	}
	args = append(args, "--")
	return append(args, spec.Command...)
}

// smolvmProcessEnv is the environment of the smolvm process on the host:
// where its state lives and its own SMOLVM_* settings, and nothing that
// holds a credential (no token variable, no proxy variable: the pull goes
// through --proxy).
func smolvmProcessEnv(spec *Spec) []string {
	tokenVars := map[string]bool{}
	for _, v := range spec.Plan.Egress.TokenEnvMap {
		tokenVars[v] = true
	}
	env := map[string]string{}
	for _, k := range smolvmHostEnv {
		if v, ok := spec.HostEnv[k]; ok {
			env[k] = v
		}
	}
	for k, v := range spec.HostEnv {
		if strings.HasPrefix(k, "SMOLVM_") {
			env[k] = v
		}
	}
	for k := range tokenVars {
		delete(env, k)
	}
	return envList(env)
}

// lookBinary finds the smolvm executable (lookExecutable).
func (s *Smolvm) lookBinary(hostEnv map[string]string) (string, error) {
	name := s.Binary
	if name == "" {
		name = DefaultSmolvmBinary
	}
	p, err := lookExecutable(name, hostEnv)
	switch {
	case err == nil:
		return p, nil
	case strings.Contains(name, "/"):
		return "", fmt.Errorf("smolvm binary %v", err)
	}
	return "", fmt.Errorf("smolvm: %v; install smolvm (https://github.com/smol-machines/smolvm) or pick another --backend", err)
}

// lookExecutable finds an executable: name as a path when it has a
// slash, else in the PATH of hostEnv (cork reads the environment once, in
// cmd). Errors read "PATH: reason" or "\"name\" not found in PATH".
func lookExecutable(name string, hostEnv map[string]string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(hostEnv["PATH"]) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			if !filepath.IsAbs(p) {
				if abs, err := filepath.Abs(p); err == nil {
					p = abs
				}
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH", name)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// proxyAddrs returns where the proxy listens and the IP the VM dials.
func (s *Smolvm) proxyAddrs() (listen netip.AddrPort, guest netip.Addr, err error) {
	if s.ProxyListen == "" {
		ip, err := primaryIPv4()
		if err != nil {
			return listen, guest, err
		}
		return netip.AddrPortFrom(ip, 0), ip, nil
	}
	listen, err = netip.ParseAddrPort(s.ProxyListen)
	if err != nil {
		return listen, guest, fmt.Errorf("smolvm proxy listen address %q: want IP:port: %w", s.ProxyListen, err)
	}
	ip := listen.Addr().Unmap()
	switch {
	case ip.IsLoopback():
		return listen, guest, fmt.Errorf("smolvm proxy listen address %s: loopback is unreachable from the VM (inside it, loopback is the VM); use a host address such as the primary one", s.ProxyListen)
	case ip.IsUnspecified():
		if guest, err = primaryIPv4(); err != nil {
			return listen, guest, err
		}
		return listen, guest, nil
	}
	return listen, ip, nil
}

// primaryIPv4 returns the source address of the host's default route.
// Connecting a UDP socket only consults the routing table: no packet is
// sent. 192.0.2.1 (TEST-NET-1, RFC 5737) is never a real peer.
func primaryIPv4() (netip.Addr, error) {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("smolvm: find the host address the VM can reach: %w (no IPv4 route; set the proxy listen address)", err)
	}
	defer c.Close()
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	ip := ap.Addr().Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("smolvm: the host's primary address %s is unreachable from the VM; set the proxy listen address", ip)
	}
	return ip, nil
}
