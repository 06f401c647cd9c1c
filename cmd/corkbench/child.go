package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/rs/zerolog"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy"
	"github.com/cork-sh/cork/resolve"
)

// The benchmark re-executes itself for the proxies that are not the cork
// binary, so every proxy is a process of its own (its own GC, its own
// scheduler, RSS and CPU readable from /proc) and competes with the load
// generator the same way:
//
//	-child baseline     raw goproxy MITM that sets Authorization
//	-child cork-inproc  proxy.New wired like `cork proxy`, with -cpuprofile
//
// A child prints "listening ADDR" on stdout and runs until its stdin closes.

// childConfig is what a child needs, passed as flags.
type childConfig struct {
	dir        string // scratch directory shared with the parent
	resolve    string // host:port=addr:port,...
	cpuProfile string
	memProfile string
	logLevel   string
}

func runChild(mode string, cc childConfig) error {
	roots, err := os.ReadFile(filepath.Join(cc.dir, "upstream-ca.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) {
		return errors.New("upstream CA: no certificate")
	}
	res, err := parseResolve(cc.resolve)
	if err != nil {
		return err
	}
	var h http.Handler
	var closer func()
	switch mode {
	case "baseline":
		h, err = newBaseline(cc.dir, pool, res)
	case "cork-inproc":
		var p *proxy.Proxy
		p, err = newInprocCork(cc, pool, res)
		if p != nil {
			h, closer = p, func() { p.Close() }
		}
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		return err
	}
	if cc.cpuProfile != "" {
		f, err := os.Create(cc.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// Like `cork proxy`: no server timeouts but the header one.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("listening %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin) // the parent closes stdin to stop us
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	if closer != nil {
		closer()
	}
	if cc.memProfile != "" {
		f, err := os.Create(cc.memProfile)
		if err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	return nil
}

func parseResolve(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, e := range strings.Split(s, ",") {
		if e == "" {
			continue
		}
		from, to, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("resolve entry %q: want host:port=addr:port", e)
		}
		m[from] = to
	}
	return m, nil
}

func formatResolve(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// corkPolicy routes bench.test (bearer, swapped in place) and allows
// tunnel.test; down.test is routed too (the leak test points it at a
// closed port).
const corkPolicy = `slots:
  ` + slotName + `: { placeholder: "` + placeholder + `" }
routes:
  - host: ` + hostMITM + `
    slot: ` + slotName + `
    scheme: bearer
  - host: ` + hostDown + `
    slot: ` + slotName + `
allow:
  - ` + hostTunnel + `
`

// newInprocCork builds the proxy the way cmd/cork does (same logger setup,
// same defaults), so its profile is the binary's profile.
func newInprocCork(cc childConfig, roots *x509.CertPool, res map[string]string) (*proxy.Proxy, error) {
	pol, err := policy.Parse([]byte(corkPolicy))
	if err != nil {
		return nil, err
	}
	zerolog.MessageFieldName = "msg"
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	level, err := zerolog.ParseLevel(cc.logLevel)
	if err != nil {
		return nil, err
	}
	logger := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()
	p, err := proxy.New(proxy.Config{
		Policy:          pol,
		Tokens:          resolve.Tokens{slotName: resolve.NewSecret(realToken)},
		Logger:          &logger,
		UpstreamRootCAs: roots,
		AllowPrivate:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolve:         res,
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cc.dir, "inproc-ca.pem"), p.CACertPEM(), 0o644); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// newBaseline is the raw goproxy MITM proxy that cork is compared with:
// what a team would write in an afternoon. It intercepts bench.test with its
// own CA (goproxy.TLSConfigFromCA plus a certificate store, so leaves are
// cached), sets Authorization with a DoFunc, tunnels every other CONNECT
// and forwards plain HTTP. Its upstream Transport keeps 64 idle connections
// per host like cork's (goproxy's default Transport keeps 2, which would
// measure connection churn instead of proxying). No policy, no SSRF guard,
// no audit log, no metrics.
func newBaseline(dir string, roots *x509.CertPool, res map[string]string) (http.Handler, error) {
	ca, caPEM, err := newBaselineCA()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "baseline-ca.pem"), caPEM, 0o644); err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = nil
	gp.CertStore = &certStore{m: map[string]*tls.Certificate{}}
	gp.KeepAcceptEncoding = true
	gp.Tr = &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := res[addr]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(ca)}
	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if h, _, _ := net.SplitHostPort(host); h == hostMITM {
			return mitm, host
		}
		return goproxy.OkConnect, host
	})
	gp.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		if r.URL.Scheme == "https" && r.URL.Hostname() == hostMITM {
			r.Header.Set("Authorization", "Bearer "+realToken)
		}
		return r, nil
	})
	return gp, nil
}

// certStore is the leaf cache goproxy's README recommends.
type certStore struct {
	mu sync.Mutex
	m  map[string]*tls.Certificate
}

func (s *certStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.m[host]; ok {
		return c, nil
	}
	c, err := gen()
	if err != nil {
		return nil, err
	}
	s.m[host] = c
	return c, nil
}

// newBaselineCA makes an ECDSA P-256 CA for the baseline (never goproxy's
// built-in one, whose key is public).
func newBaselineCA() (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "cork bench baseline CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pemBytes, nil
}

// readListening waits for the child's "listening ADDR" line.
func readListening(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			return addr, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", io.ErrUnexpectedEOF
}
