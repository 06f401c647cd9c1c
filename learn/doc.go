// Package learn turns what a `cork run --learn` session did into a policy
// for `cork run --policy` (docs/POLICY.md, "Learn a policy"): a Recorder
// reads the proxy's JSON audit lines, Collapse reduces the paths a routed
// host was used with to a few prefixes, and Render writes the allow
// entries, alone or added to an existing policy file.
//
// Invariants: only requests that passed are learned; a host the proxy
// refused a placeholder to (placeholder_leak) is never learned; nothing
// here sees a token (audit lines hold none).
package learn
