// Package pki is cork's session certificate authority: it generates or
// loads the CA the proxy intercepts TLS with, and mints, caches and renews
// the leaf certificates it presents for intercepted hosts.
//
// Invariants:
//   - A generated CA's critical X.509 name constraints permit exactly the
//     intercepted host patterns it was made for, so even its key cannot
//     vouch for any other host; Leaf refuses such hosts with
//     ErrNotPermitted before signing.
//   - Every leaf has its own ECDSA P-256 key from crypto/rand (never derived
//     from the CA key), a random serial, and a NotAfter no later than the
//     CA's.
//   - The CA key leaves the process only through WriteFiles (mode 0600);
//     errors never include key material.
//
// It imports the policy package for host parsing and matching, never proxy.
package pki
