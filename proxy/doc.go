// Package proxy is cork's egress proxy: the sandbox's only way out.
//
// It owns four decisions and their enforcement, in this order:
//
//   - Policy (package policy): every CONNECT and every plain-HTTP request is
//     looked up; whatever is not routed or allowed is refused with 403 and
//     an X-Cork-Deny-Reason header (connect.go, request.go, deny.go), and so
//     is a request outside the host's method rules and path-scoped allows
//     (permit.go).
//   - Interception: only routed hosts (and hosts with path-scoped blocks or
//     allows) are intercepted with a leaf signed by the session CA (package
//     pki); allowed hosts are blind tunnels. Inside an intercepted connection every request must
//     name the CONNECT host:port (request.go).
//   - Credentials (inject.go): on a route the slot's placeholder is swapped
//     for the real token in the route's header; a placeholder anywhere else,
//     or to a host its slot is not bound to, is refused (the tripwire).
//     Tokens are revealed only in inject.go and tokens.go (which builds the
//     response scrubber from them) — resolve.Secret.Reveal; the client-auth
//     password once, in New.
//   - Dialing (dial.go): names are resolved once, every answer is checked
//     against the private-address guard, and only checked addresses are
//     dialed; the socket address is checked again in net.Dialer.Control.
//   - Echoes (tokens.go, encoding.go, upgrade.go, package scrub): on a
//     routed host every real token, in every encoding a server plausibly
//     reflects (exact, any ASCII case, URL-, JSON- and HTML-escaped, hex,
//     base64 at any alignment, so Basic credentials too), is replaced by
//     the same encoding of its placeholder in response header names and
//     values, trailers, bodies (streamed; gzip, deflate, br and zstd
//     decoded first) and server WebSocket messages (package wsrelay relays
//     frames, never raw bytes, after a valid WebSocket handshake). A body
//     cork cannot decode is refused unless the route says otherwise.
//   - The tripwire (tripwire.go) looks for placeholders in the same
//     encodings, percent-decoded twice and by skeleton, in request headers,
//     URLs, bodies, trailers and client WebSocket messages.
//   - Bounds (server.go, mitm.go, tunnel.go): request heads, idle keep-alive
//     connections, idle tunnels, response heads (time and size) and
//     connections per client are all bounded.
//
// docs/SECURITY.md says exactly what is scrubbed, matched and bounded, and
// what is not. goproxy (github.com/elazarl/goproxy) does the HTTP plumbing;
// no goproxy type appears in this package's API. Invariant: no token value
// ever appears in a log line, error, metric or response (headers, trailers,
// bodies in any supported encoding, WebSocket messages).
package proxy
