// Package compat is cork's compatibility suite: it runs the real agent CLIs
// (Codex CLI, Claude Code) and common HTTP clients through cork — in a
// `local` sandbox, and the Codex CLI also in a QEMU microVM and in a
// Kubernetes pod (on internal/testing/kubecluster) — against the fakes of
// internal/testing/fakeupstream, and checks that each one works with the
// dummy credentials while the real token reaches only the fake upstream.
//
// The package holds only tests. The CLIs are installed at pinned versions
// by .ci/npm-install.sh; `go test ./compat -update` rewrites
// docs/COMPATIBILITY.md from a run.
package compat
