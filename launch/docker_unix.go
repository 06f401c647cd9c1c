//go:build unix

package launch

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// ownProcessGroup puts cmd in a process group of its own, out of reach of
// the terminal's Ctrl-C.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// sandboxUser is the --user of the agent container: cork's own uid and gid,
// so that the sandbox reads the dummy files cork wrote (mode 0600) and
// files it writes into the workspace belong to the user who ran cork.
func sandboxUser() string {
	return fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
}

// signalGroup signals the process group that ownProcessGroup gave cmd:
// the command and everything it left running.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig)
	}
}

// groupAlive reports whether any process of cmd's group is left.
func groupAlive(cmd *exec.Cmd) bool {
	return cmd.Process != nil && syscall.Kill(-cmd.Process.Pid, 0) == nil
}
