//go:build linux

package compat

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// canUnshareNet reports whether this process may create a network
// namespace, as launch's IsolateNet does. The probe runs on a locked
// thread that is never unlocked, so the runtime discards the thread rather
// than reuse it in the new namespace.
func canUnshareNet() bool {
	ok := make(chan bool, 1)
	go func() {
		runtime.LockOSThread()
		ok <- unix.Unshare(unix.CLONE_NEWNET) == nil
	}()
	return <-ok
}
