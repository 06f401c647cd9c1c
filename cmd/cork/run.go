package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const runSynopsis = `[--backend docker|kubernetes|smolvm|qemu|local] [--agent NAME]... [--inject HOST=VAR[,OPTION]...]...
                [--policy FILE] [--image IMAGE] [--workspace DIR] [--allow HOST]... [--env K=V]...
                [--sidecar-image IMAGE] [--kubeconfig FILE] [--context NAME] [--namespace-prefix P] [--workspace-volume FILE]
                [--no-isolate] [--hide PATH]... [--read-only PATH]... [--read-write PATH]... [--hide-home] [--no-landlock]
                [--github-host HOST] [--github-read-only | --push-branch PATTERN...]
                [--ask [--ask-fd N | --ask-url URL] [--ask-timeout D]]
                [--no-forward-host-credentials] [--learn [--learn-out FILE]] [--quiet] -- COMMAND [ARG...]`

// runFlags are `cork run`'s own flags (the proxy's settings are
// registered apart, by package settings).
type runFlags struct {
	backend, policyFile, image, workspace *string
	kernel, initrd, accel                 *string
	sidecarImage, kubeconfig, kubeContext *string
	nsPrefix, workspaceVolume             *string
	agents, allows, envs, injects         listFlag
	hides, readOnly, readWrite            listFlag
	noForward, noIsolate, hideHome        *bool
	noLandlock, isolateNet, quiet         *bool
	github                                *gitHubFlags
	learn                                 *learnFlags
}

