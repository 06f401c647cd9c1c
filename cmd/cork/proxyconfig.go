package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/cork-sh/cork/settings"
)

// loadSettings reads the CORK_* variables of environ (package settings
// owns them). Flags registered afterwards override them.
func loadSettings(environ map[string]string) (*settings.Input, error) {
	in, err := settings.Load(environ)
	if err != nil {
		return nil, &usageError{err}
	}
	return in, nil
}

// parseSettings checks the settings for cmd; its errors, one line per
// problem naming the variable or flag, are usage errors.
func parseSettings(in *settings.Input, cmd settings.Command) (*settings.Proxy, error) {
	p, err := in.Parse(cmd)
	if err != nil {
		return nil, &usageError{err}
	}
	return p, nil
}

// checkDir checks that path is a listable directory.
func checkDir(path string) error {
	// Non-blocking, so that a FIFO is opened and checked, not waited on.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return pathError(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pathError(err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: not a directory", path)
	}
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %v", path, errors.Unwrap(err))
	}
	return nil
}

// pathError shortens an *os.PathError to "path: reason".
func pathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}
