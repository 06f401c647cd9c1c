//go:build !linux || !(amd64 || arm64)

package confine

import (
	"fmt"
	"runtime"
)

// Restrict is what init's command-starting thread applies to itself just
// before it forks and execs the command. Here (not Linux on amd64 or arm64) there is no seccomp filter
// for the platform, so apply always fails: the command must not run
// without it.
type Restrict struct {
	RWDirs     []string // read-write-execute trees
	RWFiles    []string // single files read-write, with device ioctls
	NoLandlock bool     // leave Landlock out
}

// apply fails: cork has no seccomp filter for this platform.
func (r Restrict) apply() (layers []string, err error) {
	return nil, fmt.Errorf("confine: no restrictions for %s/%s", runtime.GOOS, runtime.GOARCH)
}
