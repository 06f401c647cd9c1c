// Package gitpush reads the ref updates at the start of a git push over
// smart HTTP (a POST to …/git-receive-pack) and writes receive-pack's
// answer refusing one, for cork's push rules (docs/POLICY.md, "Git push
// rules").
//
// The grammar is git's (Documentation/gitprotocol-pack.adoc, "Reference
// Update Request"), read the way git's receive-pack reads it
// (builtin/receive-pack.c, read_head_info and queue_command): optional
// "shallow <oid>" lines, then pkt-lines "<old-oid> SP <new-oid> SP <ref>",
// the first carrying "\0<capabilities>", then a flush-pkt; SHA-1 and
// SHA-256 object ids. A signed push (git push --signed) carries its
// commands in a push certificate instead (or as well), read as
// queue_commands_from_cert reads it.
//
// Invariants:
//   - ReadRequest reads exactly the bytes up to and including that flush,
//     never more, and returns them: the caller forwards them followed by the
//     rest of the body, so the pack is never read into memory or altered.
//   - Every command receive-pack would act on for a request ReadRequest
//     accepts is among the commands it returns: the same ones, except in a
//     push certificate, where it returns every command-shaped line up to the
//     first other line and receive-pack reads those before the signature
//     (or refuses the push). Anything else is an error wrapping
//     ErrUnparseable: pkt-line specials, malformed lines, ref names cork does
//     not accept, and request heads beyond MaxHead bytes or MaxCommands
//     commands.
//   - No value from the request appears in an error.
//   - The package starts no goroutines and imports nothing from cork.
package gitpush
