package settings

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// TestListenUnix: CORK_LISTEN (or --listen) unix:PATH names a socket in an
// existing private directory; ListenAddr gives what net.Listen takes, Env
// renders it back unchanged, and Config lets the socket's clients in
// without the client credential (TCP's still need it).
func TestListenUnix(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "proxy.sock")
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("allow: [a.test]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"variable", map[string]string{"CORK_LISTEN": "unix:" + sock}, nil},
		{"flag", nil, []string{"--listen", "unix:" + sock}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parse(t, tc.env, ForProxy, append(tc.args, "--policy-file", pol)...)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if network, addr := p.ListenAddr(); network != "unix" || addr != sock {
				t.Errorf("ListenAddr() = %q, %q; want unix, %q", network, addr, sock)
			}
			if got := p.Env()["CORK_LISTEN"]; got != "unix:"+sock {
				t.Errorf("Env()[CORK_LISTEN] = %q, want unix:%s", got, sock)
			}
			if !p.Config().TrustUnixSockets {
				t.Error("Config().TrustUnixSockets = false, want true: the socket's clients need no client credential")
			}
		})
	}
	t.Run("tcp", func(t *testing.T) {
		p, err := parse(t, map[string]string{"CORK_LISTEN": "127.0.0.1:0"}, ForRun)
		if err != nil {
			t.Fatal(err)
		}
		if network, addr := p.ListenAddr(); network != "tcp" || addr != "127.0.0.1:0" {
			t.Errorf("ListenAddr() = %q, %q; want tcp, 127.0.0.1:0", network, addr)
		}
		if p.Config().TrustUnixSockets {
			t.Error("Config().TrustUnixSockets = true on TCP, want false")
		}
	})
	t.Run("a stale socket is accepted", func(t *testing.T) {
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		t.Cleanup(func() { os.Remove(sock) })
		if _, err := parse(t, map[string]string{"CORK_LISTEN": "unix:" + sock}, ForRun); err != nil {
			t.Errorf("Parse with a stale socket at the path = %v, want nil", err)
		}
	})
}

// TestListenUnixErrors: each bad unix: value is one line naming the
// variable or flag, the path, and what to do.
func TestListenUnixErrors(t *testing.T) {
	base := t.TempDir()
	mkdir := func(name string, mode os.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	private, open, group := mkdir("private", 0o700), mkdir("open", 0o755), mkdir("group", 0o770)
	file := filepath.Join(private, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value, want string
	}{
		{"no path", "unix:", "CORK_LISTEN: unix: want an absolute path, e.g. unix:/run/cork/proxy.sock"},
		{"relative", "unix:run/proxy.sock", "CORK_LISTEN: unix:run/proxy.sock: not an absolute path"},
		{"too long", "unix:/" + strings.Repeat("d", maxSocketPath), "bytes; a Unix socket path may have at most"},
		{"no directory", "unix:" + base + "/missing/p.sock", "directory " + base + "/missing does not exist; create it private: mkdir -m 700 " + base + "/missing"},
		{"directory open to others", "unix:" + open + "/p.sock", "directory " + open + " has mode 0755, which lets others reach the socket; chmod 700 " + open},
		{"directory open to the group", "unix:" + group + "/p.sock", "has mode 0770"},
		{"directory is a file", "unix:" + file + "/p.sock", file + " is not a directory"},
		{"path is a file", "unix:" + file, "CORK_LISTEN: unix:" + file + ": exists and is not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, map[string]string{"CORK_LISTEN": tt.value}, ForRun)
			if err == nil || !strings.HasPrefix(err.Error(), "CORK_LISTEN: ") || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(CORK_LISTEN=%q) = %v, want one line naming CORK_LISTEN with %q", tt.value, err, tt.want)
			}
		})
	}
	t.Run("flag", func(t *testing.T) {
		pol := filepath.Join(private, "policy.yaml")
		if err := os.WriteFile(pol, []byte("allow: [a.test]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := parse(t, nil, ForProxy, "--policy-file", pol, "--listen", "unix:rel.sock")
		if err == nil || err.Error() != "--listen: unix:rel.sock: not an absolute path" {
			t.Errorf("Parse(--listen unix:rel.sock) = %v, want it named", err)
		}
	})
	t.Run("admin listener", func(t *testing.T) {
		_, err := parse(t, map[string]string{"CORK_ADMIN_LISTEN": "unix:" + private + "/admin.sock"}, ForRun)
		if err == nil || !strings.HasPrefix(err.Error(), "CORK_ADMIN_LISTEN: ") || !strings.Contains(err.Error(), "a Unix socket is for CORK_LISTEN only") {
			t.Errorf("Parse(CORK_ADMIN_LISTEN=unix:...) = %v, want it refused and named", err)
		}
	})
	t.Run("directory of another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			testenv.Missing(t, "needs root to give a directory away")
		}
		other := mkdir("other", 0o700)
		if err := os.Chown(other, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		_, err := parse(t, map[string]string{"CORK_LISTEN": "unix:" + other + "/p.sock"}, ForRun)
		if err == nil || !strings.Contains(err.Error(), "directory "+other+" belongs to uid 4242, not to this user (uid 0)") {
			t.Errorf("Parse with another user's directory = %v, want it refused", err)
		}
	})
}
