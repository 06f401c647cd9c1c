package proxy

import (
	"context"
	"net/http"
	"strings"

	"github.com/cork-sh/cork/policy"
)

// ReasonAsked is the audit reason of a request that the policy would have
// refused and Config.Unlisted let through.
const ReasonAsked = "asked"

// Question is what Config.Unlisted is asked about: one request the policy
// would refuse. It carries no credential, only the slot's name.
type Question struct {
	Host   string // normalised host
	Port   int
	Method string // "CONNECT" for a tunnel
	Path   string // "" for CONNECT; the path without query otherwise
	Reason string // ReasonNotAllowed, ReasonMethodNotAllowed or ReasonPathNotAllowed
	Slot   string // the credential the request would spend (a routed host), else ""
}

// Verdict is Config.Unlisted's answer. The zero Verdict denies.
type Verdict int

// Verdicts.
const (
	VerdictDeny Verdict = iota
	VerdictAllow
)

// askable reports whether a denial with reason may be lifted by
// Config.Unlisted.
func askable(reason string) bool {
	switch reason {
	case ReasonNotAllowed, ReasonMethodNotAllowed, ReasonPathNotAllowed:
		return true
	}
	return false
}

// ask puts q to Config.Unlisted and reports whether it allowed the
// request. The hook's context ends with parent (the client's request) or
// with the proxy (Shutdown, Close); the request is refused then even if
// the hook has not returned.
func (p *Proxy) ask(parent context.Context, q Question) bool {
	if p.unlisted == nil || !askable(q.Reason) || p.closed.Load() {
		return false
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := context.AfterFunc(p.life, cancel)
	defer stop()
	answer := make(chan Verdict, 1)
	go func() { answer <- p.unlisted(ctx, q) }()
	select {
	case v := <-answer:
		return v == VerdictAllow && ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// askRequest is ask for an HTTP request on a host with rules.
func (p *Proxy) askRequest(req *http.Request, host string, port int, rules policy.HostRules, d deny) bool {
	if p.unlisted == nil {
		return false
	}
	return p.ask(req.Context(), Question{
		Host: host, Port: port, Method: req.Method, Path: cleanPath(req.URL),
		Reason: d.reason, Slot: routeSlots(rules.Routes),
	})
}

// routeSlots names the slots of routes, comma-separated in route order
// without repeats.
func routeSlots(routes []*policy.Route) string {
	var b strings.Builder
	for _, rt := range routes {
		if !strings.Contains(","+b.String()+",", ","+rt.Slot+",") {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(rt.Slot)
		}
	}
	return b.String()
}
