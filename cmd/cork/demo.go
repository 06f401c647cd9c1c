package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cork-sh/cork/internal/demo"
)

func runDemo(ctx context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--log]", stderr)
	showLog := fs.Bool("log", false, "also print the proxy's JSON audit log to stderr")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("demo: unexpected argument %q", fs.Arg(0))
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: find the cork binary: %w", err)
	}
	var logw io.Writer
	if *showLog {
		logw = stderr
	}
	return demo.Run(ctx, demo.Options{Exe: exe, Out: stdout, Log: logw})
}

// runDemoAgent is the sandboxed side of `cork demo`; it is not listed in
// the usage.
func runDemoAgent(ctx context.Context, _ []string, _ map[string]string, _ io.Reader, stdout, _ io.Writer) error {
	return demo.Agent(ctx, stdout)
}