func newRunFlags(fs *flag.FlagSet) *runFlags {
	f := &runFlags{}
	f.backend = fs.String("backend", "local", "where the sandbox runs: "+strings.Join(slices.Sorted(maps.Keys(launch.Backends())), ", "))
	fs.Var(&f.agents, "agent", "agent profile to provision (repeatable): "+strings.Join(provision.Names(), ", "))
	fs.Var(&f.injects, "inject", "bind the credential in host variable VAR to HOST (repeatable): the sandbox gets a placeholder in VAR;\n"+
		"HOST=VAR[,header=NAME][,scheme=bearer|token|basic|raw][,basic_user=USER][,add_if_missing],\n"+
		"e.g. api.example.com=EXAMPLE_TOKEN or api.example.com=EXAMPLE_KEY,header=X-Api-Key")
	f.policyFile = fs.String("policy", "", "YAML file of extra routes (each naming its credential's host variable with env: VAR), allow and block entries")
	f.image = fs.String("image", "", "sandbox image (docker, smolvm; qemu: an ext4 image or a directory, the guest's root)")
	f.kernel = fs.String("kernel", "", "qemu backend: the guest kernel (an uncompressed vmlinux boots fastest)")
	f.initrd = fs.String("initrd", "", "qemu backend: the initramfs `cork-guest initrd` wrote (docs/QEMU.md)")
	f.accel = fs.String("accel", "", "qemu backend: kvm, tcg or auto (default: KVM where it can run the guest, else TCG)")
	f.workspace = fs.String("workspace", "", "host directory made available to the sandbox (default: none)")
	f.sidecarImage = fs.String("sidecar-image", "", "docker and kubernetes backends: the cork proxy image (default: $CORK_SIDECAR_IMAGE, else "+launch.DefaultSidecarImage+")")
	f.kubeconfig = fs.String("kubeconfig", "", "kubernetes backend: the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	f.kubeContext = fs.String("context", "", "kubernetes backend: the kubeconfig context (default: its current one)")
	f.nsPrefix = fs.String("namespace-prefix", "", "kubernetes backend: the start of each session's namespace name (default "+launch.DefaultNamespacePrefix+")")
	f.workspaceVolume = fs.String("workspace-volume", "", "kubernetes backend: YAML file of a volume (a core/v1 VolumeSource) mounted at "+launch.SandboxWorkspace+", e.g. a csi or ephemeral volume")
	fs.Var(&f.allows, "allow", "extra host to tunnel without credentials (repeatable), e.g. registry.npmjs.org")
	fs.Var(&f.envs, "env", "extra sandbox variable K=V (repeatable); never a real credential")
	f.noForward = fs.Bool("no-forward-host-credentials", false, "read no host credential file; tokens come only from the host variables each slot names")
	f.noIsolate = fs.Bool("no-isolate", false, "local backend: run the command UNCONFINED, able to read every file you can (the default sandbox is\n"+
		"Linux namespaces with the host's credential locations hidden; see docs/SECURITY.md)")
	fs.Var(&f.hides, "hide", "local backend: a host path the sandbox does not see at all (repeatable)")
	fs.Var(&f.readOnly, "read-only", "local backend: a host path the sandbox sees read-only, even if hidden by default (repeatable)")
	fs.Var(&f.readWrite, "read-write", "local backend: a host path the sandbox may write, besides the workspace (repeatable)")
	f.hideHome = fs.Bool("hide-home", false, "local backend: hide your whole home directory, but for the workspace and the directories on PATH")
	f.noLandlock = fs.Bool("no-landlock", false, "local backend: leave Landlock out of the sandbox, for a kernel where it misbehaves\n"+
		"(the namespaces, the read-only view and seccomp still confine)")
	// --isolate-net was the opt-in to a network namespace; the sandbox
	// has one by default now. Accepted, and said so.
	f.isolateNet = fs.Bool("isolate-net", false, "deprecated: the local sandbox always has its own network namespace now")
	f.quiet = fs.Bool("quiet", false, "no progress lines on stderr")
	f.github = newGitHubFlags(fs)
	f.learn = newLearnFlags(fs)
	return f
}

// checkLocal refuses the local backend's flags elsewhere, and the
// sandbox's adjustments without the sandbox.
func (f *runFlags) checkLocal(backend string) error {
	if backend != "local" {
		for name, set := range map[string]bool{"--no-isolate": *f.noIsolate, "--hide": len(f.hides) > 0, "--read-only": len(f.readOnly) > 0, "--read-write": len(f.readWrite) > 0, "--hide-home": *f.hideHome, "--no-landlock": *f.noLandlock} {
			if set {
				return usageErrorf("%s: only for --backend local", name)
			}
		}
	}
	if *f.noIsolate && (len(f.hides) > 0 || len(f.readOnly) > 0 || len(f.readWrite) > 0 || *f.hideHome || *f.noLandlock) {
		return usageErrorf("--no-isolate: --hide, --read-only, --read-write, --hide-home and --no-landlock need the sandbox")
	}
	return nil
}

// configure sets the microVM backends' own settings, and refuses them
// for the others.
func (f *runFlags) configure(backend launch.Backend, environ map[string]string) error {
	if qv, ok := backend.(*launch.Qemu); ok {
		qv.Kernel, qv.Initrd, qv.Accel = *f.kernel, *f.initrd, *f.accel
	} else if *f.kernel != "" || *f.initrd != "" || *f.accel != "" {
		return usageErrorf("--kernel, --initrd and --accel: only for --backend qemu")
	}
	if err := f.configureKube(backend); err != nil {
		return err
	}
	if dv, ok := backend.(*launch.Docker); ok {
		dv.SidecarImage = *f.sidecarImage
	}
	if sv, ok := backend.(*launch.Smolvm); ok {
		// Where the VM reaches the proxy: default the host's primary IPv4.
		sv.ProxyListen = strings.TrimSpace(environ["CORK_SMOLVM_PROXY_LISTEN"])
	}
	return nil
}

// configureKube sets the kubernetes backend's settings, and refuses them
// for the others.
func (f *runFlags) configureKube(backend launch.Backend) error {
	kv, ok := backend.(*launch.Kubernetes)
	if !ok {
		if *f.kubeconfig != "" || *f.kubeContext != "" || *f.nsPrefix != "" || *f.workspaceVolume != "" {
			return usageErrorf("--kubeconfig, --context, --namespace-prefix and --workspace-volume: only for --backend kubernetes")
		}
		if *f.sidecarImage != "" && backend.Name() != "docker" {
			return usageErrorf("--sidecar-image: only for --backend docker or kubernetes")
		}
		return nil
	}
	kv.Kubeconfig, kv.Context, kv.SidecarImage = *f.kubeconfig, *f.kubeContext, *f.sidecarImage
	if p := *f.nsPrefix; p != "" {
		if err := launch.CheckNamespacePrefix(strings.TrimSuffix(p, "-")); err != nil {
			return &usageError{err}
		}
		kv.NamespacePrefix = p
	}
	if *f.workspaceVolume != "" {
		vs, err := launch.ReadVolumeSource(*f.workspaceVolume)
		if err != nil {
			return usageErrorf("--workspace-volume: %v", err)
		}
		kv.Workspace = vs
	}
	return nil
}

// profiles are the --agent profiles, then the generic one of --inject
// and --policy.
func (f *runFlags) profiles() ([]provision.Profile, error) {
	generic, err := genericProfile(f.injects, *f.policyFile)
	if err != nil {
		return nil, err
	}
	gitHub, err := f.github.profile(f.agents)
	if err != nil {
		return nil, err
	}
	if len(f.agents) == 0 && generic == nil {
		return nil, usageErrorf("--agent: give at least one of %s, or --inject / --policy", strings.Join(provision.Names(), ", "))
	}
	var profiles []provision.Profile
	for _, a := range f.agents {
		if a == (provision.Generic{}).Name() {
			return nil, usageErrorf("--agent generic: give its bindings with --inject HOST=VAR or --policy FILE instead")
		}
		p, err := provision.Lookup(a)
		if err != nil {
			return nil, usageErrorf("--agent: %v", err)
		}
		if a == gitHub.Name() {
			p = gitHub
		}
		profiles = append(profiles, p)
	}
	if generic != nil {
		profiles = append(profiles, *generic)
	}
	return profiles, nil
}

// extraEnv is --env as a map.
func (f *runFlags) extraEnv() (map[string]string, error) {
	env := map[string]string{}
	for _, kv := range f.envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--env %q: want K=V", kv)
		}
		env[k] = v
	}
	return env, nil
}

