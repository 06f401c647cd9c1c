package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/resolve"
	"github.com/cork-sh/cork/settings"
)

const manifestsSynopsis = `[--namespace NAME] [--agent NAME]... [--inject HOST=VAR[,OPTION]...]... [--policy FILE]
                      --image IMAGE [--allow HOST]... [--env K=V]... [--sidecar-image IMAGE]
                      [--workspace-volume FILE] -- COMMAND [ARG...]
       cork manifests trust --namespace NAME < PROXY-LOG`

// runManifests is `cork manifests`: the objects of a kubernetes session
// as YAML on stdout, with no token in them, for GitOps (docs/KUBERNETES.md,
// "Manifests"); and `cork manifests trust`, the agent's CA ConfigMap made
// from the proxy pod's log.
func runManifests(ctx context.Context, args []string, environ map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "trust" {
		return runManifestsTrust(args[1:], stdin, stdout, stderr)
	}
	m, err := parseManifests(args, environ, stdout, stderr)
	if err != nil {
		return err
	}
	spec, tokens, err := m.spec(environ)
	if err != nil {
		return err
	}
	out, err := launch.KubeManifests(spec, m.kube, m.namespace, tokens)
	if err != nil {
		var se *launch.SetupError
		if errors.As(err, &se) {
			return &usageError{err}
		}
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// manifests is a parsed `cork manifests`.
type manifests struct {
	f         *runFlags
	in        *settings.Input
	kube      *launch.Kubernetes
	namespace string
	command   []string
}

// parseManifests parses `cork manifests`' flags: `cork run`'s, for the
// kubernetes backend, and --namespace.
func parseManifests(args []string, environ map[string]string, stdout, stderr io.Writer) (*manifests, error) {
	in, err := loadSettings(environ)
	if err != nil {
		return nil, err
	}
	fs := newFlagSet("manifests", manifestsSynopsis, stderr)
	m := &manifests{f: newRunFlags(fs), in: in, kube: &launch.Kubernetes{}}
	namespace := fs.String("namespace", "", "the session's namespace (default: "+launch.DefaultNamespacePrefix+"and a fresh id; not default or kube-*)")
	in.RegisterFlags(fs, settings.ForRun)
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, err
	}
	in.FlagsParsed(fs)
	f := m.f
	backendSet := false
	fs.Visit(func(fl *flag.Flag) { backendSet = backendSet || fl.Name == "backend" })
	switch {
	case backendSet && *f.backend != "kubernetes":
		return nil, usageErrorf("--backend %s: cork manifests writes kubernetes objects only", *f.backend)
	case *f.kubeconfig != "" || *f.kubeContext != "":
		return nil, usageErrorf("--kubeconfig, --context: cork manifests talks to no cluster")
	case len(fs.Args()) == 0:
		return nil, usageErrorf("manifests: no command: give the agent's command after --")
	}
	if *namespace != "" {
		if err := launch.CheckNamespace(*namespace); err != nil {
			return nil, &usageError{err}
		}
	}
	if err := f.checkLocal(m.kube.Name()); err != nil {
		return nil, err
	}
	if err := f.configure(m.kube, environ); err != nil {
		return nil, err
	}
	m.namespace, m.command = *namespace, fs.Args()
	return m, nil
}

// spec is the session `cork manifests` describes, and the tokens the
// host has for it: they are not written anywhere, only refused in the
// command and the variables.
func (m *manifests) spec(environ map[string]string) (*launch.Spec, resolve.Tokens, error) {
	profiles, err := m.f.profiles()
	if err != nil {
		return nil, nil, err
	}
	extraEnv, err := m.f.extraEnv()
	if err != nil {
		return nil, nil, err
	}
	opts, err := parseSettings(m.in, settings.ForRun)
	if err != nil {
		return nil, nil, err
	}
	plan, err := m.f.provision(environ, profiles)
	if err != nil {
		return nil, nil, err
	}
	tokens, _ := launch.Tokens(plan, environ)
	return &launch.Spec{
		Plan:      plan,
		HostEnv:   environ,
		Command:   m.command,
		Image:     *m.f.image,
		Workspace: *m.f.workspace,
		Env:       extraEnv,
		Proxy:     launch.ProxyOptions{Settings: *opts},
	}, tokens, nil
}

// runManifestsTrust is `cork manifests trust --namespace NAME`: it reads
// the proxy pod's log on stdin and writes the ConfigMap the agent pod of
// `cork manifests` trusts.
func runManifestsTrust(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("manifests trust", "--namespace NAME < PROXY-LOG", stderr)
	namespace := fs.String("namespace", "", "the session's namespace (required)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("manifests trust: unexpected argument %q", fs.Arg(0))
	}
	if strings.TrimSpace(*namespace) == "" {
		return usageErrorf("--namespace: required: the namespace of the proxy pod")
	}
	out, err := launch.KubeTrust(*namespace, stdin)
	if err != nil {
		return usageErrorf("manifests trust: stdin: %v", err)
	}
	_, err = stdout.Write(out)
	return err
}
