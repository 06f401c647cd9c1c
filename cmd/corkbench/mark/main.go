// Command mark is the start-up benchmark's command (go run ./cmd/corkbench
// -only startup): its first act is to write the wall-clock time, in
// nanoseconds since the Unix epoch, to stdout; then it exits 0. It imports
// only what that needs, so that its own start costs as little as a Go
// program's can and the same under every variant.
package main

import (
	"os"
	"strconv"
	"time"
)

func main() {
	os.Stdout.Write(strconv.AppendInt(nil, time.Now().UnixNano(), 10))
}
