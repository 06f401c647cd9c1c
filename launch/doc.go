// Package launch holds the backends (docker, smolvm, local) that start the
// egress proxy and the sandbox for a provision.Plan.
//
// Every backend gets the real tokens only from Tokens, which resolves the
// plan's slots against the host environment overlaid by what provisioning
// read on the host. The tokens reach the proxy in-process or on the
// sidecar's stdin, never through argv, an environment variable or a file
// inside the sandbox.
package launch
