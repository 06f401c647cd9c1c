package proxy

import (
	"context"
	"time"
)

// shutdownPoll is how often Shutdown looks for intercepted connections
// whose requests have finished.
const shutdownPoll = 20 * time.Millisecond

// Shutdown stops the proxy gracefully. Blind tunnels and relays are closed
// at once; an intercepted connection is closed as soon as no request is in
// flight on it, so requests already sent finish (and stream) to the end.
// When ctx ends first, whatever remains is closed and ctx's error
// returned. The caller stops accepting connections first (http.Server's
// Shutdown, which does not see hijacked connections). Shutdown then Close
// is safe; Close alone cuts everything at once.
func (p *Proxy) Shutdown(ctx context.Context) error {
	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	for {
		busy := 0
		for _, c := range p.conns.snapshot() {
			if c.mode == modeMITM && c.busy.Load() > 0 {
				busy++
				continue
			}
			_ = c.Close()
		}
		if busy == 0 {
			return p.Close()
		}
		select {
		case <-ctx.Done():
			p.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}
