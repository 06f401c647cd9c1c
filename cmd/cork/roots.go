package main

import (
	"crypto/x509"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// rootsOnce guards the roots for upstream TLS: the system's, or where
// the system has none (the sidecar image is FROM scratch) the ones
// compiled in from x509roots/fallback. Importing that package would parse
// its 117 certificates in every start (~5 ms of CPU, ~0.5 MiB of heap:
// docs/PERFORMANCE.md, "cork proxy start-up and idle memory"); instead
// one of installFallbackRoots and upstreamRoots runs, once per process.
// A second caller waits for the first to finish, then does nothing.
var rootsOnce sync.Once

// installFallbackRoots parses the compiled-in roots for Go to use if the
// system has none, which Go finds out when it first verifies a server.
// main calls it for every command but `cork proxy`, after confine.Main
// (so that the local sandbox's init, cork re-executed, does not).
func installFallbackRoots() {
	rootsOnce.Do(func() { x509.SetFallbackRoots(fallbackRoots()) })
}

// upstreamRoots loads the system's roots, and the compiled-in ones only
// if there are none. `cork proxy` calls it once it is ready (serveProxy),
// and its listener (rootsListener) holds the first client until it is
// done, so that no upstream is verified before.
func upstreamRoots() {
	rootsOnce.Do(func() {
		sys, err := x509.SystemCertPool()
		if needFallbackRoots(sys, err, os.Getenv("GODEBUG")) {
			x509.SetFallbackRoots(fallbackRoots())
		}
	})
}

// needFallbackRoots reports whether the compiled-in roots would be used:
// the system pool (from x509.SystemCertPool) is missing or empty, or
// GODEBUG sets x509usefallbackroots (then x509.SetFallbackRoots decides).
// Otherwise crypto/x509 would ignore them, and they are not parsed.
func needFallbackRoots(sys *x509.CertPool, err error, godebug string) bool {
	return err != nil || sys == nil || sys.Equal(x509.NewCertPool()) ||
		strings.Contains(godebug, "x509usefallbackroots")
}

// fallbackRoots parses the compiled-in bundle.
func fallbackRoots() *x509.CertPool {
	p := x509.NewCertPool()
	for r := range bundle.Roots() {
		cert, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			panic(err) // the bundle is compiled in and tested upstream
		}
		if r.Constraint == nil {
			p.AddCert(cert)
		} else {
			p.AddCertWithConstraint(cert, r.Constraint)
		}
	}
	return p
}

// rootsListener calls wait before it hands out each accepted connection:
// the proxy verifies an upstream only for a client, so a wait that
// returns once the roots are in place (upstreamRoots: an atomic load once
// done) comes before every upstream TLS handshake.
type rootsListener struct {
	net.Listener
	wait func()
}

func (l rootsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.wait()
	}
	return c, err
}
