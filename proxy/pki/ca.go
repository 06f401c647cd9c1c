package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/cork-sh/cork/policy"
)

// CA and leaf parameters.
const (
	CAValidity      = 7 * 24 * time.Hour // a generated session CA's lifetime
	LeafValidity    = 24 * time.Hour     // a leaf's lifetime (capped by the CA's)
	LeafRenewBefore = time.Hour          // cached leaves this close to expiry are re-minted
	LeafCacheSize   = 1024               // leaves kept per CA
	certBackdate    = time.Hour          // NotBefore in the past, for clock skew
)

// ErrNotPermitted is returned by Leaf for a host the CA's name constraints
// do not allow.
var ErrNotPermitted = errors.New("host not permitted by the CA's name constraints")

// CA is a session certificate authority that signs leaf certificates for
// intercepted hosts. Its private key never leaves the process except
// through WriteFiles (key file mode 0600). Safe for concurrent use; the
// zero value is not usable: get one from Generate or Load.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer

	cache  *lru.Cache[string, *tls.Certificate]
	flight singleflight.Group
	now    func() time.Time // the CA's clock for minting and renewal: time.Now
}

// Generate makes an ephemeral ECDSA P-256 CA whose X.509 name constraints
// permit only the given host patterns (as from Policy.InterceptHosts: exact
// hosts, "*.suffix", IP literals; a port is ignored). With no hosts it
// permits nothing.
//
// The constraints are marked critical and say exactly what the patterns
// mean: "example.com" permits example.com (and excludes its subdomains
// unless another pattern needs them), "*.example.com" permits the
// subdomains only (".example.com"), IPs get /32 or /128 ranges. Without IP
// patterns every IP is excluded, and without DNS patterns only the reserved
// name cork.invalid is permitted, because an empty permitted list would
// mean "anything".
func Generate(hosts []string) (*CA, error) {
	tmpl, err := caTemplate(hosts)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return newCA(cert, key)
}

// noHostsReservedName is the only name a CA for a policy without intercepted
// hosts permits: RFC 2606, it never resolves.
const noHostsReservedName = "cork.invalid"

func caTemplate(hosts []string) (*x509.Certificate, error) {
	var pats []policy.HostPattern
	var errs []error
	for _, h := range hosts {
		p, err := policy.ParseHostPattern(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pats = append(pats, p)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("CA name constraints: %w", errors.Join(errs...))
	}

	var permitDNS, excludeDNS []string
	var permitIP []*net.IPNet
	for _, p := range pats {
		switch {
		case p.IP().IsValid():
			bits := p.IP().BitLen()
			permitIP = append(permitIP, &net.IPNet{IP: net.IP(p.IP().AsSlice()), Mask: net.CIDRMask(bits, bits)})
		case p.Wildcard():
			permitDNS = appendUnique(permitDNS, "."+p.Host())
		default:
			permitDNS = appendUnique(permitDNS, p.Host())
			// "example.com" as a constraint also permits its subdomains;
			// exclude them unless another pattern lies below it.
			below := false
			for _, q := range pats {
				if !q.IP().IsValid() && policy.IsSubdomain(q.Host(), p.Host()) || q.Wildcard() && q.Host() == p.Host() {
					below = true
				}
			}
			if !below {
				excludeDNS = appendUnique(excludeDNS, "."+p.Host())
			}
		}
	}
	var excludeIP []*net.IPNet
	if len(permitIP) == 0 {
		excludeIP = []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		}
	}
	if len(permitDNS) == 0 {
		permitDNS = []string{noHostsReservedName}
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("CA id: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "cork session CA " + hex.EncodeToString(id),
			Organization: []string{"cork"},
		},
		NotBefore:                   now.Add(-certBackdate),
		NotAfter:                    now.Add(CAValidity),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permitDNS,
		ExcludedDNSDomains:          excludeDNS,
		PermittedIPRanges:           permitIP,
		ExcludedIPRanges:            excludeIP,
	}, nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func newCA(cert *x509.Certificate, key crypto.Signer) (*CA, error) {
	cache, err := lru.New[string, *tls.Certificate](LeafCacheSize)
	if err != nil {
		return nil, fmt.Errorf("leaf cache: %w", err)
	}
	return &CA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		key:     key,
		cache:   cache,
		now:     time.Now,
	}, nil
}

