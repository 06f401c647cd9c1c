package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/settings"
)

// Defaults of the docker backend.
const (
	// DefaultSidecarImage is the cork proxy image, as `make image` tags it.
	DefaultSidecarImage = "cork:dev"
	// DefaultSidecarReadyTimeout bounds how long the sidecar may take to
	// listen and apply its first token map.
	DefaultSidecarReadyTimeout = 30 * time.Second
	// DockerTeardownTimeout bounds the removal of a session's containers,
	// networks and volume.
	DockerTeardownTimeout = 60 * time.Second
	// ProxyPort is where the sidecar's proxy listens.
	ProxyPort = 3128
	// SandboxHome is HOME inside the agent container: a bind mount of a
	// host directory holding only the plan's dummy files.
	SandboxHome = "/home/sandbox"
	// SandboxWorkspace is where Spec.Workspace is mounted, and the
	// working directory when there is one.
	SandboxWorkspace = "/workspace"
)

// Labels on everything the docker backend creates. LabelSession finds all
// of a session's objects at teardown; the owner labels (LabelPID and the
// others, docker_gc.go) tell DockerGC which sessions' cork is gone.
const (
	Label        = "cork"
	LabelSession = "cork.session"
	LabelRole    = "cork.role"
)

// Docker runs the sandbox as a container whose only network is an
// internal one, next to a `cork proxy` sidecar that also sits on an egress
// network. The real tokens reach the sidecar on its stdin, never through
// argv, an environment variable, a label or a file. It drives the docker
// client, so DOCKER_HOST, DOCKER_CONTEXT and the rest of the host's docker
// configuration apply; bind mounts need the engine to share cork's
// filesystem (a local engine).
//
// The zero value is ready to use. A Docker is safe for concurrent Runs.
type Docker struct {
	// CLI is the docker client to run; empty means "docker" from PATH.
	CLI string
	// SidecarImage is the cork proxy image. Empty means the host's
	// CORK_SIDECAR_IMAGE (Spec.HostEnv), else DefaultSidecarImage.
	SidecarImage string
	// Networks are existing networks the sidecar joins besides the egress
	// network it gets (for upstreams that live on a docker network). cork
	// neither creates nor removes them.
	Networks []string
	// ReadyTimeout bounds sidecar startup; zero means
	// DefaultSidecarReadyTimeout.
	ReadyTimeout time.Duration
	// ProbeTimeout bounds the preflight probe of the proxy from the
	// sandbox network; zero means DefaultProbeTimeout.
	ProbeTimeout time.Duration
}

var _ Backend = (*Docker)(nil)

// Name implements Backend.
func (*Docker) Name() string { return "docker" }

// Run implements Backend. Errors found before anything is created are
// *SetupError.
func (d *Docker) Run(ctx context.Context, spec *Spec) (int, error) {
	return runSession(ctx, spec, &dockerSandbox{cfg: d, id: newSessionID(), owner: selfOwner()})
}

// dockerSandbox is one run of the docker backend: its objects are all
// named cork-<id>-* and labelled cork.session=<id>.
type dockerSandbox struct {
	cfg   *Docker
	id    string
	owner owner // this cork, in the owner labels

	// Established by preflight, before anything is created.
	cli          *dockerCLI
	sidecarImage string
	sidecarUser  [2]int // uid, gid of the sidecar image's user
	workspace    string // absolute, or empty
	policy       []byte
	sidecar      *settings.Sidecar

	// What the session created.
	janitor   io.WriteCloser // nil: none
	dir       string         // host: sandbox home and sidecar files
	auth      string         // the session's proxy client credential (user:password)
	side      *sidecar
	proxyAddr string // ip:port of the proxy on the sandbox network
	internal  string // the sandbox network
	volume    string // the CA volume
}

func (*dockerSandbox) layout() layout { return layout{home: SandboxHome} }

