// Package confine runs a command in the local sandbox: on Linux, new user,
// mount, PID, IPC, UTS and network namespaces, created without root.
//
// The process tree is cork → init → command. Init is the calling program
// re-executed (its main must call Main first): PID 1 of the new PID
// namespace, it builds the sandbox's view of the filesystem (the host tree
// read-only, credential locations hidden, the workspace and sandbox HOME
// read-write, a private /tmp, /dev and /proc), brings up the namespace's
// loopback and relays 127.0.0.1:Port to the proxy's Unix socket on the
// host. It then starts the command from an OS thread of its own that has
// dropped every capability and set no_new_privs, Landlock and a seccomp
// filter on itself: the command inherits them. Init forwards signals, reaps
// orphans and exits with the command's status; when init exits the kernel
// kills whatever is left in the namespace.
//
// Invariants: the command holds no capability, cannot see cork or any host
// process, cannot reach any address but the relay, and cannot read a path
// that View hides. Nothing a secret is made of crosses into init or the
// command: the spec carries only sandbox values. See docs/SECURITY.md,
// "The local sandbox".
package confine
