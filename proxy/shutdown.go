package proxy

import (
	"context"
	"time"
)

// Shutdown stops the proxy gracefully. Blind tunnels and relays are closed
// at once; intercepted connections are shut down by their server
// (http.Server.Shutdown): idle ones at once, busy ones as soon as the
// response in flight has been written to the end, so requests already sent
// finish (and stream) completely. When ctx ends first, whatever remains is
// closed and ctx's error returned. The caller stops accepting connections
// first (http.Server's Shutdown, which does not see hijacked connections).
// Shutdown then Close is safe; Close alone cuts everything at once.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.closed.Store(true)  // new requests on the proxy's listener get 503
	p.cutting.Store(true) // what ends abnormally from now on is audited as shutdown
	p.endLife()           // requests held for Config.Unlisted are refused
	for _, c := range p.conns.snapshot() {
		if c.mode != modeMITM || c.relay.Load() {
			_ = c.Close()
		}
	}
	err := p.inner.Shutdown(ctx)
	p.Close() // what is left: connections still in their TLS handshake
	// Requests cut by Close end at once (their connections are gone);
	// wait for them so that their audit lines are written before the
	// caller exits.
	done := make(chan struct{})
	go func() { p.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownAuditWait):
	}
	return err
}

// shutdownAuditWait bounds how long Shutdown waits, after cutting what was
// left, for the cut requests to write their audit lines.
const shutdownAuditWait = 2 * time.Second