// Load parses a PEM certificate and PEM private key (ECDSA, RSA or
// Ed25519; PKCS#8, SEC1 or PKCS#1). Errors say which input is wrong and
// never include key material. The certificate must be a CA, currently
// valid, and match the key.
func Load(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCACert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := parseCAKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("CA key: does not match certificate")
	}
	return newCA(cert, key)
}

func parseCACert(data []byte) (*x509.Certificate, error) {
	var block *pem.Block
	for rest, n := data, 0; ; n++ {
		block, rest = pem.Decode(rest)
		switch {
		case block == nil && n == 0:
			return nil, errors.New("no PEM block")
		case block == nil:
			return nil, errors.New("no CERTIFICATE PEM block")
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, errors.New("holds a private key, not a certificate")
		}
		if block.Type == "CERTIFICATE" {
			break
		}
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, errors.New("not a CA (basic constraints)")
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, errors.New("key usage does not allow certificate signing")
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("unsupported public key type %s", cert.PublicKeyAlgorithm)
	}
	return cert, nil
}

// parseCAKey finds the first private-key block (skipping, for example, the
// "EC PARAMETERS" block that `openssl ecparam -genkey` writes first). Parse
// errors are replaced by fixed messages so no key bytes are echoed.
func parseCAKey(data []byte) (crypto.Signer, error) {
	var block *pem.Block
	for rest := data; ; {
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key block")
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			break
		}
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return nil, errors.New("encrypted keys are not supported")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("invalid %s", block.Type)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	default:
		return nil, errors.New("unsupported key type")
	}
}

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM returns the CA certificate in PEM form (never the key). The slice
// is a copy.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// Permits reports whether the CA's name constraints allow a leaf for host
// (always true for a loaded CA without constraints). It follows crypto/x509:
// a constraint "example.com" covers the name and its subdomains,
// ".example.com" the subdomains only. host may also be a wildcard pattern
// as listed by Policy.InterceptHosts ("*.example.com"): then Permits
// reports whether a leaf for every subdomain would be allowed.
func (c *CA) Permits(host string) bool {
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		s, err := policy.NormalizeHost(suffix)
		if err != nil || policy.LooksNumeric(s) || strings.Contains(s, ":") {
			return false
		}
		return c.permitsSubdomains(s)
	}
	h, err := policy.NormalizeHost(host)
	if err != nil {
		return false
	}
	if a, err := netip.ParseAddr(h); err == nil {
		ip := net.IP(a.AsSlice())
		if len(c.cert.PermittedIPRanges) > 0 && !anyIPNet(c.cert.PermittedIPRanges, ip) {
			return false
		}
		return !anyIPNet(c.cert.ExcludedIPRanges, ip)
	}
	if len(c.cert.PermittedDNSDomains) > 0 && !anyDomain(c.cert.PermittedDNSDomains, h) {
		return false
	}
	return !anyDomain(c.cert.ExcludedDNSDomains, h)
}

