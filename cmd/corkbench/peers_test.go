package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

// TestPeers starts each peer from its generated configuration and sends
// one tunnelled HTTPS request and one plain HTTP request through it.
func TestPeers(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	tlsUp := httptest.NewTLSServer(h)
	t.Cleanup(tlsUp.Close)

	for _, tc := range []struct {
		name  string
		dirs  []string
		start func(bin, dir string) (*proxyProc, error)
	}{
		{"squid", []string{"/usr/sbin"}, startSquid},
		{"tinyproxy", []string{"/usr/bin"}, startTinyproxy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, err := lookPeer(tc.name, tc.dirs...)
			if err != nil {
				testenv.Missing(t, "needs %s (apt-get install %s)", tc.name, tc.name)
			}
			if out, err := exec.Command(bin, "-v").Output(); err != nil || len(out) == 0 {
				t.Fatalf("%s -v = %q, %v", bin, out, err)
			}
			// Not t.TempDir: squid's user must traverse every parent (startSquid
			// opens only the run's own directory, which sits in /tmp).
			dir, err := os.MkdirTemp("", "cork-bench-peer-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			p, err := tc.start(bin, dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.stop)
			tr := &http.Transport{
				Proxy:           http.ProxyURL(p.url),
				TLSClientConfig: &tls.Config{RootCAs: tlsUp.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
			}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for _, u := range []string{plain.URL, tlsUp.URL} {
				resp, err := c.Get(u + "/")
				if err != nil {
					t.Fatalf("GET %s through %s: %v\n%s", u, tc.name, err, p.lastLines())
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "ok" {
					t.Errorf("GET %s through %s = %d %q, want 200 \"ok\"", u, tc.name, resp.StatusCode, body)
				}
			}
		})
	}
}
