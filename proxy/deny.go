package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// HeaderDenyReason carries the stable reason code of every response cork
// itself produces (denials and upstream failures).
const HeaderDenyReason = "X-Cork-Deny-Reason"

// Reason codes, the values of HeaderDenyReason.
const (
	ReasonNotAllowed          = "not_allowed"          // 403: host:port not in the policy
	ReasonBlocked             = "blocked"              // 403: a block entry matched
	ReasonMethodNotAllowed    = policy.DenyMethod      // 403: the host's route or scoped allow methods exclude the method
	ReasonPathNotAllowed      = policy.DenyPath        // 403: the path is outside the host's path-scoped allows
	ReasonHostMismatch        = "host_mismatch"        // 403: inner request names another host than its CONNECT
	ReasonPlaceholderLeak     = "placeholder_leak"     // 403: a placeholder to a host its slot is not bound to
	ReasonInsecureRoute       = "insecure_route"       // 403: a routed host over plain HTTP
	ReasonPrivateAddress      = "private_address"      // 403: the host resolves to a guarded address
	ReasonTokenUnavailable    = "token_unavailable"    // 503: the slot's token has not arrived
	ReasonBadRequest          = "bad_request"          // 400: not a request a proxy can serve
	ReasonUpstreamUnreachable = "upstream_unreachable" // 502
	ReasonUpstreamTLS         = "upstream_tls"         // 502: upstream certificate or handshake failed
	ReasonUpstreamTimeout     = "upstream_timeout"     // 504
	ReasonClosed              = "proxy_closed"         // 503: the proxy is shutting down
	ReasonUpgradeRefused      = "upgrade_refused"      // 403: an Upgrade other than WebSocket
	ReasonBadUpgrade          = "upstream_bad_upgrade" // 502: the upstream's 101 is not a valid WebSocket handshake
	ReasonUnscrubbable        = "unscrubbable"         // 502: a routed host's body cork cannot scrub of tokens
)

// deny is a refusal or an upstream failure, rendered by render.
type deny struct {
	reason string
	what   string // "CONNECT evil.test:443", "GET https://a.test/p"
	detail string // block reason, slot name, CONNECT authority, ... never a value
	rule   string // the policy entry behind the refusal, for the audit line (rule.go)
}

// status is the HTTP status d answers with.
func (d deny) status() int {
	s, _ := render(d)
	return s
}

// decision is the audit decision of a request the proxy refuses with d.
func (d deny) decision() string {
	if d.reason == ReasonBlocked {
		return decisionBlock
	}
	return decisionDeny
}

