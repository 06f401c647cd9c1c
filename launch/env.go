package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SandboxEnv returns the variables every backend sets in the sandbox so that
// its clients use the proxy and trust the session CA (docs/DESIGN.md, section
// 5). proxyURL is the proxy as the sandbox reaches it; bundle is a PEM file
// of system roots plus the cork CA; caCert is the cork CA alone. Paths are as
// the sandbox sees them.
func SandboxEnv(proxyURL, bundle, caCert string) map[string]string {
	env := map[string]string{
		"NO_PROXY":           "localhost,127.0.0.1,::1",
		"no_proxy":           "localhost,127.0.0.1,::1",
		"NODE_USE_ENV_PROXY": "1",
	}
	for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"} {
		env[k] = proxyURL
		env[strings.ToLower(k)] = proxyURL
	}
	for _, k := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT", "npm_config_cafile"} {
		env[k] = bundle
	}
	for _, k := range []string{"NODE_EXTRA_CA_CERTS", "CODEX_CA_CERTIFICATE"} {
		env[k] = caCert
	}
	return env
}

// systemRootFiles are where Linux distributions keep their root bundle
// (the list crypto/x509 searches).
var systemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// CABundle returns the host's system roots (the first bundle found, or
// none) followed by caPEM, for clients whose CA variable replaces their
// roots rather than adding to them.
func CABundle(caPEM []byte) []byte {
	var b []byte
	for _, f := range systemRootFiles {
		if data, err := os.ReadFile(f); err == nil && len(data) > 0 {
			b = append(b, data...)
			if b[len(b)-1] != '\n' {
				b = append(b, '\n')
			}
			break
		}
	}
	return append(b, caPEM...)
}

// Where a sandbox finds the session CA and the bundle, relative to its home.
const (
	SandboxCAFile     = ".cork/ca.pem"
	SandboxBundleFile = ".cork/ca-bundle.pem"
)

// writeTrust writes the session CA and the bundle of system roots plus
// the CA into home (as the host sees it) and returns their host paths.
func writeTrust(home string, caPEM []byte) (caPath, bundlePath string, err error) {
	caPath = filepath.Join(home, filepath.FromSlash(SandboxCAFile))
	bundlePath = filepath.Join(home, filepath.FromSlash(SandboxBundleFile))
	if err := os.MkdirAll(filepath.Dir(caPath), 0o700); err != nil {
		return "", "", fmt.Errorf("sandbox CA: %w", err)
	}
	if err := os.WriteFile(caPath, caPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("sandbox CA: %w", err)
	}
	if err := os.WriteFile(bundlePath, CABundle(caPEM), 0o644); err != nil {
		return "", "", fmt.Errorf("sandbox CA bundle: %w", err)
	}
	return caPath, bundlePath, nil
}
