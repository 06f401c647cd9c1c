package main

import (
	"errors"
	"fmt"
	"os"

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

// pathError shortens an *os.PathError to "path: reason".
func pathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}
