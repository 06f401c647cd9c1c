package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cork-sh/cork/policy"
)

// newTestCA generates a session CA for hosts or fails the test.
func newTestCA(t testing.TB, hosts ...string) *CA {
	t.Helper()
	ca, err := Generate(hosts)
	if err != nil {
		t.Fatalf("Generate(%q): %v", hosts, err)
	}
	return ca
}

// mintUnchecked signs a leaf for host with the CA's key, bypassing Permits,
// so tests can show that the name constraints alone stop it.
func mintUnchecked(t testing.TB, ca *CA, host string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{a.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// verifyLeaf checks leaf against ca as the only root, for host.
func verifyLeaf(ca *CA, leaf *x509.Certificate, host string) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:     roots,
		DNSName:   host,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func TestGenerateCA(t *testing.T) {
	before := time.Now()
	ca := newTestCA(t, "chatgpt.com")
	c := ca.Certificate()
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA %v valid %v MaxPathLen %d zero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage = %v, want CertSign|CRLSign", c.KeyUsage)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", c.PublicKey)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v: want positive, at most 128 bits", c.SerialNumber)
	}
	if !strings.HasPrefix(c.Subject.CommonName, "cork session CA ") {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if c.NotBefore.After(before.Add(-59*time.Minute)) || c.NotAfter.Before(before.Add(CAValidity-time.Minute)) || c.NotAfter.After(time.Now().Add(CAValidity)) {
		t.Errorf("validity %v .. %v, want now-1h .. now+7d", c.NotBefore, c.NotAfter)
	}
	if !c.PermittedDNSDomainsCritical {
		t.Error("name constraints not critical")
	}
	other := newTestCA(t, "chatgpt.com")
	if other.Certificate().SerialNumber.Cmp(c.SerialNumber) == 0 || other.Certificate().Subject.CommonName == c.Subject.CommonName {
		t.Error("two CAs share a serial or a name")
	}
	if _, err := Generate([]string{"https://x"}); err == nil {
		t.Error("Generate with an invalid host = nil error")
	}
}

func TestCANameConstraints(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		ok    []string
		fail  []string
	}{
		{
			name:  "routes",
			hosts: []string{"chatgpt.com", "*.example.com", "10.1.2.3", "2001:db8::1", "api.test:8443"},
			ok:    []string{"chatgpt.com", "a.example.com", "a.b.example.com", "10.1.2.3", "2001:db8::1", "api.test"},
			fail: []string{"evil.com", "sub.chatgpt.com", "example.com", "badexample.com", "chatgpt.com.evil.net",
				"10.1.2.4", "2001:db8::2", "127.0.0.1", "api.test.evil.net"},
		},
		{
			name:  "exact host and its subdomain",
			hosts: []string{"example.com", "api.example.com"},
			ok:    []string{"example.com", "api.example.com"},
			fail:  []string{"evil.com", "1.2.3.4"},
		},
		{
			name:  "exact and wildcard on one name",
			hosts: []string{"example.com", "*.example.com"},
			ok:    []string{"example.com", "a.example.com", "*.example.com"},
			fail:  []string{"evil.com", "*.com"},
		},
		{
			name:  "wildcard patterns",
			hosts: []string{"chatgpt.com", "*.example.com"},
			ok:    []string{"*.example.com", "*.a.example.com"},
			fail:  []string{"*.chatgpt.com", "*.com", "*.evil.com"},
		},
		{
			name:  "dns only excludes every IP",
			hosts: []string{"chatgpt.com"},
			ok:    []string{"chatgpt.com"},
			fail:  []string{"1.2.3.4", "127.0.0.1", "::1", "2001:db8::1"},
		},
		{
			name:  "ip only permits no real name",
			hosts: []string{"10.1.2.3"},
			ok:    []string{"10.1.2.3"},
			fail:  []string{"chatgpt.com", "localhost", "10.1.2.4", "::1"},
		},
		{
			name:  "no hosts permits nothing",
			hosts: nil,
			fail:  []string{"chatgpt.com", "localhost", "com", "1.2.3.4", "::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t, tt.hosts...)
			// A wildcard pattern is checked through one of its subdomains.
			concrete := func(h string) string {
				if rest, ok := strings.CutPrefix(h, "*."); ok {
					return "x." + rest
				}
				return h
			}
			for _, h := range tt.ok {
				if err := verifyLeaf(ca, mintUnchecked(t, ca, concrete(h)), concrete(h)); err != nil {
					t.Errorf("leaf for routed %s does not verify: %v", h, err)
				}
				if !ca.Permits(h) {
					t.Errorf("Permits(%q) = false, want true", h)
				}
			}
			for _, h := range tt.fail {
				if err := verifyLeaf(ca, mintUnchecked(t, ca, concrete(h)), concrete(h)); err == nil {
					t.Errorf("leaf for unrouted %s verifies", h)
				}
				if ca.Permits(h) {
					t.Errorf("Permits(%q) = true, want false", h)
				}
				if _, err := ca.Leaf(concrete(h)); !errors.Is(err, ErrNotPermitted) {
					t.Errorf("Leaf(%q) error = %v, want ErrNotPermitted", h, err)
				}
			}
		})
	}
}

