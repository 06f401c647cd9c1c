// Package resolve turns a slot→env-var map and an environment into the
// token map the proxy injects. It is generic: it knows no agent. Anything
// agent-specific (a token parsed from an auth file, say) is put into the
// provisioned environment by package provision before it gets here.
//
// Invariant: a token value is held only in a Secret, whose every
// formatting and marshalling path redacts; Reveal is the single accessor.
package resolve
