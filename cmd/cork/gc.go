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

// runGC is `cork gc [--dry-run]`: it removes the containers, networks and
// volumes of docker sessions whose cork process is gone (killed, crashed,
// or from before a reboot), as `cork run --backend docker` does before it
// starts a session. Sessions still running, and other hosts' sessions on
// a shared engine, are left alone. One line per object on stdout.
func runGC(ctx context.Context, args []string, env map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("gc", "[--dry-run]", stderr)
	dryRun := fs.Bool("dry-run", false, "list what would be removed; remove nothing")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("gc: unexpected argument %q", fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, gcTimeout)
	defer cancel()
	left, err := launch.DockerGC(ctx, "", env, *dryRun)
	for _, l := range left {
		switch {
		case *dryRun:
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