// caTestPolicy intercepts exact, wildcard, IP, IPv6, port and IDN hosts
// (the policy package's lookup test policy).
const caTestPolicy = `
slots:
  codex: { placeholder: "eyJhbGciOiJub25lIn0.eyJjb3JrIjoiZHVtbXkifQ.x" }
  github: { placeholder: "ghp_cork000000000000000000000000000000" }
  api: { placeholder: "sk-cork-00000000" }
routes:
  - host: chatgpt.com
    slot: codex
  - host: "*.chatgpt.com"
    slot: codex
    header: ChatGPT-Account-Id
    scheme: raw
  - host: github.com
    slot: github
    scheme: basic
  - host: api.github.com
    slot: github
    scheme: token
  - host: "*.github.com"
    slot: github
    header: X-Extra
  - host: "*.api.github.com"
    slot: github
    header: X-Deeper
  - host: api.test:8443
    slot: api
  - host: "[2001:db8::1]:8443"
    slot: api
  - host: 10.1.2.3
    slot: api
  - host: bücher.de
    slot: api
allow:
  - "*.githubusercontent.com"
  - "*.openai.com"
  - example.org:8080
block:
  - host: auth.openai.com
    path: /oauth/token
    reason: refresh on the host
  - host: uploads.github.com
    reason: no uploads
  - host: "*.chatgpt.com"
    path: /backend-api/files
  - host: "*.chatgpt.com"
    path: /
    reason: never matches before the files block
`

func TestCAFromPolicy(t *testing.T) {
	p, err := policy.Parse([]byte(caTestPolicy))
	if err != nil {
		t.Fatalf("policy.Parse: %v", err)
	}
	ca := newTestCA(t, p.InterceptHosts()...)
	for _, h := range p.InterceptHosts() {
		if !ca.Permits(h) {
			t.Errorf("Permits(%q) = false for an intercepted pattern", h)
		}
	}
	for _, h := range []string{"*.githubusercontent.com", "*.openai.com", "*.com", "*.test", "*.10.1.2.3", "*"} {
		if ca.Permits(h) {
			t.Errorf("Permits(%q) = true for a pattern the CA does not cover", h)
		}
	}
	for _, h := range []string{"chatgpt.com", "ab.chatgpt.com", "x.api.github.com", "api.test", "2001:db8::1", "10.1.2.3", "auth.openai.com", "bücher.de"} {
		leaf, err := ca.Leaf(h)
		if err != nil {
			t.Errorf("Leaf(%q): %v", h, err)
			continue
		}
		n, _ := policy.NormalizeHost(h)
		if err := verifyLeaf(ca, leaf.Leaf, n); err != nil {
			t.Errorf("Leaf(%q) does not verify: %v", h, err)
		}
	}
	for _, h := range []string{"raw.githubusercontent.com", "api.openai.com", "evil.com"} {
		if _, err := ca.Leaf(h); !errors.Is(err, ErrNotPermitted) {
			t.Errorf("Leaf(%q) for a tunnelled host: error %v, want ErrNotPermitted", h, err)
		}
	}
}

