package main

import (
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/proxy/pki"
)

func TestNeedFallbackRoots(t *testing.T) {
	some := x509.NewCertPool()
	some.AddCert(anyRoot(t))
	tests := []struct {
		name    string
		sys     *x509.CertPool
		err     error
		godebug string
		want    bool
	}{
		{"system roots", some, nil, "", false},
		{"no system pool", nil, errors.New("no roots"), "", true},
		{"nil pool", nil, nil, "", true},
		{"empty pool", x509.NewCertPool(), nil, "", true},
		{"forced by GODEBUG", some, nil, "http2debug=1,x509usefallbackroots=1", true},
		{"other GODEBUG", some, nil, "http2debug=1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := needFallbackRoots(tt.sys, tt.err, tt.godebug); got != tt.want {
				t.Errorf("needFallbackRoots(%s) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// TestFallbackRoots: every unconstrained certificate of the bundle
// verifies against the pool built from it.
func TestFallbackRoots(t *testing.T) {
	pool := fallbackRoots()
	n := 0
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		cert, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		// Within its validity: the bundle may hold a root that expires before the test runs.
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: cert.NotBefore.Add(time.Hour)}); err != nil {
			t.Errorf("fallback root %q: Verify = %v, want it trusted", cert.Subject, err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("bundle.Roots() has no unconstrained root")
	}
}

// anyRoot returns the first unconstrained root of the bundle.
func anyRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			cert, err := x509.ParseCertificate(r.Certificate)
			if err != nil {
				t.Fatal(err)
			}
			return cert
		}
	}
	t.Fatal("bundle.Roots() has no unconstrained root")
	return nil
}

// TestRootsListenerWaits: no connection is handed out before wait has
// returned, and wait is asked again for every connection.
func TestRootsListenerWaits(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	release := make(chan struct{})
	var waits atomic.Int32
	ln := rootsListener{inner, func() {
		waits.Add(1)
		<-release
	}}
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	select {
	case <-accepted:
		t.Fatal("Accept returned a connection before wait returned")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	for range 2 {
		select {
		case c := <-accepted:
			c.Close()
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return after wait returned")
		}
	}
	if got := waits.Load(); got != 2 {
		t.Errorf("wait called %d times for 2 connections, want 2", got)
	}
}

// TestProxyUpstreamRootsAfterReady: `cork proxy` loads the system's roots
// after it is ready, and the first request, sent the moment the tokens
// are applied, is verified against them (SSL_CERT_FILE holds the
// upstream's CA, the only system root): it passes. With another CA
// there, or none at all (then the compiled-in roots are used), the
// upstream is refused: loading later never means not verifying.
func TestProxyUpstreamRootsAfterReady(t *testing.T) {
	t.Parallel()
	u := startHardUpstream(t)
	other, err := pki.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherFile, other.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, certFile string
		want           int
	}{
		{"upstream CA", u.caFile, http.StatusOK},
		{"another CA", otherFile, http.StatusBadGateway},
		// No system roots: the compiled-in ones are installed after
		// the system's were loaded (no panic), and do not hold the
		// upstream's CA.
		{"no system roots", filepath.Join(t.TempDir(), "absent.pem"), http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startHardProxy(t, u, hardeningPolicy,
				"CORK_UPSTREAM_CA_FILE=", // the system roots alone
				"SSL_CERT_FILE="+tc.certFile,
				"SSL_CERT_DIR="+t.TempDir(), // empty: not the host's /etc/ssl/certs
			)
			resp, _ := do(t, p.client(t), newReq(t, "GET", "https://echo.test/json", nil, "Bearer "+hardPH))
			if resp.StatusCode != tc.want {
				t.Fatalf("first GET = %d (%s), want %d", resp.StatusCode, resp.Header.Get(proxy.HeaderDenyReason), tc.want)
			}
			if tc.want != http.StatusOK {
				if got := resp.Header.Get(proxy.HeaderDenyReason); got != proxy.ReasonUpstreamTLS {
					t.Errorf("%s = %q, want %q", proxy.HeaderDenyReason, got, proxy.ReasonUpstreamTLS)
				}
			}
		})
	}
}
