package proxy

import (
	"time"

	"github.com/rs/zerolog"
)

// Audit log vocabulary. One "egress" line per decision; one per closed
// tunnel or intercepted connection.
const (
	msgEgress       = "egress"
	msgTunnelClosed = "tunnel_closed"

	fieldMsg        = "msg" // set explicitly: zerolog's default message key is "message"
	fieldDecision   = "decision"
	fieldHost       = "host"
	fieldPort       = "port"
	fieldMethod     = "method"
	fieldPath       = "path"
	fieldSlot       = "slot"
	fieldStatus     = "status"
	fieldBytesUp    = "bytes_up"
	fieldBytesDown  = "bytes_down"
	fieldDurationMS = "duration_ms"
	fieldReason     = "reason"
	fieldConnID     = "conn_id"
	fieldMode       = "mode"
	fieldComponent  = "component"
	fieldScrubbed   = "scrubbed"
	fieldError      = "error"
	fieldRef        = "ref"
	fieldRule       = "rule"    // the deciding policy entry: "routes[2]", "allow[0]", "block[1]"
	fieldSession    = "session" // Config.SessionID, on every line when set

	// Reasons only the audit log uses (no response carries them).
	reasonClientGone  = "client_gone"  // the client hung up before the answer was complete
	reasonUpstreamCut = "upstream_cut" // the upstream's body ended early: the client's connection is aborted
	reasonShutdown    = "shutdown"     // cut by the proxy's shutdown deadline (or Close)
	reasonIdle        = "idle_timeout" // a tunnel or relay closed after CORK_TUNNEL_IDLE_TIMEOUT without traffic

	decisionInject  = "inject"
	decisionTunnel  = "tunnel"
	decisionForward = "forward"
	decisionDeny    = "deny"
	decisionBlock   = "block"
)

// auditEntry is one decision. Never put a value here that came from a
// token; placeholders are not secrets but are not logged either (the
// tripwire names the slot).
type auditEntry struct {
	decision string
	host     string
	port     int
	method   string
	path     string
	slot     string
	status   int
	up, down int64
	dur      time.Duration
	reason   string
	connID   string
	warn     bool
	scrubbed int64  // real tokens replaced in the response
	ref      string // a refused push's first denied ref: refs are not secrets
	rule     string // the policy entry that decided (rule.go), or ""
}

// audit writes e as one canonical line and counts it.
func (p *Proxy) audit(e *auditEntry) {
	p.metrics.observe(e)
	var ev *zerolog.Event
	if e.warn {
		ev = p.log.Warn()
	} else {
		ev = p.log.Info()
	}
	if !ev.Enabled() {
		return
	}
	ev.Str(fieldDecision, e.decision).
		Str(fieldHost, e.host).
		Int(fieldPort, e.port)
	if e.method != "" {
		ev.Str(fieldMethod, e.method).Str(fieldPath, e.path)
	}
	if e.slot != "" {
		ev.Str(fieldSlot, e.slot)
	}
	ev.Int(fieldStatus, e.status).
		Int64(fieldBytesUp, e.up).
		Int64(fieldBytesDown, e.down).
		Int64(fieldDurationMS, e.dur.Milliseconds())
	if e.reason != "" {
		ev.Str(fieldReason, e.reason)
	}
	if e.rule != "" {
		ev.Str(fieldRule, e.rule)
	}
	if e.ref != "" {
		ev.Str(fieldRef, e.ref)
	}
	if e.scrubbed > 0 {
		ev.Int64(fieldScrubbed, e.scrubbed)
	}
	ev.Str(fieldConnID, e.connID).Str(fieldMsg, msgEgress).Send()
}