// render is the one place that maps a reason to a status and the one-line
// body an agent reads: what was refused and how to allow it.
func render(d deny) (status int, body string) {
	what := d.what
	if what == "" {
		what = "request"
	}
	switch d.reason {
	case ReasonNotAllowed:
		return http.StatusForbidden, "cork: " + what + " denied: host not in policy; add it to allow: or routes: in the policy file"
	case ReasonBlocked:
		r := oneLine(d.detail)
		if r == "" {
			r = "blocked by the policy's block: list"
		}
		return http.StatusForbidden, "cork: " + what + " blocked: " + r
	case ReasonMethodNotAllowed:
		return http.StatusForbidden, "cork: " + what + " denied: the policy does not allow this method here; see methods: on the host's routes and allow entries"
	case ReasonPathNotAllowed:
		return http.StatusForbidden, "cork: " + what + " denied: the path is outside the host's path-scoped allow entries"
	case ReasonHostMismatch:
		return http.StatusForbidden, "cork: " + what + " denied: host differs from the CONNECT target " + d.detail + "; open a separate CONNECT for that host"
	case ReasonPlaceholderLeak:
		return http.StatusForbidden, "cork: " + what + " denied: it carries the placeholder of slot " + strconv.Quote(d.detail) + ", which is not sent to this host; placeholders go only in the route header of their slot's hosts"
	case ReasonInsecureRoute:
		return http.StatusForbidden, "cork: " + what + " denied: this host receives a credential, so it is only reachable over HTTPS; use https:// (or insecure_http: true on the route, for tests)"
	case ReasonPrivateAddress:
		return http.StatusForbidden, "cork: " + what + " denied: the host resolves to a loopback, private, link-local or reserved address; add the range to CORK_ALLOW_PRIVATE to allow it"
	case ReasonTokenUnavailable:
		return http.StatusServiceUnavailable, "cork: " + what + " refused: no token for slot " + strconv.Quote(d.detail) + " has been loaded yet; retry once the host supplies it"
	case ReasonBadRequest:
		return http.StatusBadRequest, "cork: " + what + " rejected: " + oneLine(d.detail)
	case ReasonUpstreamTLS:
		return http.StatusBadGateway, "cork: " + what + " failed: upstream TLS handshake or certificate verification failed"
	case ReasonUpstreamTimeout:
		return http.StatusGatewayTimeout, "cork: " + what + " failed: upstream timed out"
	case ReasonClosed:
		return http.StatusServiceUnavailable, "cork: proxy is shutting down"
	case ReasonUpgradeRefused:
		return http.StatusForbidden, "cork: " + what + " denied: only WebSocket upgrades are relayed"
	case ReasonBadUpgrade:
		return http.StatusBadGateway, "cork: " + what + " failed: the upstream's answer to the WebSocket upgrade is not a valid handshake"
	case ReasonUnscrubbable:
		return http.StatusBadGateway, "cork: " + what + " refused: the upstream's answer is in a content coding cork cannot scrub of credentials; set unscrubbable: pass on the route to let it through"
	case ReasonTooManyConns:
		return http.StatusServiceUnavailable, "cork: " + what + " refused: too many open connections from this client; close idle connections or raise CORK_MAX_CONNS_PER_CLIENT"
	case ReasonPushRefDenied:
		return http.StatusForbidden, "cork: " + what + " denied: the push updates " + oneLine(d.detail) + ", which the route's push rules do not allow"
	case ReasonPushUnparseable:
		return http.StatusForbidden, "cork: " + what + " denied: the route restricts git pushes and cork cannot read this push's ref updates (a compressed or malformed body)"
	case ReasonProxyAuth:
		return http.StatusProxyAuthRequired, "cork: " + what + " refused: this proxy serves only its sandbox; use the proxy URL (with its credentials) from the sandbox's HTTPS_PROXY"
	default: // ReasonUpstreamUnreachable
		return http.StatusBadGateway, "cork: " + what + " failed: upstream unreachable"
	}
}

// upstreamDeny classifies an upstream error. The error itself goes to the
// debug log only: its text never reaches the client (docs/DESIGN.md, trap 5).
func upstreamDeny(err error, what string) deny {
	d := deny{reason: ReasonUpstreamUnreachable, what: what}
	var ne net.Error
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var rhe tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case errors.Is(err, ErrPrivateAddress):
		d.reason = ReasonPrivateAddress
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &rhe), errors.As(err, &ae):
		d.reason = ReasonUpstreamTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		d.reason = ReasonUpstreamTimeout
	}
	return d
}

// response renders d as a response to req (MITM and plain paths).
func (d deny) response(req *http.Request) *http.Response {
	status, body := render(d)
	body += "\n"
	h := make(http.Header, 4)
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h[HeaderDenyReason] = []string{d.reason}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// writeDeny writes d to a ResponseWriter.
func writeDeny(w http.ResponseWriter, d deny) {
	status, body := render(d)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(HeaderDenyReason, d.reason)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}

// writeDenyRaw writes d as a complete HTTP/1.1 response on a raw
// connection and asks the client to close it.
func writeDenyRaw(w io.Writer, d deny) {
	status, body := render(d)
	body += "\n"
	_, _ = io.WriteString(w, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+"\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		HeaderDenyReason+": "+d.reason+"\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n"+
		"Connection: close\r\n\r\n"+body)
}

// oneLine keeps s on one line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// maxLoggedPath bounds the path in audit lines and messages.
const maxLoggedPath = 256

// cleanPath is u's escaped path without the query, bounded in length.
func cleanPath(u *url.URL) string {
	if u == nil {
		return ""
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if len(p) > maxLoggedPath {
		p = p[:maxLoggedPath] + "..."
	}
	return p
}

// requestWhat names a request in a message: method, scheme, authority, path.
func requestWhat(method, scheme, authority string, u *url.URL) string {
	return method + " " + scheme + "://" + authority + cleanPath(u)
}
