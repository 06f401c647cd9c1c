package launch

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// protectProcess makes cork's own /proc entries (environ, mem, fds) owned
// by root and refuses ptrace from same-user processes: an unconfined
// child (--no-isolate) runs as the same user and would otherwise read the
// host credentials in cork's environment from /proc/<cork>/environ. exec
// resets the flag, so the child itself is unaffected.
func protectProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}
