// Command cork keeps real credentials out of AI-agent sandboxes: it
// provisions a sandbox with dummy credentials and runs the egress proxy that
// swaps them for the real ones on the hosts they are bound to.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cork-sh/cork/launch"
	"github.com/cork-sh/cork/launch/confine"
)

func main() {
	confine.Main() // the local sandbox re-executes cork as its init
	if len(os.Args) < 2 || os.Args[1] != "proxy" {
		installFallbackRoots() // `cork proxy` loads roots once it is ready (upstreamRoots)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	ctx, stopInterrupt := interruptContext(ctx, os.Args[1:], os.Stdin)
	err := run(ctx, os.Args[1:], environ(), os.Stdin, os.Stdout, os.Stderr)
	stopInterrupt()
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// interruptContext makes Ctrl-C (SIGINT, and SIGQUIT) end ctx, except
// for `cork run` on a terminal: there the terminal sends them to the
// command too, which is in the foreground and decides (an interactive
// agent interrupts its turn and goes on); cork stops with the command.
func interruptContext(ctx context.Context, args []string, stdin *os.File) (context.Context, context.CancelFunc) {
	if len(args) > 0 && args[0] == "run" && launch.IsTerminal(stdin) {
		swallowed := make(chan os.Signal, 1)
		signal.Notify(swallowed, os.Interrupt, syscall.SIGQUIT)
		return ctx, func() { signal.Stop(swallowed) }
	}
	return signal.NotifyContext(ctx, os.Interrupt)
}

// environ returns the process environment as a map.
func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// command is one cork subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run a command in a sandbox whose only way out is the proxy", runRun},
		{"proxy", "run the egress proxy (sidecar or standalone)", runProxy},
		{"relay", "relay stdin and stdout to the proxy's Unix socket (a microVM's way in)", runRelay},
		{"demo", "show cork working end to end, offline, on an embedded default", runDemo},
		{"ca", "generate a CA certificate and key for the proxy", runCA},
		{"manifests", "print a kubernetes session's objects as YAML, without tokens (GitOps)", runManifests},
		{"gc", "remove what killed docker or kubernetes sessions left behind", runGC},
		{"audit", "summarise an audit log, or print the allow: entries a run was missing", runAudit},
		{"version", "print the version", runVersion},
	}
}

const usageText = `cork keeps real credentials out of AI-agent sandboxes.

Usage:
  cork <command> [flags]

Commands:
%s
Run 'cork <command> --help' for a command's flags.
`

func usage() string {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	return fmt.Sprintf(usageText, b.String())
}

// run dispatches to a subcommand. It is main without the process: tests
// call it with their own arguments, environment and streams.
func run(ctx context.Context, args []string, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return errUsageShown
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage())
		return nil
	case "-v", "--version":
		return runVersion(ctx, nil, env, stdin, stdout, stderr)
	}
	switch args[0] { // hidden: used by cork itself
	case "demo-agent":
		return runDemoAgent(ctx, args[1:], env, stdin, stdout, stderr)
	case "probe": // the docker backend's preflight, from the sidecar image
		return runProbe(ctx, args[1:], env, stdin, stdout, stderr)
	case "canary": // the kubernetes backend's preflight: what the probe must not reach
		return runCanary(ctx, args[1:], env, stdin, stdout, stderr)
	case "seed-home": // the kubernetes backend's agent pod: its home from a ConfigMap
		return runSeedHome(ctx, args[1:], env, stdin, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], env, stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "cork: unknown command %q\n\n%s", args[0], usage())
	return errUsageShown
}

// errUsageShown means the usage (or a usage error) was already printed: exit 2.
var errUsageShown = errors.New("usage")

// usageError is a bad flag, argument or setting: exit status 2. Each
// problem is one line naming the flag, variable or file.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// exitError carries the exit status of a sandboxed command.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode maps err to a process exit status, printing it when there is
// something to say.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, errUsageShown) {
		return 2
	}
	if errors.Is(err, context.Canceled) {
		// Interrupted (SIGINT/SIGTERM) before the sandbox ran: everything
		// created was torn down; exit as a shell would.
		fmt.Fprintln(stderr, "cork: interrupted")
		return 130
	}
	var ue *usageError
	if errors.As(err, &ue) {
		printLines(stderr, ue.err)
		return 2
	}
	printLines(stderr, err)
	return 1
}

// printLines prints each line of err prefixed by "cork: ".
func printLines(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintf(w, "cork: %s\n", line)
		}
	}
}