// preflight checks everything it can before anything is created, then
// removes what sessions whose cork died left behind.
func (s *dockerSandbox) preflight(ctx context.Context, ss *session) error {
	if err := s.check(ctx, ss.spec); err != nil {
		return err
	}
	// Sessions whose cork was killed before it could tear down: remove
	// them now rather than let them pile up. A failure only warns.
	gctx, cancel := context.WithTimeout(ctx, DockerTeardownTimeout)
	left, gerr := dockerGC(gctx, s.cli, s.owner, false, s.id)
	cancel()
	if len(left) > 0 {
		ss.spec.progress("docker: removed what ended sessions left behind: %s", summarizeLeftovers(left))
	}
	if gerr != nil {
		ss.spec.progress("docker: could not remove everything ended sessions left behind (see `cork gc --dry-run`): %s", firstLine(gerr.Error()))
	}
	return nil
}

// check is preflight's checks.
func (s *dockerSandbox) check(ctx context.Context, spec *Spec) error {
	d := s.cfg
	if spec.Image == "" {
		return setupErrorf("--image: the docker backend needs an image for the sandbox")
	}
	pre := s
	pre.sidecarImage = sidecarImageFor(d.SidecarImage, spec)
	if spec.Workspace != "" {
		abs, err := filepath.Abs(spec.Workspace)
		if err == nil {
			err = CheckDir(abs)
		}
		if err != nil {
			return setupErrorf("workspace: %w", err)
		}
		pre.workspace = abs
	}
	for _, f := range spec.Plan.Files {
		if _, err := sandboxPath(SandboxHome, f.Path); err != nil {
			return &SetupError{err}
		}
	}
	// The sidecar reads the policy from a file; compiling it here refuses
	// a bad one before anything is created.
	var err error
	pol, err := spec.Plan.Egress.Policy()
	if err != nil {
		return setupErrorf("policy from the plan: %w", err)
	}
	if pre.policy, err = policy.Marshal(*pol); err != nil {
		return &SetupError{err}
	}
	if pre.sidecar, err = sidecarSettings(&spec.Proxy.Settings); err != nil {
		return &SetupError{err}
	}

	if pre.cli, err = newDockerCLI(d.CLI, spec.HostEnv); err != nil {
		return &SetupError{err}
	}
	vctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := pre.cli.output(vctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		var de *dockerError
		reason := err.Error()
		if errors.As(err, &de) && de.msg != "" {
			reason = de.msg
		}
		return setupErrorf("docker: no reachable Docker engine (%s): start dockerd or set DOCKER_HOST", reason)
	}
	user, err := pre.cli.output(vctx, "image", "inspect", "--format", "{{.Config.User}}", pre.sidecarImage)
	if err != nil {
		if notFound(err) {
			return setupErrorf("docker: sidecar image %q not found: build it with `make image` in the cork repository (or set CORK_SIDECAR_IMAGE)", pre.sidecarImage)
		}
		return setupErrorf("docker: sidecar image %q: %w", pre.sidecarImage, err)
	}
	pre.sidecarUser = numericUser(user)
	if _, err := pre.cli.output(vctx, "image", "inspect", "--format", "{{.Id}}", spec.Image); err != nil {
		if notFound(err) {
			return setupErrorf("--image %q: not found in the Docker engine: build or pull it first (cork does not pull)", spec.Image)
		}
		return setupErrorf("--image %q: %w", spec.Image, err)
	}
	return nil
}

// numericUser parses an image's "uid[:gid]" user; a name or nothing is
// root's ids, which only matters for who owns the CA volume.
func numericUser(u string) [2]int {
	uid, gid, _ := strings.Cut(strings.TrimSpace(u), ":")
	var ids [2]int
	if n, err := strconv.Atoi(uid); err == nil && n >= 0 {
		ids[0], ids[1] = n, n
	}
	if n, err := strconv.Atoi(gid); err == nil && n >= 0 {
		ids[1] = n
	}
	return ids
}

func newSessionID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *dockerSandbox) name(what string) string { return "cork-" + s.id + "-" + what }

func (s *dockerSandbox) labels(role string) []string {
	l := []string{"--label", Label + "=1", "--label", LabelSession + "=" + s.id}
	l = append(l, s.owner.labels()...)
	if role != "" {
		l = append(l, "--label", LabelRole+"="+role)
	}
	return l
}

