package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints usage to stderr (or stdout for --help).
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cork "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: cork %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args. --help prints usage to stdout and returns
// errHelp; a bad flag prints the error and usage to stderr and returns
// errUsageShown.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(out)
		return errHelp
	default:
		fmt.Fprintf(out, "cork: %v\n", err)
		fs.Usage()
		return errUsageShown
	}
}

// errHelp means --help was shown: exit 0.
var errHelp = errors.New("help shown")
