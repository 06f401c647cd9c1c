package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/provision"
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
	in, err := loadSettings(environ)
	if err != nil {
		return err
	}
	fs := newFlagSet("manifests", manifestsSynopsis, stderr)
	f := newRunFlags(fs)
	namespace := fs.String("namespace", "", "the session's namespace (default: "+launch.DefaultNamespacePrefix+"and a fresh id)")
	in.RegisterFlags(fs, settings.ForRun)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	in.FlagsParsed(fs)
	backendSet := false
	fs.Visit(func(fl *flag.Flag) { backendSet = backendSet || fl.Name == "backend" })
	if backendSet && *f.backend != "kubernetes" {
		return usageErrorf("--backend %s: cork manifests writes kubernetes objects only", *f.backend)
	}
	command := fs.Args()
	if len(command) == 0 {
		return usageErrorf("manifests: no command: give the agent's command after --")
	}
	kube := &launch.Kubernetes{}
	if err := f.checkLocal(kube.Name()); err != nil {
		return err
	}
	if err := f.configure(kube, environ); err != nil {
		return err
	}
	if *f.kubeconfig != "" || *f.kubeContext != "" {
		return usageErrorf("--kubeconfig, --context: cork manifests talks to no cluster")
	}
	if *namespace != "" {
		if err := launch.CheckNamespace(*namespace); err != nil {
			return &usageError{err}
		}
	}
	profiles, err := f.profiles()
	if err != nil {
		return err
	}
	extraEnv, err := f.extraEnv()
	if err != nil {
		return err
	}
	opts, err := parseSettings(in, settings.ForRun)
	if err != nil {
		return err
	}
	home, _ := os.UserHomeDir()
	if h := environ["HOME"]; h != "" {
		home = h
	}
	plan, err := provision.Build(provision.Options{HostHome: home, HostEnv: environ, ForwardHostCredentials: !*f.noForward}, profiles...)
	if err != nil {
		return &usageError{err}
	}
	plan.Egress.Allow = append(plan.Egress.Allow, f.allows...)
	// The tokens are not written anywhere; those the host has are only
	// refused in the command and the variables.
	tokens, _ := launch.Tokens(plan, environ)
	spec := &launch.Spec{
		Plan:    plan,
		HostEnv: environ,
		Command: command,
		Image:   *f.image,
		Env:     extraEnv,
		Proxy:   launch.ProxyOptions{Settings: *opts},
	}
	if *f.workspace != "" {
		spec.Workspace = *f.workspace
	}
	out, err := launch.KubeManifests(spec, kube, *namespace, tokens)
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