// makeHome creates the session's directory, with its janitor (from here
// on, a cork that dies before teardown leaves the session to it), and
// the sandbox home in it.
func (s *dockerSandbox) makeHome(ss *session) (string, error) {
	ss.spec.progress("docker: creating session %s: networks, CA volume, sandbox home", s.id)
	var err error
	if s.dir, err = os.MkdirTemp("", "cork-docker-"+s.id+"-"); err != nil {
		return "", fmt.Errorf("session directory: %w", err)
	}
	pid, w, err := startJanitor(s.cli, s.id, s.dir)
	if err != nil {
		return "", err
	}
	if w != nil {
		s.janitor = w
		ss.spec.progress("docker: session %s: janitor pid %d removes it if cork dies without tearing down", s.id, pid)
	}
	home := filepath.Join(s.dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return "", fmt.Errorf("sandbox home: %w", err)
	}
	return home, nil
}

// startProxy creates the session's networks and CA volume and starts
// the sidecar on them; the sandbox reaches it by address on the internal
// network, and trusts the CA it wrote into the volume.
func (s *dockerSandbox) startProxy(ctx context.Context, ss *session) (*sessionProxy, error) {
	// The sidecar runs as its image's user: its files must be readable by
	// anyone. They hold the policy (placeholders only) and a public CA.
	sideDir := filepath.Join(s.dir, "sidecar")
	if err := os.Mkdir(sideDir, 0o755); err != nil {
		return nil, fmt.Errorf("sidecar files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(sideDir, "policy.yaml"), s.policy, 0o644); err != nil {
		return nil, fmt.Errorf("sidecar policy: %w", err)
	}
	if s.sidecar.UpstreamCA != nil {
		if err := os.WriteFile(filepath.Join(sideDir, "upstream-ca.pem"), s.sidecar.UpstreamCA, 0o644); err != nil {
			return nil, fmt.Errorf("sidecar upstream CA: %w", err)
		}
	}

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s.internal, s.volume = s.name("internal"), s.name("ca")
	egress := s.name("egress")
	// The sandbox network is internal (no route out) and its bridge has no
	// host address, so the sandbox cannot reach services on the host
	// either: its only peer is the sidecar.
	if _, err := s.cli.output(cctx, append(append([]string{"network", "create", "--internal",
		"--opt", "com.docker.network.bridge.inhibit_ipv4=true"}, s.labels("")...), s.internal)...); err != nil {
		return nil, err
	}
	if _, err := s.cli.output(cctx, append(append([]string{"network", "create"}, s.labels("")...), egress)...); err != nil {
		return nil, err
	}
	// A small tmpfs owned by the sidecar's user: the CA never touches disk.
	if _, err := s.cli.output(cctx, append(append([]string{"volume", "create",
		"--opt", "type=tmpfs", "--opt", "device=tmpfs",
		"--opt", fmt.Sprintf("o=size=1m,mode=0755,uid=%d,gid=%d", s.sidecarUser[0], s.sidecarUser[1])},
		s.labels("")...), s.volume)...); err != nil {
		return nil, err
	}

	if err := s.startSidecar(ctx, cctx, ss, sideDir, egress); err != nil {
		return nil, err
	}
	// The sandbox reaches the proxy by address: no name to resolve, so
	// the sandbox's resolver can stay dead (docs/DOCKER.md).
	ip, err := s.sidecarIP(cctx, s.internal)
	if err != nil {
		return nil, err
	}
	s.proxyAddr = proxyAddr(ip)
	if err := s.probe(ctx, ss.spec, s.internal, s.proxyAddr); err != nil {
		return nil, err
	}
	ca, err := s.side.fetchCA(cctx, s.cli)
	if err != nil {
		return nil, err
	}
	ss.spec.progress("docker: sidecar %s up; the sandbox reaches it at http://%s", s.side.name, s.proxyAddr)
	return &sessionProxy{url: proxyURL(s.auth, s.proxyAddr), sink: s.side, caPEM: ca, caPath: sidecarCAPath}, nil
}

// run creates the sandbox container and runs the agent in it.
func (s *dockerSandbox) run(ctx context.Context, ss *session, env map[string]string) (int, error) {
	spec := ss.spec
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	agent := s.name("sandbox")
	tty := spec.Stdin != nil && isTerminal(spec.Stdin) && isTerminal(spec.Stdout)
	args, secretEnv := s.agentArgs(spec, env, agent, ss.home, tty)
	if _, err := s.cli.outputEnv(cctx, secretEnv, args...); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	spec.progress("sandbox ready; running %s", path.Base(spec.Command[0]))
	code, err := s.runAgent(ctx, spec, agent)
	if err != nil {
		return code, err
	}
	if s.side.exited() {
		spec.progress("docker: the sidecar stopped while the sandbox ran: %s", firstLine(s.side.lastLines()))
	}
	spec.progress("sandbox exited with status %d; tearing down", code)
	return code, nil
}

// startSidecar creates the proxy container on the egress network, joins
// it to the sandbox network, starts it attached, hands it the tokens and
// waits until it serves. It runs with CORK_EXIT_ON_STDIN_EOF: when its
// token stream ends (teardown, or cork's death) it shuts down.
func (s *dockerSandbox) startSidecar(ctx, cctx context.Context, ss *session, sideDir, egress string) error {
	name := s.name("proxy")
	args := []string{"create", "--interactive", "--name", name}
	args = append(args, s.labels("proxy")...)
	args = append(args,
		"--network", egress,
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--mount", mountArg("volume", s.volume, sidecarCADir, false),
		"--mount", mountArg("bind", sideDir, sidecarConfigDir, true),
	)
	if s.sidecar.Publish != "" {
		args = append(args, "--publish", s.sidecar.Publish)
	}
	for _, kv := range s.sidecar.Env {
		args = append(args, "--env", kv)
	}
	// The sidecar's egress address is reachable from the host: only the
	// agent, which gets the credential in its proxy URL, may use it. Its
	// value reaches docker through the client's environment, not argv.
	s.auth = sessionAuth()
	args = append(args, "--env", settings.ClientAuthVar, s.sidecarImage)
	if _, err := s.cli.outputEnv(cctx, []string{settings.ClientAuthVar + "=" + s.auth}, args...); err != nil {
		return err
	}
	if _, err := s.cli.output(cctx, "network", "connect", s.internal, name); err != nil {
		return err
	}
	for _, n := range s.cfg.Networks {
		if _, err := s.cli.output(cctx, "network", "connect", n, name); err != nil {
			return err
		}
	}
	side, err := startSidecar(s.cli, name, ss.spec.Proxy.Logger)
	if err != nil {
		return err
	}
	s.side = side
	if err := side.sendTokens(ss.tokens); err != nil {
		return fmt.Errorf("docker sidecar %s: %w", name, err)
	}
	timeout := s.cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultSidecarReadyTimeout
	}
	return side.waitReady(ctx, timeout)
}

