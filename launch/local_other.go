//go:build !linux

package launch

// protectProcess has no portable equivalent; the local backend refuses to
// run outside Linux without --no-isolate and documents that it is not a
// process boundary then.
func protectProcess() error { return nil }
