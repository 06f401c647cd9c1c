//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package launch

// isTerminal is false where cork cannot tell: smolvm then gets no -t.
func isTerminal(any) bool { return false }