func TestCALeaf(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com", "*.example.com", "2001:db8::1")
	start := time.Now()
	leaf, err := ca.Leaf("chatgpt.com")
	if err != nil {
		t.Fatal(err)
	}
	c := leaf.Leaf
	if c == nil || len(leaf.Certificate) != 1 || !bytes.Equal(leaf.Certificate[0], c.Raw) {
		t.Fatalf("Leaf: tls.Certificate.Leaf not set or chain wrong")
	}
	if err := verifyLeaf(ca, c, "chatgpt.com"); err != nil {
		t.Errorf("leaf does not chain to the CA: %v", err)
	}
	if !slicesEqual(c.DNSNames, []string{"chatgpt.com"}) || len(c.IPAddresses) != 0 {
		t.Errorf("SANs = %v %v", c.DNSNames, c.IPAddresses)
	}
	key, ok := leaf.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("leaf key = %T, want ECDSA P-256", leaf.PrivateKey)
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		t.Error("leaf key does not match its certificate")
	}
	if key.PublicKey.Equal(ca.key.Public()) {
		t.Error("leaf reuses the CA key")
	}
	if c.IsCA || c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("IsCA %v, serial %v", c.IsCA, c.SerialNumber)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v, want ServerAuth", c.ExtKeyUsage)
	}
	if c.NotAfter.After(ca.Certificate().NotAfter) || c.NotAfter.After(time.Now().Add(LeafValidity)) {
		t.Errorf("NotAfter %v after CA's %v or now+24h", c.NotAfter, ca.Certificate().NotAfter)
	}
	if c.NotBefore.After(start.Add(-59 * time.Minute)) {
		t.Errorf("NotBefore %v, want about now-1h", c.NotBefore)
	}

	// Cached: same pointer, for any spelling of the host.
	for _, h := range []string{"chatgpt.com", "ChatGPT.COM", "chatgpt.com."} {
		if again, err := ca.Leaf(h); err != nil || again != leaf {
			t.Errorf("Leaf(%q) = %p, %v; want cached %p", h, again, err, leaf)
		}
	}

	ipLeaf, err := ca.Leaf("[2001:DB8::1]")
	if err != nil {
		t.Fatal(err)
	}
	if len(ipLeaf.Leaf.IPAddresses) != 1 || !ipLeaf.Leaf.IPAddresses[0].Equal(net.ParseIP("2001:db8::1")) || len(ipLeaf.Leaf.DNSNames) != 0 {
		t.Errorf("IP leaf SANs = %v %v", ipLeaf.Leaf.DNSNames, ipLeaf.Leaf.IPAddresses)
	}
	if err := verifyLeaf(ca, ipLeaf.Leaf, "2001:db8::1"); err != nil {
		t.Errorf("IP leaf does not verify: %v", err)
	}

	sub, err := ca.Leaf("a.b.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyLeaf(ca, sub.Leaf, "a.b.example.com"); err != nil {
		t.Errorf("wildcard-subdomain leaf does not verify: %v", err)
	}
	if sub.PrivateKey.(*ecdsa.PrivateKey).Equal(leaf.PrivateKey) {
		t.Error("two hosts share a leaf key")
	}

	for _, h := range []string{"", "*.example.com", "a b", "evil.com", "example.com"} {
		if _, err := ca.Leaf(h); err == nil {
			t.Errorf("Leaf(%q) = nil error", h)
		}
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestCALeafTLSHandshake(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com")
	leaf, err := ca.Leaf("chatgpt.com")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	cConn, sConn := net.Pipe()
	defer cConn.Close()
	defer sConn.Close()
	errc := make(chan error, 1)
	go func() {
		srv := tls.Server(sConn, &tls.Config{Certificates: []tls.Certificate{*leaf}})
		errc <- srv.Handshake()
	}()
	cli := tls.Client(cConn, &tls.Config{RootCAs: roots, ServerName: "chatgpt.com"})
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestCATwoCAsNeverShareLeafKey(t *testing.T) {
	a, b := newTestCA(t, "chatgpt.com"), newTestCA(t, "chatgpt.com")
	la, err := a.Leaf("chatgpt.com")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Leaf("chatgpt.com")
	if err != nil {
		t.Fatal(err)
	}
	if la.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(lb.Leaf.PublicKey) {
		t.Error("two CAs minted the same leaf key")
	}
	if err := verifyLeaf(a, lb.Leaf, "chatgpt.com"); err == nil {
		t.Error("a leaf of CA b verifies under CA a")
	}
}

func TestCALeafSingleflight(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com")
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	leaves := make([]*tls.Certificate, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			leaves[i], errs[i] = ca.Leaf("chatgpt.com")
		})
	}
	close(start)
	wg.Wait()
	// One pointer for all: a second mint would be another *tls.Certificate.
	for i := range n {
		if errs[i] != nil || leaves[i] != leaves[0] {
			t.Fatalf("call %d: %p, %v; want %p", i, leaves[i], errs[i], leaves[0])
		}
	}
}

