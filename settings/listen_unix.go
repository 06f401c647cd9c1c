//go:build unix

package settings

import (
	"os"
	"syscall"
)

// maxSocketPath is the longest path a Unix socket may have (sun_path,
// less its terminating NUL).
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// fileOwner returns the uid that owns the file st describes.
func fileOwner(st os.FileInfo) (int, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(sys.Uid), true
}
