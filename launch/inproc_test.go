package launch

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/cork-sh/cork/settings"
)

// TestInProcessSocketNeedsCredential: the in-process proxy asks every
// client for the session credential, on a Unix socket too (the local
// backend's), even when CORK_LISTEN names a socket, which would let
// `cork proxy`'s socket clients in without it.
func TestInProcessSocketNeedsCredential(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, proxySocket)
	spec := &Spec{Proxy: ProxyOptions{Settings: settings.Proxy{Listen: settings.UnixPrefix + filepath.Join(dir, "other.sock")}}}
	if !spec.Proxy.Settings.Config().TrustUnixSockets {
		t.Fatal("settings: a unix: listener should trust its socket's clients; this test checks that the in-process proxy does not")
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	const auth = "cork:session-credential-0123456789"
	ip, err := startInProcess(spec, ln, nil, auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip.Close() })
	for _, tc := range []struct {
		name string
		user *url.Userinfo
		want int
	}{
		{"no credential", nil, http.StatusProxyAuthRequired},
		{"the credential", url.UserPassword("cork", "session-credential-0123456789"), http.StatusForbidden}, // past auth: the empty policy denies
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{
				Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "proxy.invalid", User: tc.user}),
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", sock)
				},
			}}
			resp, err := c.Get("http://example.test/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET through the local socket with %s = %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
		})
	}
}
