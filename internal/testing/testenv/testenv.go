// Package testenv holds the rule for tests that need something from
// outside Go (a CLI, root, Docker, a route): outside CI they skip and say
// what is missing; under CI=true they fail, because CI must run every path.
//
// Its tests also hold the layout's rule (TestProductImportsNoTestCode):
// no product package imports anything under internal/testing/.
package testenv

import (
	"os"
	"testing"
)

// Missing ends t for a missing dependency described by format and args:
// t.Fatalf under CI, t.Skipf otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: not skipping)", args...)
	}
	t.Skipf(format, args...)
}
