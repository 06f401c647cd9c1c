//go:build !unix

package settings

import "os"

// maxSocketPath is the longest path a Unix socket may have (sun_path,
// less its terminating NUL).
const maxSocketPath = 107

// fileOwner does not know file owners on this system.
func fileOwner(os.FileInfo) (int, bool) { return 0, false }
