// Package dummyjwt mints and parses the unsigned dummy JWTs that cork puts
// into sandboxes as placeholders (provision writes them into the Codex
// auth file), and parses the host's real ones by the same rules.
//
// Clients such as the Codex CLI decode a JWT's payload without checking
// its signature, so a dummy token only has to be well formed: three
// dot-separated parts, each base64url without padding. Mint produces such
// tokens with a random signature part; Parse applies the same rules
// strictly, so a token that Codex would reject is rejected here too.
//
// Parse errors describe the shape of a token, never its content: callers
// feed it real credentials.
package dummyjwt
