package proxy

import "context"

// Shutdown stops the proxy gracefully. Blind tunnels and relays are closed
// at once; intercepted connections are shut down by their server
// (http.Server.Shutdown): idle ones at once, busy ones as soon as the
// response in flight has been written to the end, so requests already sent
// finish (and stream) completely. When ctx ends first, whatever remains is
// closed and ctx's error returned. The caller stops accepting connections
// first (http.Server's Shutdown, which does not see hijacked connections).
// Shutdown then Close is safe; Close alone cuts everything at once.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.closed.Store(true) // new requests on the proxy's listener get 503
	for _, c := range p.conns.snapshot() {
		if c.mode != modeMITM || c.relay.Load() {
			_ = c.Close()
		}
	}
	err := p.inner.Shutdown(ctx)
	p.Close() // what is left: connections still in their TLS handshake
	return err
}
