// Package demo is `cork demo`: an offline end-to-end run of cork's main
// job on an embedded default. An in-process fake LLM API (HTTPS, its own
// CA) plays the upstream; a local sandbox holding only a placeholder
// credential streams an answer through the proxy, then tries a host the
// policy does not allow. The transcript shows what each side saw, and the
// run fails unless every check behaved.
package demo
