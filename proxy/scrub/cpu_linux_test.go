package scrub

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time used by the calling OS thread, or 0.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
