// Package policy owns cork's egress policy language: credential slots, the
// routes that bind them to hosts, and the allow and block lists.
//
// It parses a policy file (parse.go: one YAML or JSON document, aliases
// allowed, unknown keys refused), validates it (validate.go: every problem
// at once, each an *Error with its place and, from a file, its line),
// compiles it for lookup (compile.go), and renders it back (marshal.go).
// Host patterns and host normalisation are in hostmatch.go, path matching
// for path-scoped blocks in pathmatch.go, allow entries in allow.go, git
// push rules in push.go, and the method and path rules of routes and
// path-scoped allows (HostRules.Permits) in permit.go; docs/POLICY.md is
// the user's reference.
//
// Invariants:
//   - A *Policy from Parse, Load or New is valid, normalised, immutable and
//     safe for concurrent use; any other Policy value denies everything.
//   - A policy holds placeholders, never a credential: values reach the
//     proxy separately (resolve.Tokens).
//   - Hosts are compared only in NormalizeHost's form, so upper case, a
//     trailing dot, an IDN or IPv6 brackets meet the same rules.
//
// The package imports nothing of cork's: provision builds Policy values,
// launch hands them to the proxy, and proxy looks hosts up in them.
package policy
