package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// trackedConn is a client connection the proxy has taken over (a blind
// tunnel, an intercepted connection, a plain ws:// relay). It counts bytes,
// records activity for the idle reaper, and reports the tunnel when closed.
type trackedConn struct {
	net.Conn
	p        *Proxy
	st       *connState
	mode     connMode // at hijack time
	up, down atomic.Int64
	last     atomic.Int64           // unix nanos of the last completed read or write
	busy     atomic.Int32           // requests in flight inside an intercepted connection
	relay    atomic.Bool            // an intercepted connection now relaying a WebSocket
	reason   atomic.Pointer[string] // why the proxy closed it (idle reaping), for the audit
	closed   atomic.Bool            // Close was called
	relayed  atomic.Bool            // a blind tunnel's relay runs: it writes the audit line (splice.go)
	once     sync.Once
	reported sync.Once // the closing line is written once (Close, or the relay's end)
}

func (p *Proxy) track(c net.Conn, st *connState) *trackedConn {
	tc := &trackedConn{Conn: c, p: p, st: st, mode: st.mode}
	tc.touch()
	st.conn = tc
	p.conns.add(tc)
	if m := tc.modeLabel(); m != "" {
		p.metrics.tunnels.WithLabelValues(m).Inc()
	}
	if p.closed.Load() { // lost a race with Close
		_ = tc.Close()
	}
	return tc
}

func (c *trackedConn) touch() { c.last.Store(time.Now().UnixNano()) }

// Read counts what the client sent (a blind tunnel's relay bypasses Read and
// Write: splice.go). On an intercepted connection it is not
// progress: a client that trickles a request head is cut by the inner
// server's header timeout, and one that holds a keep-alive connection by
// its idle timeout, however many bytes it sends; there the reaper counts
// requests (busy, release) and what the proxy writes. Tunnels and relays
// count bytes both ways: that is all the proxy can see of them.
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.up.Add(int64(n))
		if c.mode != modeMITM || c.relay.Load() {
			c.touch()
		}
	}
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.down.Add(int64(n))
		c.touch()
	}
	return n, err
}

// CloseWrite and CloseRead let a blind tunnel relay each direction to its
// end on its own (goproxy half-closes connections that have them): a client
// that shuts its sending side after its request still gets the answer.
func (c *trackedConn) CloseWrite() error { return closeWrite(c.Conn) }
func (c *trackedConn) CloseRead() error  { return closeRead(c.Conn) }

// Close closes the connection once and writes the tunnel's audit line.
func (c *trackedConn) Close() error {
	c.closed.Store(true)
	err := c.Conn.Close()
	c.once.Do(func() {
		reason := ""
		if r := c.reason.Load(); r != nil {
			reason = *r
		}
		// A relay blocked on its upstream (one that stopped reading, or
		// sends nothing) notices only when that side closes too.
		c.st.endUpstream(reason)
		c.p.conns.remove(c)
		if m := c.modeLabel(); m != "" {
			c.p.metrics.tunnels.WithLabelValues(m).Dec()
		}
		if !c.relayed.Load() {
			c.report()
		}
	})
	return err
}

func (c *trackedConn) modeLabel() string {
	switch c.mode {
	case modeTunnel:
		return "tunnel"
	case modeMITM:
		return "mitm"
	}
	return ""
}

// report writes the closing line, once: for a blind tunnel it is the
// egress decision itself (with bytes and duration); for an intercepted
// connection each request had its own line and this one only sums up.
func (c *trackedConn) report() { c.reported.Do(c.writeReport) }

func (c *trackedConn) writeReport() {
	st := c.st
	dur := time.Since(st.start)
	switch c.mode {
	case modeTunnel:
		st.mu.Lock()
		failed := st.failed
		st.mu.Unlock()
		e := auditEntry{
			decision: decisionTunnel, host: st.host, port: st.port, status: 200,
			up: c.up.Load(), down: c.down.Load(), dur: dur, connID: st.id, rule: st.rule,
		}
		if st.asked {
			e.reason = ReasonAsked
		}
		if failed == nil && c.p.cutting.Load() {
			e.reason = reasonShutdown
		}
		if r := c.reason.Load(); failed == nil && r != nil {
			e.reason = *r
		}
		if failed != nil {
			e.reason, e.up, e.down = failed.reason, 0, 0
			e.status = failed.status()
			if failed.reason == ReasonPrivateAddress {
				e.decision = decisionDeny
			}
		}
		c.p.audit(&e)
	case modeMITM:
		if ev := c.p.log.Info(); ev.Enabled() {
			ev.Str(fieldMode, "mitm").Str(fieldHost, st.host).Int(fieldPort, st.port).
				Int64(fieldBytesUp, c.up.Load()).Int64(fieldBytesDown, c.down.Load()).
				Int64(fieldDurationMS, dur.Milliseconds()).Str(fieldConnID, st.id).Str(fieldMsg, msgTunnelClosed).Send()
		}
	}
}

// idle reports whether c has seen no traffic and no request in flight
// since before cutoff. A blind tunnel's relay records its bytes up to one
// reaper period late (splice.go, pipe), so a tunnel gets that much longer.
func (c *trackedConn) idle(cutoff int64) bool {
	if c.mode == modeTunnel {
		cutoff -= int64(c.p.reapEvery)
	}
	return c.busy.Load() == 0 && c.last.Load() < cutoff
}

// connSet is the set of tracked connections.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

func (s *connSet) add(c *trackedConn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*trackedConn]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c *trackedConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) snapshot() []*trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*trackedConn, 0, len(s.m))
	for c := range s.m {
		out = append(out, c)
	}
	return out
}

func (s *connSet) closeAll() {
	for _, c := range s.snapshot() {
		_ = c.Close()
	}
}

// reap closes tracked connections idle for longer than the tunnel idle
// timeout (docs/DESIGN.md, trap 7: hijacked tunnels have no timeout of their
// own). Activity in either direction counts, so a long SSE answer is not
// idle; an intercepted connection waiting for an upstream answer is busy.
func (p *Proxy) reap() {
	defer close(p.reaperDone)
	t := time.NewTicker(p.reapEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stopReaper:
			return
		case now := <-t.C:
			cutoff := now.Add(-p.tunnelIdle).UnixNano()
			for _, c := range p.conns.snapshot() {
				if c.idle(cutoff) {
					p.log.Debug().Str(fieldConnID, c.st.id).Msg("idle tunnel reaped")
					r := reasonIdle
					c.reason.Store(&r)
					_ = c.Close()
				}
			}
		}
	}
}
