// Command fakeapi is an HTTPS API for end-to-end tests. It serves every
// path, prints one JSON line per request to stdout (method, host, path and
// the Authorization header as received, so the test can check the proxy
// injected the real token) and answers with the SHA-256 of that header.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", ":443", "address")
	cert := flag.String("cert", "/certs/api.pem", "TLS certificate (PEM)")
	key := flag.String("key", "/certs/api-key.pem", "TLS key (PEM)")
	flag.Parse()

	enc := json.NewEncoder(os.Stdout)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		enc.Encode(map[string]string{"method": r.Method, "host": r.Host, "path": r.URL.Path, "authorization": auth})
		sum := sha256.Sum256([]byte(auth))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"auth_sha256": hex.EncodeToString(sum[:]), "path": r.URL.Path})
	})
	srv := &http.Server{
		Addr:              *listen,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
	}
	log.Fatal(srv.ListenAndServeTLS(*cert, *key))
}