// agentArgs is the `docker create` of the sandbox container, with env
// (the session's sandboxEnv: the launcher's proxy and CA variables, the
// plan's dummy variables and Spec.Env; never a token). Variables holding
// the session's proxy credential are named in args (`--env NAME`) and
// their values returned in secretEnv, for the docker client's
// environment: argv is visible to every local user.
func (s *dockerSandbox) agentArgs(spec *Spec, env map[string]string, name, home string, tty bool) (args, secretEnv []string) {
	args = []string{"create", "--name", name}
	args = append(args, s.labels("sandbox")...)
	if spec.Stdin != nil {
		args = append(args, "--interactive")
	}
	if tty {
		args = append(args, "--tty")
	}
	if u := sandboxUser(); u != "" {
		args = append(args, "--user", u)
	}
	workdir := SandboxHome
	// --init: a small init as PID 1 forwards signals and reaps the
	// agent's children (agents spawn shells). --dns: the sandbox needs no
	// name (its proxy is an address); the engine's DNS forwards names it
	// does not know to the sandbox's own loopback, where nothing listens,
	// instead of the host's resolvers (engines before 26 forward for
	// internal networks too: a way out by DNS).
	args = append(args,
		"--network", s.internal, "--init", "--dns", "127.0.0.1",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--mount", mountArg("bind", home, SandboxHome, false),
		"--mount", mountArg("volume", s.volume, sidecarCADir, true),
	)
	if s.workspace != "" {
		args = append(args, "--mount", mountArg("bind", s.workspace, SandboxWorkspace, false))
		workdir = SandboxWorkspace
	}
	args = append(args, "--workdir", workdir)
	for _, kv := range envList(env) {
		if k, v, _ := strings.Cut(kv, "="); s.auth != "" && strings.Contains(v, s.auth) {
			args = append(args, "--env", k)
			secretEnv = append(secretEnv, kv)
			continue
		}
		args = append(args, "--env", kv)
	}
	// As with `docker run IMAGE COMMAND`: the image's entrypoint, if
	// any, stays and receives the command.
	args = append(args, spec.Image)
	return append(args, spec.Command...), secretEnv
}

