package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/pki"
)

func runCA(_ context.Context, args []string, _ map[string]string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca", "--policy-file FILE --cert-out FILE --key-out FILE", stderr)
	policyFile := fs.String("policy-file", "", "policy whose intercepted hosts the CA may vouch for (name constraints); required")
	certOut := fs.String("cert-out", "", "where to write the CA certificate (PEM, mode 0644); required")
	keyOut := fs.String("key-out", "", "where to write the CA private key (PEM, mode 0600); required")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("ca: unexpected argument %q", fs.Arg(0))
	}
	var missing []string
	for name, v := range map[string]string{"--policy-file": *policyFile, "--cert-out": *certOut, "--key-out": *keyOut} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return usageErrorf("ca: missing %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		return usageErrorf("--policy-file: %v", err)
	}
	ca, err := pki.Generate(pol.InterceptHosts())
	if err != nil {
		return fmt.Errorf("generate CA: %w", err)
	}
	if err := ca.WriteFiles(*certOut, *keyOut); err != nil {
		return usageErrorf("ca: %v", err)
	}
	fmt.Fprintf(stdout, "wrote %s (certificate) and %s (key, mode 0600)\n", *certOut, *keyOut)
	return nil
}
