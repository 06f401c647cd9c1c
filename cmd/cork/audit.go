package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cork-sh/cork/internal/auditlog"
)

const auditSynopsis = `[--missing] [FILE|-]

Summarise an audit log (the JSON lines of cork proxy or cork run; stdin
when FILE is - or absent): traffic by decision, host, port and credential
slot, with counts and bytes, then the denials by reason. Lines that are
not audit lines are skipped and counted. With --missing, print instead the
allow: entries that the log's not_allowed denials were missing (YAML, for
a --policy file), and as comments the requests a method or path rule
refused.`

// runAudit is `cork audit`: it reads an audit log and prints its summary
// (internal/auditlog). A missing or unreadable log is a usage error (exit
// 2, one line naming it).
func runAudit(_ context.Context, args []string, _ map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	fset := newFlagSet("audit", auditSynopsis, stderr)
	missing := fset.Bool("missing", false, "print the allow: entries the log's not_allowed denials were missing, instead of the table")
	// Flags may come after the file too: cork audit FILE --missing.
	var files []string
	for rest := args; ; rest = fset.Args()[1:] {
		if err := parseFlags(fset, rest, stdout); err != nil {
			return err
		}
		if fset.NArg() == 0 {
			break
		}
		files = append(files, fset.Arg(0))
	}
	if len(files) > 1 {
		return usageErrorf("audit: unexpected argument %q (one log at a time)", files[1])
	}
	name, in := "stdin", stdin
	if len(files) == 1 && files[0] != "-" {
		p := files[0]
		f, err := os.Open(p)
		if err != nil {
			return usageErrorf("audit: %s: %v", p, openProblem(err))
		}
		defer f.Close()
		name, in = p, f
	}
	sum, err := auditlog.Read(in)
	if err != nil {
		return usageErrorf("audit: %s: %v", name, openProblem(errors.Unwrap(err)))
	}
	if sum.Lines == 0 {
		fmt.Fprintf(stderr, "cork: audit: %s: no audit lines (cork audit reads the JSON log, CORK_LOG_FORMAT=json)\n", name)
	}
	if *missing {
		return sum.WriteMissing(stdout)
	}
	return sum.WriteTable(stdout)
}

// openProblem says briefly why a log cannot be read, without repeating
// the path the caller names.
func openProblem(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case err == nil:
		return "unreadable"
	}
	return fmt.Sprint(err)
}