func TestCALeafRenewal(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com")
	first, err := ca.Leaf("chatgpt.com")
	if err != nil {
		t.Fatal(err)
	}
	// Within LeafRenewBefore of the leaf's NotAfter: re-minted.
	ca.now = func() time.Time { return first.Leaf.NotAfter.Add(-30 * time.Minute) }
	second, err := ca.Leaf("chatgpt.com")
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("leaf near expiry was served from the cache")
	}
	if again, _ := ca.Leaf("chatgpt.com"); again != second {
		t.Error("renewed leaf not cached")
	}
	// Past the CA's NotAfter nothing is minted.
	ca.now = func() time.Time { return ca.cert.NotAfter.Add(time.Minute) }
	if _, err := ca.Leaf("chatgpt.com"); err == nil || !strings.Contains(err.Error(), "CA expired") {
		t.Errorf("Leaf after CA expiry: %v, want CA expired", err)
	}
}

func TestCALeafCappedByShortLivedCA(t *testing.T) {
	certPEM, keyPEM := makeCAPEM(t, ecdsaKey(t), "EC", time.Now().Add(30*time.Minute))
	ca, err := Load(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Leaf.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("leaf NotAfter %v, want the CA's %v", a.Leaf.NotAfter, ca.Certificate().NotAfter)
	}
	// It cannot be renewed into a longer one, so it stays cached.
	if b, _ := ca.Leaf("example.com"); b != a {
		t.Error("leaf capped at the CA's NotAfter was re-minted")
	}
}

func TestCACertPEM(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com")
	p := ca.CertPEM()
	if bytes.Contains(p, []byte("PRIVATE KEY")) {
		t.Fatal("CertPEM contains a private key")
	}
	block, rest := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("CertPEM is not one CERTIFICATE block")
	}
	if !bytes.Equal(block.Bytes, ca.Certificate().Raw) {
		t.Error("CertPEM is not the CA certificate")
	}
	p[0] = 'X'
	if ca.CertPEM()[0] == 'X' {
		t.Error("CertPEM returns the CA's own buffer")
	}
}

func ecdsaKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCAPEM self-signs an unconstrained CA with key and encodes the key in
// the given form: "PKCS8", "EC" (SEC1, after an EC PARAMETERS block as
// openssl writes it) or "RSA" (PKCS#1).
func makeCAPEM(t testing.TB, key crypto.Signer, form string, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	switch form {
	case "PKCS8":
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	case "EC":
		b, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM = append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})...)
	case "RSA":
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))})
	default:
		t.Fatalf("unknown key form %q", form)
	}
	return certPEM, keyPEM
}

func TestLoadCA(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa := rsaKey(t)
	tests := []struct {
		name string
		key  crypto.Signer
		form string
	}{
		{"ecdsa pkcs8", ecdsaKey(t), "PKCS8"},
		{"ecdsa sec1", ecdsaKey(t), "EC"},
		{"rsa pkcs1", rsa, "RSA"},
		{"rsa pkcs8", rsa, "PKCS8"},
		{"ed25519 pkcs8", edKey, "PKCS8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM := makeCAPEM(t, tt.key, tt.form, time.Now().Add(24*time.Hour))
			ca, err := Load(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !ca.Permits("anything.example") || !ca.Permits("10.0.0.1") {
				t.Error("unconstrained loaded CA does not permit everything")
			}
			leaf, err := ca.Leaf("anything.example")
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyLeaf(ca, leaf.Leaf, "anything.example"); err != nil {
				t.Errorf("leaf does not verify: %v", err)
			}
			if _, ok := leaf.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("leaf key %T, want ECDSA whatever the CA key", leaf.PrivateKey)
			}
		})
	}
}

