//go:build !unix

package launch

import (
	"os"
	"os/exec"
)

func ownProcessGroup(*exec.Cmd) {}

// sandboxUser is empty where there are no numeric ids: the image's user.
func sandboxUser() string { return "" }

func signalGroup(cmd *exec.Cmd, sig os.Signal) {
	if cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}

func groupAlive(*exec.Cmd) bool { return false }
