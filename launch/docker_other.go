//go:build !unix

package launch

import "os/exec"

func ownProcessGroup(*exec.Cmd) {}

// sandboxUser is empty where there are no numeric ids: the image's user.
func sandboxUser() string { return "" }
