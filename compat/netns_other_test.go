//go:build !linux

package compat

func canUnshareNet() bool { return false }
