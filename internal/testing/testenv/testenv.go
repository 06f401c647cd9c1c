// Package testenv holds the rule for tests that need something from
// outside Go (a CLI, root, Docker, a route): outside CI they skip and say
// what is missing; under CI=true they fail, because CI must run every path.
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
