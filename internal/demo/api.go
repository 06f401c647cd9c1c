package demo

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cork-sh/cork/internal/localca"
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
	ca, err := localca.New("cork demo upstream CA")
	if err != nil {
		return nil, err
	}
	tlsConf, err := ca.ServerConfig(APIHost)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &fakeAPI{ln: ln, roots: ca.Pool(), expect: expect}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat", a.chat)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	tl := tls.NewListener(ln, tlsConf)
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
		// Counted before it is sent: the agent may exit as soon as it
		// has the last word, and the demo then reads the count.
		a.mu.Lock()
		a.streamed++
		a.mu.Unlock()
		fl.Flush()
	}
	fmt.Fprint(w, "event: done\ndata: [DONE]\n\n")
	fl.Flush()
}
