package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// APIHost is the fake LLM API's name; the proxy's resolve override points
// it at the in-process server.
const APIHost = "api.llm.test"

// answer is streamed one word per server-sent event.
var answer = []string{"Hello", " from", " behind", " cork:", " your", " token", " never", " entered", " the", " sandbox."}

// fakeAPI is an HTTPS server with its own CA that accepts one bearer token
// and streams a chat answer as server-sent events.
type fakeAPI struct {
	srv    *http.Server
	ln     net.Listener
	roots  *x509.CertPool
	expect string

	mu       sync.Mutex
	gotAuth  []string
	streamed int
}

func startFakeAPI(expect string) (*fakeAPI, error) {
	cert, roots, err := selfSigned(APIHost)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &fakeAPI{ln: ln, roots: roots, expect: expect}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat", a.chat)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	go a.srv.Serve(tl)
	return a, nil
}

func (a *fakeAPI) addr() string { return a.ln.Addr().String() }

func (a *fakeAPI) close() { a.srv.Close() }

func (a *fakeAPI) chat(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	a.mu.Lock()
	a.gotAuth = append(a.gotAuth, auth)
	a.mu.Unlock()
	if auth != "Bearer "+a.expect {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api.llm.test"`)
		http.Error(w, `{"error":"invalid api key"}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl := w.(http.Flusher)
	for i, word := range answer {
		if i > 0 {
			time.Sleep(40 * time.Millisecond)
		}
		fmt.Fprintf(w, "event: delta\ndata: %s\n\n", word)
		fl.Flush()
		a.mu.Lock()
		a.streamed++
		a.mu.Unlock()
	}
	fmt.Fprint(w, "event: done\ndata: [DONE]\n\n")
	fl.Flush()
}

// selfSigned makes a CA and a leaf for host signed by it.
func selfSigned(host string) (tls.Certificate, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cork demo upstream CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool, nil
}