// permitsSubdomains reports whether every proper subdomain of s passes the
// DNS constraints: some permitted subtree holds all of them and no excluded
// subtree touches any.
func (c *CA) permitsSubdomains(s string) bool {
	if len(c.cert.PermittedDNSDomains) > 0 {
		ok := false
		for _, p := range c.cert.PermittedDNSDomains {
			d := strings.ToLower(strings.TrimPrefix(p, "."))
			if d == "" || d == s || policy.IsSubdomain(s, d) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, e := range c.cert.ExcludedDNSDomains {
		d := strings.ToLower(strings.TrimPrefix(e, "."))
		if d == "" || d == s || policy.IsSubdomain(s, d) || policy.IsSubdomain(d, s) {
			return false
		}
	}
	return true
}

func anyIPNet(nets []*net.IPNet, ip net.IP) bool {
	for _, n := range nets {
		if len(n.IP) == len(ip) && n.Contains(ip) {
			return true
		}
	}
	return false
}

func anyDomain(constraints []string, h string) bool {
	for _, c := range constraints {
		c = strings.ToLower(c)
		switch {
		case c == "":
			return true
		case c[0] == '.':
			if policy.IsSubdomain(h, c[1:]) {
				return true
			}
		case h == c || policy.IsSubdomain(h, c):
			return true
		}
	}
	return false
}

// Leaf returns a TLS certificate for host signed by the CA: a fresh ECDSA
// P-256 key from crypto/rand, a random 128-bit serial, NotAfter no later
// than the CA's, cached per host (LRU, singleflight so concurrent first
// requests mint one leaf). A host the CA does not permit gets an error
// wrapping ErrNotPermitted. The returned certificate is shared: do not
// modify it.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	h, err := policy.NormalizeHost(host)
	if err != nil {
		return nil, fmt.Errorf("leaf for %q: %w", host, err)
	}
	if leaf, ok := c.cached(h); ok {
		return leaf, nil
	}
	if !c.Permits(h) {
		return nil, fmt.Errorf("leaf for %s: %w", h, ErrNotPermitted)
	}
	v, err, _ := c.flight.Do(h, func() (any, error) {
		if leaf, ok := c.cached(h); ok {
			return leaf, nil
		}
		leaf, err := c.mint(h)
		if err != nil {
			return nil, err
		}
		c.cache.Add(h, leaf)
		return leaf, nil
	})
	if err != nil {
		return nil, fmt.Errorf("leaf for %s: %w", h, err)
	}
	return v.(*tls.Certificate), nil
}

// cached returns a cached leaf that is not about to expire.
func (c *CA) cached(h string) (*tls.Certificate, bool) {
	leaf, ok := c.cache.Get(h)
	if !ok {
		return nil, false
	}
	now := c.now()
	notAfter := leaf.Leaf.NotAfter
	// A leaf capped at the CA's NotAfter cannot be renewed into a longer
	// one: keep it until it actually expires.
	renew := now.Add(LeafRenewBefore).After(notAfter) && notAfter.Before(c.cert.NotAfter)
	if renew || now.After(notAfter) {
		c.cache.Remove(h)
		return nil, false
	}
	return leaf, true
}

func (c *CA) mint(h string) (*tls.Certificate, error) {
	now := c.now()
	if !now.Before(c.cert.NotAfter) {
		return nil, fmt.Errorf("CA expired at %s", c.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	// Leaf keys are never derived from the CA key (goproxy v1.9.3 did).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	notBefore := now.Add(-certBackdate)
	if notBefore.Before(c.cert.NotBefore) {
		notBefore = c.cert.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: h, Organization: []string{"cork"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if a, err := netip.ParseAddr(h); err == nil {
		tmpl.IPAddresses = []net.IP{net.IP(a.AsSlice())}
	} else {
		tmpl.DNSNames = []string{h}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, nil
}

// WriteFiles writes the certificate (0644) and key (0600, PKCS#8) as PEM,
// for `cork ca`. It refuses to overwrite existing files, and removes what
// it created if anything fails.
func (c *CA) WriteFiles(certPath, keyPath string) error {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	defer clear(keyPEM)
	if err := writeNewFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if err := writeNewFile(certPath, c.certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("CA certificate: %w", err)
	}
	return nil
}

// writeNewFile creates path (failing if it exists) with exactly mode, and
// removes it again if writing fails.
func writeNewFile(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Chmod(mode); err != nil { // beat the umask
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}
