package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/settings"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const runSynopsis = `[--backend docker|smolvm|local] [--agent NAME]... [--inject HOST=VAR[,OPTION]...]...
                [--policy FILE] [--image IMAGE] [--workspace DIR] [--allow HOST]... [--env K=V]...
                [--no-isolate] [--hide PATH]... [--read-only PATH]... [--read-write PATH]... [--hide-home] [--no-landlock]
                [--no-forward-host-credentials] [--quiet] -- COMMAND [ARG...]`

func runRun(ctx context.Context, args []string, environ map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	in, err := loadSettings(environ)
	if err != nil {
		return err
	}
	fs := newFlagSet("run", runSynopsis, stderr)
	backendName := fs.String("backend", "local", "where the sandbox runs: "+strings.Join(slices.Sorted(maps.Keys(launch.Backends())), ", "))
	var agents, allows, envs, injects listFlag
	fs.Var(&agents, "agent", "agent profile to provision (repeatable): "+strings.Join(provision.Names(), ", "))
	fs.Var(&injects, "inject", "bind the credential in host variable VAR to HOST (repeatable): the sandbox gets a placeholder in VAR;\n"+
		"HOST=VAR[,header=NAME][,scheme=bearer|token|basic|raw][,basic_user=USER][,add_if_missing],\n"+
		"e.g. api.example.com=EXAMPLE_TOKEN or api.example.com=EXAMPLE_KEY,header=X-Api-Key")
	policyFile := fs.String("policy", "", "YAML file of extra routes (each naming its credential's host variable with env: VAR), allow and block entries")
	image := fs.String("image", "", "sandbox image (docker, smolvm)")
	workspace := fs.String("workspace", "", "host directory made available to the sandbox (default: none)")
	fs.Var(&allows, "allow", "extra host to tunnel without credentials (repeatable), e.g. registry.npmjs.org")
	fs.Var(&envs, "env", "extra sandbox variable K=V (repeatable); never a real credential")
	noForward := fs.Bool("no-forward-host-credentials", false, "read no host credential file; tokens come only from the host variables each slot names")
	var hides, readOnly, readWrite listFlag
	noIsolate := fs.Bool("no-isolate", false, "local backend: run the command UNCONFINED, able to read every file you can (the default sandbox is\n"+
		"Linux namespaces with the host's credential locations hidden; see docs/SECURITY.md)")
	fs.Var(&hides, "hide", "local backend: a host path the sandbox does not see at all (repeatable)")
	fs.Var(&readOnly, "read-only", "local backend: a host path the sandbox sees read-only, even if hidden by default (repeatable)")
	fs.Var(&readWrite, "read-write", "local backend: a host path the sandbox may write, besides the workspace (repeatable)")
	hideHome := fs.Bool("hide-home", false, "local backend: hide your whole home directory, but for the workspace and the directories on PATH")
	noLandlock := fs.Bool("no-landlock", false, "local backend: leave Landlock out of the sandbox, for a kernel where it misbehaves\n"+
		"(the namespaces, the read-only view and seccomp still confine)")
	// --isolate-net was the opt-in to a network namespace; the sandbox
	// has one by default now. Accepted, and said so.
	isolateNet := fs.Bool("isolate-net", false, "deprecated: the local sandbox always has its own network namespace now")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
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

	backend, err := launch.Lookup(*backendName)
	if err != nil {
		return usageErrorf("--backend: %v", err)
	}
	if backend.Name() != "local" {
		for name, set := range map[string]bool{"--no-isolate": *noIsolate, "--hide": len(hides) > 0, "--read-only": len(readOnly) > 0, "--read-write": len(readWrite) > 0, "--hide-home": *hideHome, "--no-landlock": *noLandlock} {
			if set {
				return usageErrorf("%s: only for --backend local", name)
			}
		}
	}
	if *noIsolate && (len(hides) > 0 || len(readOnly) > 0 || len(readWrite) > 0 || *hideHome || *noLandlock) {
		return usageErrorf("--no-isolate: --hide, --read-only, --read-write, --hide-home and --no-landlock need the sandbox")
	}
	if *isolateNet {
		fmt.Fprintln(stderr, "cork: --isolate-net is the default now (the local sandbox has its own network namespace); the flag will go")
	}
	if sv, ok := backend.(*launch.Smolvm); ok {
		// Where the VM reaches the proxy: default the host's primary IPv4.
		sv.ProxyListen = strings.TrimSpace(environ["CORK_SMOLVM_PROXY_LISTEN"])
	}
	generic, err := genericProfile(injects, *policyFile)
	if err != nil {
		return err
	}
	if len(agents) == 0 && generic == nil {
		return usageErrorf("--agent: give at least one of %s, or --inject / --policy", strings.Join(provision.Names(), ", "))
	}
	var profiles []provision.Profile
	for _, a := range agents {
		if a == (provision.Generic{}).Name() {
			return usageErrorf("--agent generic: give its bindings with --inject HOST=VAR or --policy FILE instead")
		}
		p, err := provision.Lookup(a)
		if err != nil {
			return usageErrorf("--agent: %v", err)
		}
		profiles = append(profiles, p)
	}
	if generic != nil {
		profiles = append(profiles, *generic)
	}
	extraEnv := map[string]string{}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageErrorf("--env %q: want K=V", kv)
		}
		extraEnv[k] = v
	}
	if *workspace != "" {
		abs, err := filepath.Abs(*workspace)
		if err != nil {
			return usageErrorf("--workspace: %v", err)
		}
		if err := checkDir(abs); err != nil {
			return usageErrorf("--workspace: %v", err)
		}
		*workspace = abs
	}
	opts, err := parseSettings(in, settings.ForRun)
	if err != nil {
		return err
	}

	progress := func(msg string) { fmt.Fprintf(stderr, "cork: %s\n", msg) }
	if *quiet {
		progress = nil
	}
	home, _ := os.UserHomeDir()
	if h := environ["HOME"]; h != "" {
		home = h
	}
	plan, err := provision.Build(provision.Options{
		HostHome:               home,
		HostEnv:                environ,
		ForwardHostCredentials: !*noForward,
	}, profiles...)
	if err != nil {
		return &usageError{err}
	}
	for _, h := range allows {
		plan.Egress.Allow = append(plan.Egress.Allow, h)
	}
	// The run's one resolution: the backend gets these tokens, and a
	// refresh of the host's credential files resolves the same way.
	tokens, err := launch.Tokens(plan, environ)
	if err != nil {
		return &usageError{fmt.Errorf("%v; set them in the environment or drop --no-forward-host-credentials", err)}
	}
	log := opts.Logger(stderr)
	spec := &launch.Spec{
		Plan:      plan,
		Tokens:    tokens,
		HostEnv:   environ,
		Command:   command,
		Workspace: *workspace,
		Image:     *image,
		Env:       extraEnv,
		Local: launch.LocalOptions{
			NoIsolate:  *noIsolate,
			Hide:       hides,
			ReadOnly:   readOnly,
			ReadWrite:  readWrite,
			HideHome:   *hideHome,
			NoLandlock: *noLandlock,
		},
		Proxy:    launch.ProxyOptions{Logger: &log, Settings: *opts},
		Stdin:    stdin,
		Stdout:   stdout,
		Stderr:   stderr,
		Progress: progress,
	}
	code, err := backend.Run(ctx, spec)
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
