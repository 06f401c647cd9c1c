package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cork-sh/cork/provision"
)

// WriteFiles writes the plan's dummy files under root (the sandbox HOME),
// creating directories with mode 0700. A path that is absolute or leaves
// root is an error; nothing is written outside root.
func WriteFiles(root string, files []provision.File) error {
	for _, f := range files {
		dst, err := sandboxPath(root, f.Path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("write sandbox file %s: %w", f.Path, err)
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o600
		}
		if err := os.WriteFile(dst, f.Data, mode); err != nil {
			return fmt.Errorf("write sandbox file %s: %w", f.Path, err)
		}
		if err := os.Chmod(dst, mode); err != nil {
			return fmt.Errorf("write sandbox file %s: %w", f.Path, err)
		}
	}
	return nil
}

// sandboxPath joins root and a plan-relative path, refusing escapes.
func sandboxPath(root, rel string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(rel))
	if rel == "" || filepath.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("sandbox file %q: path must be relative to the sandbox home and stay inside it", rel)
	}
	return filepath.Join(root, clean), nil
}
