// Package echoupstream is a misbehaving HTTPS API for cork's hardening
// tests: every endpoint echoes the Authorization header it received —
// which, after cork's injection, holds the REAL token — back to the
// client in some shape (JSON, HTML, split chunks, SSE events, compressed
// bodies, transformed response headers, trailers, WebSocket messages), or
// misbehaves at the protocol level (bad upgrades, slow or huge response
// heads). Tests point cork at it with CORK_RESOLVE and assert that nothing
// of the token comes back to the sandbox.
//
// A Server listens on 127.0.0.1 only, with a certificate from its own
// throwaway CA (internal/localca): HTTPS with HTTP/1.1 only (Addr), HTTPS
// offering HTTP/2 (H2Addr), and plain HTTP (PlainAddr), all serving the
// same endpoints. Every request that reaches a handler is recorded
// (Requests), so tests can also assert that a request never arrived.
//
// The token T an endpoint transforms is derived from the Authorization
// value A: the text after "Bearer " (or "Token "), the password of a
// "Basic" credential, or A itself.
//
// Endpoints (GET unless said):
//
//	/json, /html             A in a JSON object {"auth": A} or an HTML page
//	/chunked?split=N         A in two flushed writes split at byte N of A
//	/sse                     event "hello", 300 ms, T's first half, T's rest, A
//	/sse-first?hold=5s       event "hello", then hold (default 5 s) of silence
//	/gzip /deflate /deflate-raw /br /zstd
//	                         the /json body with that Content-Encoding
//	/unknown-encoding        Content-Encoding: x-cork-test, A in the body
//	/headers                 T transformed in response headers (see HeaderEcho)
//	/trailers                chunked body, trailer X-Echo: A
//	/ws                      WebSocket: A in a text, a binary and a fragmented
//	                         message, then echoes every client message
//	/ws-raw                  a hand-made WebSocket 101, then records the raw
//	                         bytes the client sends (RawUpgraded)
//	/upgrade-h2c             101 with Upgrade: h2c
//	/ws-bad-accept           101 with a wrong Sec-WebSocket-Accept
//	/slow-head?d=3s          waits d before the response head
//	/big-head?n=N            a response head of at least N bytes
//	/down?n=N                N bytes of a fixed pattern
//	anything else            200 "ok"
//
// TCPCounter is a plain TCP server for blind-tunnel tests: it reads until
// EOF, answers "got N bytes" and closes.
//
// A Server and a TCPCounter are safe for concurrent use. Nothing here is
// for production.
package echoupstream
