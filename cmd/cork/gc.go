package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cork-sh/cork/launch"
)

// gcTimeout bounds `cork gc`'s work with the engine.
const gcTimeout = 2 * time.Minute

// runGC is `cork gc [--backend docker|kubernetes] [--dry-run]`: it
// removes what sessions whose cork process is gone (killed, crashed, or
// from before a reboot) left behind, as `cork run` does before it starts
// a session: docker's containers, networks and volumes, or kubernetes'
// namespaces. Sessions still running, and other hosts' sessions on a
// shared engine or cluster, are left alone. One line per object on
// stdout.
func runGC(ctx context.Context, args []string, env map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("gc", "[--backend docker|kubernetes] [--kubeconfig FILE] [--context NAME] [--dry-run]", stderr)
	dryRun := fs.Bool("dry-run", false, "list what would be removed; remove nothing")
	backend := fs.String("backend", "docker", "whose sessions: docker or kubernetes")
	kubeconfig := fs.String("kubeconfig", "", "kubernetes: the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	kubeContext := fs.String("context", "", "kubernetes: the kubeconfig context (default: its current one)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("gc: unexpected argument %q", fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, gcTimeout)
	defer cancel()
	switch *backend {
	case "docker":
		if *kubeconfig != "" || *kubeContext != "" {
			return usageErrorf("--kubeconfig, --context: only with --backend kubernetes")
		}
		return dockerGC(ctx, env, *dryRun, stdout)
	case "kubernetes":
		return kubeGC(ctx, *kubeconfig, *kubeContext, env, *dryRun, stdout)
	}
	return usageErrorf("--backend %q: want docker or kubernetes", *backend)
}

func dockerGC(ctx context.Context, env map[string]string, dryRun bool, stdout io.Writer) error {
	left, err := launch.DockerGC(ctx, "", env, dryRun)
	for _, l := range left {
		switch {
		case dryRun:
			fmt.Fprintf(stdout, "would remove %s (session %s)\n", l, l.Session)
		case l.Removed:
			fmt.Fprintf(stdout, "removed %s (session %s)\n", l, l.Session)
		}
	}
	if len(left) == 0 && err == nil {
		fmt.Fprintln(stdout, "nothing to remove: no docker session whose cork is gone")
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}

func kubeGC(ctx context.Context, kubeconfig, kubeContext string, env map[string]string, dryRun bool, stdout io.Writer) error {
	left, err := launch.KubeGC(ctx, kubeconfig, kubeContext, env, dryRun)
	for _, l := range left {
		switch {
		case dryRun:
			fmt.Fprintf(stdout, "would delete namespace %s (session %s)\n", l.Namespace, l.Session)
		case l.Removed:
			fmt.Fprintf(stdout, "deleted namespace %s (session %s)\n", l.Namespace, l.Session)
		}
	}
	if len(left) == 0 && err == nil {
		fmt.Fprintln(stdout, "nothing to remove: no kubernetes session whose cork is gone")
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}
