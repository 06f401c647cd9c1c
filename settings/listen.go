package settings

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// UnixPrefix marks a Unix-socket listener in CORK_LISTEN and --listen:
// unix:/abs/path.sock.
const UnixPrefix = "unix:"

// ListenAddr returns the network and address that net.Listen takes for
// Listen: "unix" and the socket's path for unix:PATH, else "tcp" and
// Listen itself.
func (p *Proxy) ListenAddr() (network, address string) {
	if path, ok := strings.CutPrefix(p.Listen, UnixPrefix); ok {
		return "unix", path
	}
	return "tcp", p.Listen
}

// checkProxyListen checks the proxy's listener: host:port, or unix:PATH
// (checkSocketPath).
func checkProxyListen(addr string) error {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		return checkSocketPath(path)
	}
	if addr == "" {
		return errors.New("empty: want host:port, e.g. 127.0.0.1:3128, or unix:/path/to/proxy.sock")
	}
	return checkListen(addr)
}

// checkSocketPath checks where the proxy's Unix socket is to be. A client
// on it needs no session credential (docs/DESIGN.md, decision 15), so who
// may connect is decided by the file system alone: the path is absolute,
// its directory exists, belongs to this user and is closed to group and
// others (mode 0700 or stricter: cork does not create it, so that a typo
// cannot make a directory nobody checked), and the path is free or a
// socket (a stale one is replaced when nothing answers on it; any other
// file is never removed).
func checkSocketPath(path string) error {
	switch {
	case path == "":
		return errors.New("unix: want an absolute path, e.g. unix:/run/cork/proxy.sock")
	case !filepath.IsAbs(path):
		return fmt.Errorf("unix:%s: not an absolute path", path)
	case len(path) > maxSocketPath:
		return fmt.Errorf("unix:%s: %d bytes; a Unix socket path may have at most %d", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("unix:%s: directory %s does not exist; create it private: mkdir -m 700 %s", path, dir, dir)
	case err != nil:
		return fmt.Errorf("unix:%s: directory %v", path, pathError(err))
	case !st.IsDir():
		return fmt.Errorf("unix:%s: %s is not a directory", path, dir)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("unix:%s: directory %s has mode %04o, which lets others reach the socket; chmod 700 %s", path, dir, st.Mode().Perm(), dir)
	}
	if uid, ok := fileOwner(st); ok && uid != os.Geteuid() {
		return fmt.Errorf("unix:%s: directory %s belongs to uid %d, not to this user (uid %d)", path, dir, uid, os.Geteuid())
	}
	if st, err := os.Lstat(path); err == nil && st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("unix:%s: exists and is not a socket", path)
	}
	return nil
}
