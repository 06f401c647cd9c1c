// Package scrub finds and replaces secrets in bytes: one-shot, streaming
// (Stream, NewReader) and as a detector (Find, Partial).
//
// It owns the matching engine that keeps real tokens from flowing back into
// the sandbox through a response body or a WebSocket frame, and the list of
// encodings in which a server plausibly echoes a token (Encodings, Pairs).
//
// Invariants:
//
//   - Matching is ASCII case-insensitive; the leftmost match wins, at one
//     position the longest Find wins, matches do not overlap.
//   - Streaming is exact: for any split of the input into writes, a Stream's
//     output equals Set.ReplaceString of the whole input.
//   - A Stream holds back only the longest suffix of what it has seen that is
//     a proper prefix of some Find (so fewer than MaxLen bytes), and nothing
//     else: an SSE event ending in "\n\n" is released at once.
//   - No Find or Replace is ever printed: Rule, Set, Stream, Partial and the
//     reader format as counts only.
//
// The package imports nothing from cork.
package scrub
