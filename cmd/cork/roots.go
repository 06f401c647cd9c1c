package main

import (
	"crypto/x509"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// installFallbackRoots gives Go compiled-in roots for upstream TLS, used
// only where the system has none: the sidecar image is FROM scratch. It is
// what importing x509roots/fallback does, but called from main after
// confine.Main, so that the local sandbox's init (cork re-executed) does
// not spend its start-up parsing them.
func installFallbackRoots() {
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
	x509.SetFallbackRoots(p)
}
