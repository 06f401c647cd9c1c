//go:build unix

package launch

import (
	"errors"
	"fmt"
	"io"
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

// pidAlive reports whether a process with this pid exists (EPERM: it
// does, as another user's).
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// janitorScript removes a session's objects once its stdin ends without
// the line "done": when cork, which holds the other end of the pipe, has
// died without tearing down (SIGKILL, a crash). $1 is the docker client,
// $2 the session id, $3 the session's host directory.
const janitorScript = `read -r line
[ "$line" = done ] && exit 0
f="label=` + LabelSession + `=$2"
ids=$("$1" ps -aq --filter "$f") && [ -n "$ids" ] && "$1" rm -f -v $ids
ids=$("$1" network ls -q --filter "$f") && [ -n "$ids" ] && "$1" network rm $ids
ids=$("$1" volume ls -q --filter "$f") && [ -n "$ids" ] && "$1" volume rm -f $ids
[ -n "$3" ] && rm -rf -- "$3"
exit 0
`

// startJanitor starts the session's janitor: a shell in a session of its
// own (Setsid: no signal to cork's group or terminal reaches it) whose
// stdin is a pipe only cork writes to. The kernel closes that pipe when
// cork dies, however it dies; the janitor then removes the session's
// labelled objects and dir. The returned writer ends the janitor's watch:
// write "done\n" after a clean teardown, then Close.
func startJanitor(cli *dockerCLI, session, dir string) (pid int, w io.WriteCloser, err error) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return 0, nil, fmt.Errorf("janitor: %w", err)
	}
	cmd := exec.Command(sh, "-c", janitorScript, "cork-docker-janitor", cli.path, session, dir)
	cmd.Env = cli.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	w, err = cmd.StdinPipe()
	if err != nil {
		return 0, nil, fmt.Errorf("janitor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("janitor: %w", err)
	}
	// Reap it when it ends while cork still runs; if cork dies first,
	// init does.
	go cmd.Wait()
	return cmd.Process.Pid, w, nil
}
