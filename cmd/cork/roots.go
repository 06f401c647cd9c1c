package main

// The sidecar image is FROM scratch: without a system root bundle, Go falls
// back to these compiled-in roots for upstream TLS.
import _ "golang.org/x/crypto/x509roots/fallback"