// absWorkspace makes --workspace absolute and checks it is a readable
// directory.
func (f *runFlags) absWorkspace() error {
	if *f.workspace == "" {
		return nil
	}
	abs, err := filepath.Abs(*f.workspace)
	if err != nil {
		return usageErrorf("--workspace: %v", err)
	}
	if err := launch.CheckDir(abs); err != nil {
		return usageErrorf("--workspace: %v", err)
	}
	*f.workspace = abs
	return nil
}

func (f *runFlags) localOptions() launch.LocalOptions {
	return launch.LocalOptions{
		NoIsolate:  *f.noIsolate,
		Hide:       f.hides,
		ReadOnly:   f.readOnly,
		ReadWrite:  f.readWrite,
		HideHome:   *f.hideHome,
		NoLandlock: *f.noLandlock,
	}
}

// runRun is `cork run`: parse, check, provision, resolve once, run the
// backend. Each step is a function of its own; this is their order.
func runRun(ctx context.Context, args []string, environ map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	in, err := loadSettings(environ)
	if err != nil {
		return err
	}
	fs := newFlagSet("run", runSynopsis, stderr)
	f := newRunFlags(fs)
	af := newAskFlags(fs)
	// cork run builds its own policy, hands tokens over in-process or by
	// stdin, picks its listener and makes a session client credential.
	in.RegisterFlags(fs, settings.ForRun)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	in.FlagsParsed(fs)
	command := fs.Args()
	if len(command) == 0 {
		return usageErrorf("run: no command: give it after --, e.g. cork run --agent codex -- codex")
	}

	backend, err := launch.Lookup(*f.backend)
	if err != nil {
		return usageErrorf("--backend: %v", err)
	}
	if err := f.checkLocal(backend.Name()); err != nil {
		return err
	}
	if *f.isolateNet {
		fmt.Fprintln(stderr, "cork: --isolate-net is the default now (the local sandbox has its own network namespace); the flag will go")
	}
	if err := f.configure(backend, environ); err != nil {
		return err
	}
	lrn, err := f.learn.start(backend.Name(), *f.policyFile, command, time.Now())
	if err != nil {
		return err
	}
	ak, err := newAsker(af, backend.Name(), *f.policyFile, stderr)
	if err != nil {
		return err
	}
	profiles, err := f.profiles()
	if err != nil {
		return err
	}
	extraEnv, err := f.extraEnv()
	if err != nil {
		return err
	}
	if err := f.absWorkspace(); err != nil {
		return err
	}
	opts, err := parseSettings(in, settings.ForRun)
	if err != nil {
		return err
	}

	progress := func(msg string) { fmt.Fprintf(stderr, "cork: %s\n", msg) }
	if *f.quiet {
		progress = nil
	}
	plan, tokens, err := f.plan(environ, profiles)
	if err != nil {
		return err
	}
	log := opts.Logger(stderr)
	spec := &launch.Spec{
		Plan:      plan,
		Tokens:    tokens,
		HostEnv:   environ,
		Command:   command,
		Workspace: *f.workspace,
		Image:     *f.image,
		Env:       extraEnv,
		Local:     f.localOptions(),
		Proxy:     launch.ProxyOptions{Logger: &log, Settings: *opts},
		Stdin:     stdin,
		Stdout:    stdout,
		Stderr:    stderr,
		Progress:  progress,
	}
	if ak != nil {
		defer ak.Close()
		spec.Proxy.Unlisted = ak.Unlisted
	}
	if err := lrn.attach(spec, plan, opts, stderr); err != nil {
		return err
	}
	code, err := backend.Run(ctx, spec)
	if lerr := lrn.finish(err, plan, stderr); lerr != nil {
		fmt.Fprintf(stderr, "cork: %v\n", lerr)
		code = max(code, 1)
	}
	if te, ok := err.(*launch.TeardownError); ok {
		// The command's status stands; a clean exit becomes 1, for what
		// is left behind.
		printLines(stderr, te)
		return &exitError{code: max(code, 1)}
	}
	if err != nil {
		var se *launch.SetupError
		if errors.As(err, &se) {
			return &usageError{err}
		}
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// plan provisions the run and resolves its tokens: the run's one
// resolution, whose tokens the backend gets (a refresh of the host's
// credential files resolves the same way).
func (f *runFlags) plan(environ map[string]string, profiles []provision.Profile) (provision.Plan, resolve.Tokens, error) {
	plan, err := f.provision(environ, profiles)
	if err != nil {
		return plan, nil, err
	}
	tokens, err := launch.Tokens(plan, environ)
	if err != nil {
		// With forwarding, a profile that can read a host login has
		// already said what it tried (provision.Build); what is left
		// are variables only the environment can give.
		hint := "set them in the environment"
		if *f.noForward {
			hint += " or drop --no-forward-host-credentials, to let profiles read the host's logins"
		}
		return plan, nil, &usageError{fmt.Errorf("%v; %s", err, hint)}
	}
	return plan, tokens, nil
}

// provision builds the run's plan from the profiles and --allow.
func (f *runFlags) provision(environ map[string]string, profiles []provision.Profile) (provision.Plan, error) {
	home, _ := os.UserHomeDir()
	if h := environ["HOME"]; h != "" {
		home = h
	}
	plan, err := provision.Build(provision.Options{
		HostHome:               home,
		HostEnv:                environ,
		ForwardHostCredentials: !*f.noForward,
	}, profiles...)
	if err != nil {
		return plan, &usageError{err}
	}
	plan.Egress.Allow = append(plan.Egress.Allow, policy.AllowHosts(f.allows...)...)
	return plan, nil
}

// genericProfile builds the generic profile from the --inject specs and
// the --policy file, or returns nil when neither is given. Errors name the
// flag and the spec or the file.
func genericProfile(injects []string, policyFile string) (*provision.Generic, error) {
	if len(injects) == 0 && policyFile == "" {
		return nil, nil
	}
	var g provision.Generic
	for _, spec := range injects {
		b, err := provision.ParseBinding(spec)
		if err != nil {
			return nil, usageErrorf("--inject %v", err)
		}
		g.Bindings = append(g.Bindings, b)
	}
	if policyFile != "" {
		data, err := os.ReadFile(policyFile)
		if err != nil {
			return nil, usageErrorf("--policy: %v", pathError(err))
		}
		pg, err := provision.ParseGenericPolicy(data)
		if err != nil {
			return nil, &usageError{policy.PrefixErrors("--policy "+policyFile, err)}
		}
		g.Bindings = append(g.Bindings, pg.Bindings...)
		g.Allow = append(g.Allow, pg.Allow...)
		g.Block = append(g.Block, pg.Block...)
	}
	return &g, nil
}
