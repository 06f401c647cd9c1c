package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
)

// A blind tunnel's direction copies at most chunk bytes at a time (between
// minChunk and maxChunk). Between copies the relay adds the bytes to the
// tunnel's counts and records progress for the idle reaper, so a copy must
// end well within the reaper's period even when the reader is slow: the
// chunk starts small, doubles while copies take less than an eighth of the
// period and halves when one took more than half of it. (A reader whose
// pace collapses in the middle of a large chunk holds that copy until the
// chunk is through: at the default idle timeout a 1 MiB chunk read at under
// ~1.7 KiB/s.)
const (
	minChunk = 4 << 10
	maxChunk = 1 << 20
)

// serveTunnel takes over a CONNECT to an allowed host (a blind tunnel): it
// dials the host through the guard, answers 200 and relays the two
// connections until both directions end. client is the tracked, hijacked
// connection.
//
// The relay copies between the raw TCP connections, not through the
// tracked wrapper, so that Go splices them (splice(2): the bytes never
// enter user space): byte counts come from the copies' results, and idle
// reaping from read deadlines (see pipe) instead of a wrapper around every
// read and write.
func (p *Proxy) serveTunnel(r *http.Request, client net.Conn, ctx *goproxy.ProxyCtx) {
	st, _ := ctx.UserData.(*connState)
	tc, _ := client.(*trackedConn)
	if st == nil || tc == nil { // unreachable: handleConnect and Hijack set them
		_ = client.Close()
		return
	}
	// Closing the client side while the dial runs (idle reaping, Close,
	// Shutdown) cancels it.
	dctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st.setUpstream(func(string) { cancel() })
	if tc.closed.Load() {
		cancel()
	}
	up, err := p.dialer.DialContext(dctx, "tcp", st.authority)
	if err != nil {
		p.connectionError(client, ctx, err)
		_ = client.Close()
		return
	}
	// The audit line is written once both directions have ended, with
	// every byte of the copies counted (a copy cut by Close adds its bytes
	// when it returns, after Close): Shutdown waits for it (inflight).
	p.inflight.Add(1)
	defer p.inflight.Done()
	// Closing the client side (idle reaping, Close) also ends a relay
	// stuck writing to an upstream that stopped reading.
	st.setUpstream(func(string) { _ = up.Close() })
	if tc.closed.Load() { // closed while dialling: Close ran before setUpstream
		_ = up.Close()
		return
	}
	// goproxy's wording for a tunnel.
	if _, err := io.WriteString(client, connectOK(r, "Connection established")); err != nil {
		_ = client.Close()
		return
	}
	raw := rawConn(client)
	// Bytes the client sent with the CONNECT (an early ClientHello) are in
	// the hijacked reader's buffer: they go first.
	if pre := st.takeBuffered(); len(pre) > 0 {
		n, err := up.Write(pre)
		tc.up.Add(int64(n))
		if err != nil {
			_ = client.Close()
			return
		}
	}
	tc.relayed.Store(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pipe(tc, up, raw, &tc.up)
	}()
	p.pipe(tc, raw, up, &tc.down)
	wg.Wait()
	_ = client.Close()
	tc.report()
}

// pipe copies src to dst until src ends, adding the bytes to n. At src's
// end it half-closes (dst's sending side, src's receiving side: the other
// direction goes on); on an error it closes the tunnel.
//
// Each copy runs with a read deadline of one reaper period on src and at
// most chunk bytes: a direction that moved bytes marks the tunnel active
// (tc.touch); one that waited the period out loops. A direction blocked
// writing to a peer that does not read marks nothing, so the reaper closes
// the tunnel once neither direction has moved bytes for the idle timeout.
// No write deadline: a splice that times out writing drops what it read.
func (p *Proxy) pipe(tc *trackedConn, dst, src net.Conn, n *atomic.Int64) {
	lr := &io.LimitedReader{R: src}
	chunk := int64(minChunk)
	for {
		start := time.Now()
		_ = src.SetReadDeadline(start.Add(p.reapEvery))
		lr.N = chunk
		w, err := copyChunk(dst, lr)
		if w > 0 {
			n.Add(w)
			tc.touch()
		}
		switch {
		case err == nil && lr.N > 0: // src's end
			_ = closeWrite(dst)
			_ = closeRead(src)
			return
		case err == nil: // a whole chunk: adapt it to the rate
			switch took := time.Since(start); {
			case took > p.reapEvery/2 && chunk > minChunk:
				chunk /= 2
			case took < p.reapEvery/8 && chunk < maxChunk:
				chunk *= 2
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			_ = tc.Close()
			return
		}
	}
}

// copyChunk copies lr to dst: spliced when dst is a *net.TCPConn (its
// ReadFrom splices from a TCP or Unix socket), else through a pooled buffer
// (a Unix-socket client's download: io.Copy would allocate 32 KiB per
// chunk, idle wake-ups included).
func copyChunk(dst net.Conn, lr *io.LimitedReader) (int64, error) {
	if rf, ok := dst.(io.ReaderFrom); ok {
		return rf.ReadFrom(lr)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(dst, lr, *bp)
}

// rawConn unwraps the proxy's own wrappers (trackedConn, limitConn) down
// to the accepted connection, a *net.TCPConn on a TCP listener: the
// relay copies between raw connections so that Go can splice them.
func rawConn(c net.Conn) net.Conn {
	for {
		switch w := c.(type) {
		case *trackedConn:
			c = w.Conn
		case *limitConn:
			c = w.Conn
		default:
			return c
		}
	}
}