// runAgent starts the sandbox attached to Spec's streams and returns its
// exit status. When ctx ends first, the sandbox gets SIGTERM, then SIGKILL
// after ChildStopGrace.
func (s *dockerSandbox) runAgent(ctx context.Context, spec *Spec, name string) (int, error) {
	args := []string{"start", "--attach"}
	if spec.Stdin != nil {
		args = append(args, "--interactive")
	}
	// Not in a process group of its own: it may read the terminal. Not
	// CommandContext either: cancellation stops the container, below.
	cmd := exec.Command(s.cli.path, append(args, name)...)
	cmd.Env = s.cli.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	// A Stdin that is not a file is copied by a goroutine that may block
	// on a read after the container is gone.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("docker start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		spec.progress("interrupted; stopping the sandbox")
		kctx, cancel := context.WithTimeout(context.Background(), ChildStopGrace+10*time.Second)
		defer cancel()
		s.cli.output(kctx, "kill", "--signal", "TERM", name)
		select {
		case <-done:
		case <-time.After(ChildStopGrace):
			s.cli.output(kctx, "kill", "--signal", "KILL", name)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.cli.output(wctx, "wait", name)
	if err != nil {
		return 0, fmt.Errorf("sandbox exit status: %w", err)
	}
	code, err := strconv.Atoi(out)
	if err != nil {
		return 0, fmt.Errorf("sandbox exit status: docker wait printed %q", out)
	}
	return code, nil
}

// teardown removes every object labelled with the session, with a fresh
// context: it also runs after ctx was cancelled.
func (s *dockerSandbox) teardown(ss *session) error {
	ctx, cancel := context.WithTimeout(context.Background(), DockerTeardownTimeout)
	defer cancel()
	var errs []error
	filter := "label=" + LabelSession + "=" + s.id
	if s.side != nil {
		s.side.closeStdin()
	}
	if ids, err := s.cli.lines(ctx, "ps", "--all", "--quiet", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if len(ids) > 0 {
		if _, err := s.cli.output(ctx, append([]string{"rm", "--force", "--volumes"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if s.side != nil {
		select {
		case <-s.side.done:
		case <-ctx.Done():
		}
	}
	if ids, err := s.cli.lines(ctx, "network", "ls", "--quiet", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if len(ids) > 0 {
		if _, err := s.cli.output(ctx, append([]string{"network", "rm"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ids, err := s.cli.lines(ctx, "volume", "ls", "--quiet", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if len(ids) > 0 {
		if _, err := s.cli.output(ctx, append([]string{"volume", "rm", "--force"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("session directory: %w", err))
		}
	}
	if len(errs) > 0 {
		// The janitor is not told: its stdin closes when cork exits,
		// and it tries once more.
		return fmt.Errorf("docker teardown of session %s (`cork gc` removes leftovers): %w", s.id, errors.Join(errs...))
	}
	if s.janitor != nil {
		io.WriteString(s.janitor, "done\n")
		s.janitor.Close()
	}
	ss.spec.progress("docker: session %s removed", s.id)
	return nil
}
