package launch

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether x is an *os.File on a terminal.
func isTerminal(x any) bool {
	f, ok := x.(*os.File)
	if !ok || f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
