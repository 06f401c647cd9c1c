package proxy

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// ReasonProxyAuth is the deny reason for a client without the proxy's
// session credential (Config.ClientAuth): 407.
const ReasonProxyAuth = "proxy_auth_required"

// authorized reports whether r carries the session credential. Only
// requests to the proxy itself (CONNECT, plain HTTP) are checked; requests
// inside an intercepted connection were authorised with its CONNECT
// (docs/DESIGN.md, trap 10). With Config.TrustUnixSockets, ServeHTTP does
// not ask clients on a Unix socket (isSocketClient).
func (p *Proxy) authorized(r *http.Request) bool {
	got := r.Header.Get("Proxy-Authorization")
	if len(got) > 6 && strings.EqualFold(got[:6], "basic ") {
		got = "Basic " + got[6:]
	}
	return subtle.ConstantTimeCompare([]byte(got), p.clientAuth) == 1
}

// refuseClient answers 407 and logs the refusal.
func (p *Proxy) refuseClient(w http.ResponseWriter, r *http.Request, st *connState) {
	host, port, _ := hostPortOf(r.Host, 0) // for the log line only
	path := cleanPath(r.URL)
	what := r.Method + " " + r.Host
	if r.Method != http.MethodConnect {
		what = r.Method + " " + r.URL.Scheme + "://" + r.Host + path
	}
	w.Header().Set("Proxy-Authenticate", `Basic realm="cork"`)
	w.Header().Set("Connection", "close")
	d := deny{reason: ReasonProxyAuth, what: what}
	writeDeny(w, d)
	p.audit(&auditEntry{
		decision: d.decision(), host: host, port: port, method: r.Method,
		path: path, status: d.status(), reason: d.reason, connID: st.id,
	})
}