func TestLoadCARoundTripGenerated(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := ca.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(certPath)
	keyPEM, _ := os.ReadFile(keyPath)
	loaded, err := Load(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// The constraints travel with the certificate.
	if loaded.Permits("evil.com") || !loaded.Permits("chatgpt.com") {
		t.Error("loaded CA lost its name constraints")
	}
}

func TestLoadCAErrors(t *testing.T) {
	key := ecdsaKey(t)
	goodCert, goodKey := makeCAPEM(t, key, "PKCS8", time.Now().Add(time.Hour))
	_, otherKey := makeCAPEM(t, ecdsaKey(t), "PKCS8", time.Now().Add(time.Hour))
	expiredCert, expiredKey := makeCAPEM(t, key, "PKCS8", time.Now().Add(-time.Minute))

	// A leaf (not a CA) with its own key.
	leafKey := ecdsaKey(t)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
	}, &x509.Certificate{SerialNumber: big.NewInt(7)}, leafKey.Public(), leafKey)
	if err != nil {
		t.Fatal(err)
	}
	leafCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	leafKeyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	leafKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: leafKeyDER})

	// A corrupt key whose bytes must not be echoed.
	secret := bytes.Repeat([]byte{0xAB}, 48)
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: secret})

	tests := []struct {
		name         string
		cert, keyPEM []byte
		want         string
	}{
		{"empty cert", nil, goodKey, "CA certificate: no PEM block"},
		{"garbage cert", []byte("hello"), goodKey, "CA certificate: no PEM block"},
		{"key as cert", goodKey, goodKey, "CA certificate: holds a private key"},
		{"corrupt cert", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), goodKey, "CA certificate: x509:"},
		{"not a CA", leafCert, leafKeyPEM, "CA certificate: not a CA"},
		{"expired", expiredCert, expiredKey, "CA certificate: expired at"},
		{"empty key", goodCert, nil, "CA key: no PEM private key block"},
		{"cert as key", goodCert, goodCert, "CA key: no PEM private key block"},
		{"mismatched key", goodCert, otherKey, "CA key: does not match certificate"},
		{"corrupt key", goodCert, corrupt, "CA key: invalid PRIVATE KEY"},
		{"encrypted key", goodCert, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: secret}), "CA key: encrypted"},
		{"unknown key type", goodCert, pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: secret}), "CA key: unsupported PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.cert, tt.keyPEM)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Load() = %v, want %q", err, tt.want)
			}
			msg := err.Error()
			for _, leak := range []string{base64.StdEncoding.EncodeToString(secret[:12]), "abababab", "ABABABAB", string(secret[:4])} {
				if strings.Contains(msg, leak) {
					t.Errorf("Load() error %q leaks key bytes", msg)
				}
			}
		})
	}
}

func TestCAWriteFiles(t *testing.T) {
	ca := newTestCA(t, "chatgpt.com")

	t.Run("modes", func(t *testing.T) {
		dir := t.TempDir()
		certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
		if err := ca.WriteFiles(certPath, keyPath); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s mode %v, want %v", filepath.Base(path), fi.Mode().Perm(), want)
			}
		}
		certPEM, _ := os.ReadFile(certPath)
		if bytes.Contains(certPEM, []byte("PRIVATE KEY")) || !bytes.Equal(certPEM, ca.CertPEM()) {
			t.Error("certificate file is not exactly CertPEM")
		}
	})
	t.Run("refuses to overwrite cert", func(t *testing.T) {
		dir := t.TempDir()
		certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
		if err := os.WriteFile(certPath, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ca.WriteFiles(certPath, keyPath); err == nil || !errors.Is(err, os.ErrExist) {
			t.Fatalf("WriteFiles over an existing cert: %v, want ErrExist", err)
		}
		if b, _ := os.ReadFile(certPath); string(b) != "keep" {
			t.Error("existing cert was changed")
		}
		if _, err := os.Stat(keyPath); !errors.Is(err, os.ErrNotExist) {
			t.Error("key file left behind after a failed write")
		}
	})
	t.Run("refuses to overwrite key", func(t *testing.T) {
		dir := t.TempDir()
		certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
		if err := os.WriteFile(keyPath, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := ca.WriteFiles(certPath, keyPath); err == nil {
			t.Fatal("WriteFiles over an existing key = nil error")
		}
		if b, _ := os.ReadFile(keyPath); string(b) != "keep" {
			t.Error("existing key was changed")
		}
		if _, err := os.Stat(certPath); !errors.Is(err, os.ErrNotExist) {
			t.Error("cert file written although the key failed")
		}
	})
	t.Run("same path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ca.pem")
		if err := ca.WriteFiles(path, path); err == nil {
			t.Fatal("WriteFiles(p, p) = nil error")
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Error("partial file left behind")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		keyPath := filepath.Join(dir, "ca.key")
		if err := ca.WriteFiles(filepath.Join(dir, "nope", "ca.pem"), keyPath); err == nil {
			t.Fatal("WriteFiles into a missing directory = nil error")
		}
		if _, err := os.Stat(keyPath); !errors.Is(err, os.ErrNotExist) {
			t.Error("key file left behind")
		}
	})
}

func BenchmarkLeafCacheHit(b *testing.B) {
	ca := newTestCA(b, "chatgpt.com")
	if _, err := ca.Leaf("chatgpt.com"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.Leaf("chatgpt.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeafMint(b *testing.B) {
	ca := newTestCA(b, "chatgpt.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.mint("chatgpt.com"); err != nil {
			b.Fatal(err)
		}
	}
}
