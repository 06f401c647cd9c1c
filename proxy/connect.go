package proxy

import (
	"crypto/tls"
	"io"
	"net/http"

	"github.com/elazarl/goproxy"
)

var rejectTunnel = &goproxy.ConnectAction{Action: goproxy.ConnectReject}

// handleConnect decides a CONNECT (docs/DESIGN.md, decision 1). It is
// goproxy's only CONNECT handler and answers every CONNECT: an unanswered
// CONNECT would be tunnelled (docs/DESIGN.md, trap 1).
func (p *Proxy) handleConnect(target string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	st := connStateOf(ctx.Req)
	if st == nil {
		st = p.newConnState()
	}
	ctx.UserData = st // inherited by every request inside an intercepted connection
	host, port, err := splitHostPort(target)
	if err != nil {
		return p.rejectConnect(ctx, st, deny{reason: ReasonBadRequest, what: "CONNECT",
			detail: "the target must be host:port with a valid host name or IP address"})
	}
	st.host, st.port, st.authority = host, port, joinHostPort(host, port)
	what := "CONNECT " + st.authority

	ps := p.policy.Load()
	rules := ps.pol.Lookup(host, port)
	// docs/DESIGN.md, decision 3: a placeholder as a DNS label (under a
	// wildcard) would go out in DNS, SNI and Host.
	for _, i := range ps.scan.scanText(host, nil) {
		if slot := ps.scan.slots[i]; !rules.Binds(slot) {
			d := deny{reason: ReasonPlaceholderLeak, what: "CONNECT " + ps.scan.redact(st.authority), detail: slot}
			st.host = ps.scan.redact(st.host)
			return p.rejectConnectWarn(ctx, st, d, slot)
		}
	}
	switch {
	case rules.HostBlock != nil:
		return p.rejectConnect(ctx, st, deny{reason: ReasonBlocked, what: what, detail: rules.HostBlock.Reason,
			rule: ps.pol.BlockPlace(rules.HostBlock)})
	case rules.Intercept():
		// docs/DESIGN.md, trap 2: never goproxy.MitmConnect, whose CA key is
		// public.
		st.mode = modeMITM
		return p.mitmConnect, st.authority
	case rules.Allowed, p.ask(ctx.Req.Context(), Question{Host: host, Port: port, Method: http.MethodConnect, Reason: ReasonNotAllowed}):
		// An unlisted host the hook allowed is tunnelled too: never
		// intercepted, so nothing is injected into it.
		st.asked = !rules.Allowed
		// serveTunnel dials through the guard (p.dialer) and relays the
		// two raw TCP connections (splice.go).
		st.mode = modeTunnel
		st.rule = ps.pol.AllowPlace(rules.AllowedBy)
		return p.tunnelConnect, st.authority
	default:
		return p.rejectConnect(ctx, st, deny{reason: ReasonNotAllowed, what: what})
	}
}

// rejectConnect answers a CONNECT with d. A reject without ctx.Resp is a
// silent close (docs/DESIGN.md, trap 1).
func (p *Proxy) rejectConnect(ctx *goproxy.ProxyCtx, st *connState, d deny) (*goproxy.ConnectAction, string) {
	return p.rejectConnectWarn(ctx, st, d, "")
}

// rejectConnectWarn is rejectConnect; with a slot, the audit line is the
// tripwire's warning naming it.
func (p *Proxy) rejectConnectWarn(ctx *goproxy.ProxyCtx, st *connState, d deny, slot string) (*goproxy.ConnectAction, string) {
	st.mode = modeDenied
	ctx.Resp = d.response(ctx.Req)
	ctx.Resp.Close = true
	p.audit(&auditEntry{
		decision: d.decision(), host: st.host, port: st.port, method: http.MethodConnect,
		slot: slot, status: d.status(), reason: d.reason, rule: d.rule, connID: st.id, warn: slot != "",
	})
	return rejectTunnel, ""
}

// mitmTLSConfig is the client-side TLS of an intercepted connection: a
// leaf for the CONNECT host (not the SNI), HTTP/1.1 only (docs/DESIGN.md,
// trap 12).
func (p *Proxy) mitmTLSConfig(st *connState) *tls.Config {
	host := st.host
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := p.ca.Leaf(host)
			if err != nil {
				p.log.Warn().Str(fieldError, p.scrubErr(err)).Str(fieldHost, host).Str(fieldConnID, st.id).Msg("leaf certificate")
			}
			return c, err
		},
	}
	// Session resumption across connections: every connection's config
	// shares the proxy's ticket keys. A ticket is only ever presented back to a
	// connection for the same CONNECT host: the client caches sessions by
	// server name.
	c.SetSessionTicketKeys(p.ticketKeys)
	return c
}

// connectionError answers a blind tunnel whose dial failed (403/502/504,
// never goproxy's raw error text). It is also goproxy's
// ConnectionErrHandler, which no action cork returns reaches (a tunnel's
// relay is cork's own: splice.go).
func (p *Proxy) connectionError(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
	st, _ := ctx.UserData.(*connState)
	if st == nil {
		return
	}
	d := upstreamDeny(err, "CONNECT "+st.authority)
	p.log.Debug().Str(fieldError, p.scrubErr(err)).Str(fieldConnID, st.id).Str(fieldReason, d.reason).Msg("tunnel dial failed")
	st.mu.Lock()
	st.failed = &d
	st.mu.Unlock()
	writeDenyRaw(w, d)
}
