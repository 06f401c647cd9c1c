// Package proxy is cork's egress proxy: the sandbox's only way out.
//
// It owns four decisions and their enforcement, in this order:
//
//   - Policy (policy.go): every CONNECT and every plain-HTTP request is
//     looked up; whatever is not routed or allowed is refused with 403 and
//     an X-Cork-Deny-Reason header (connect.go, request.go, deny.go).
//   - Interception: only routed hosts (and hosts with path-scoped blocks) are
//     intercepted with a leaf signed by the session CA (ca.go); allowed hosts
//     are blind tunnels. Inside an intercepted connection every request must
//     name the CONNECT host:port (request.go).
//   - Credentials (inject.go): on a route the slot's placeholder is swapped
//     for the real token in the route's header; a placeholder anywhere else,
//     or to a host its slot is not bound to, is refused (the tripwire).
//     Tokens are revealed only in inject.go (resolve.Secret.Reveal; the
//     client-auth password once, in New).
//   - Dialing (dial.go): names are resolved once, every answer is checked
//     against the private-address guard, and only checked addresses are
//     dialed; the socket address is checked again in net.Dialer.Control.
//
// goproxy (github.com/elazarl/goproxy) does the HTTP plumbing; no goproxy
// type appears in this package's API. Invariant: no token value ever
// appears in a log line, error, metric or response body.
package proxy
