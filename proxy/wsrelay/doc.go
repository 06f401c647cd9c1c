// Package wsrelay relays one upgraded WebSocket connection frame by frame,
// so that every message payload passes a filter on its way through.
//
// It owns the WebSocket wire format (RFC 6455 framing and masking) and the
// permessage-deflate extension (RFC 7692) for cork's proxy: the proxy checks
// the upstream's 101 with CheckHandshake, then relays with the io.ReadWriteCloser
// that New returns in place of the raw upstream connection.
//
// Invariants:
//   - No byte of a server→client text or binary message, ping, pong or close
//     reason reaches the client without passing the Server filter; no byte of a
//     client→server one reaches the upstream before the Client filter has seen
//     it (a compressed client message is checked whole before it is forwarded).
//   - A refused message, a protocol error or an oversized compressed message
//     ends the relay: the client gets a close frame (1008, 1002 or 1009), the
//     upstream is closed.
//   - Memory is bounded: uncompressed payloads stream in chunks of at most
//     ChunkSize; only compressed messages are buffered, up to MaxMessage.
//   - No payload byte appears in an error.
//   - The package starts no goroutines and imports nothing from cork.
package wsrelay
