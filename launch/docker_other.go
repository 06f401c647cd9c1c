//go:build !unix

package launch

import (
	"io"
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

// pidAlive cannot tell without unix signals: every owner counts as alive,
// so `cork gc` removes nothing here.
func pidAlive(int) bool { return true }

// startJanitor has no janitor to start here: a killed cork's session is
// left for `cork gc`.
func startJanitor(*dockerCLI, string, string) (int, io.WriteCloser, error) {
	return 0, nil, nil
}
