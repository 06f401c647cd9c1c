package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/elazarl/goproxy"
)

// forward serves one HTTP request, plain or inside an intercepted
// connection: handleRequest decides it, roundTrip sends it, and the answer
// is written to w. It is goproxy's handleHttp (v1.9.4) with cork's settings
// (KeepHeader, KeepDestinationHeaders false; KeepAcceptEncoding true; no
// response handlers) and without its per-request work cork has no use for:
// three URL.String calls and the boxing of log arguments for a logger that
// is off (Verbose false), a session counter, a copy of every response
// header value, and a lower-case header lookup that allocates. That was a
// tenth of the allocations per request (docs/PERFORMANCE.md). CONNECT
// still goes to goproxy (handleConnect, the tunnels, serveMITM).
func (p *Proxy) forward(w *respWriter, r *http.Request) {
	if !r.URL.IsAbs() {
		p.serveNonProxy(w, r)
		return
	}
	ctx := &goproxy.ProxyCtx{Req: r, Proxy: p.gp}
	r, resp := p.handleRequest(r, ctx)
	if resp == nil {
		removeProxyHeaders(r)
		// roundTrip answers every failure itself (docs/DESIGN.md, trap 5).
		resp, _ = p.roundTrip(r, ctx)
	}
	defer resp.Body.Close()

	// The answer's header replaces whatever w had, value slices shared:
	// resp.Header is not used after this.
	h := w.Header()
	clear(h)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	// Trailers known now (HTTP/1.1 with a Trailer header): announcing them
	// before WriteHeader makes net/http send the body chunked, which
	// trailers need (as httputil.ReverseProxy does).
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)

	if resp.StatusCode == http.StatusSwitchingProtocols && isWebSocketHandshake(resp.Header) {
		relayUpgraded(w, resp.Body)
		return
	}
	// w.Write flushes every write (respWriter.Write): a stream goes out as
	// it comes, whatever its Content-Type.
	_, _ = w.ReadFrom(resp.Body)
	// Closed before the trailers are copied, as goproxy does (and again
	// by the deferred Close: responseBody.Close writes its audit line once).
	_ = resp.Body.Close()

	if len(resp.Trailer) > 0 {
		// Force chunking even when the body is small enough for net/http
		// to send it with a Content-Length, which drops trailers.
		w.Flush()
		if len(resp.Trailer) == announced {
			for k, vs := range resp.Trailer {
				h[k] = vs
			}
		} else {
			// Trailers not announced (HTTP/2 upstreams): net/http sends
			// keys with the TrailerPrefix as trailers.
			for k, vs := range resp.Trailer {
				for _, v := range vs {
					h.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
}

// removeProxyHeaders is goproxy.RemoveProxyHeaders without its log line:
// the hop-by-hop headers a proxy must not pass on. "Connection" stays on a
// WebSocket handshake, which needs it (the client's close is honoured by
// net/http through r.Close).
func removeProxyHeaders(r *http.Request) {
	r.RequestURI = "" // a client request must not have one
	r.Header.Del("Proxy-Connection")
	r.Header.Del("Proxy-Authenticate")
	r.Header.Del("Proxy-Authorization")
	if !isWebSocketHandshake(r.Header) {
		r.Header.Del("Connection")
	}
}

// isWebSocketHandshake is goproxy's test for a WebSocket handshake (a
// request or its 101 answer): a Connection header (any spelling of the
// key) with the token "upgrade" and an Upgrade header with "websocket",
// case-insensitively.
func isWebSocketHandshake(h http.Header) bool {
	return headerHasToken(h, "Connection", "upgrade") && headerHasToken(h, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for k, vs := range h {
		if !strings.EqualFold(k, name) {
			continue
		}
		for _, v := range vs {
			for s := range strings.SplitSeq(v, ",") {
				if strings.EqualFold(strings.TrimSpace(s), token) {
					return true
				}
			}
		}
	}
	return false
}

// relayUpgraded relays a WebSocket after its 101 until one side ends, as
// goproxy does: the upstream side is body (upgradeBody: frame by frame
// through wsrelay, upgrade.go), the client side w's hijacked connection,
// starting with what net/http had buffered of it. The caller closes both
// (serveRequest closes the hijacked connection).
func relayUpgraded(w *respWriter, body io.ReadCloser) {
	client, brw, err := w.Hijack()
	if err != nil {
		w.p.log.Debug().Str(fieldError, w.p.scrubErr(err)).Str(fieldConnID, w.st.id).Msg("websocket: hijack")
		return
	}
	upstream, ok := body.(io.ReadWriter)
	if !ok { // unreachable: roundTrip answers a 101 with an upgradeBody
		return
	}
	var fromClient io.Reader = client
	if n := brw.Reader.Buffered(); n > 0 {
		// The client's first frames may have come with the upgrade
		// request. A copy: brw must not keep the relay's bytes.
		b, _ := brw.Reader.Peek(n)
		fromClient = io.MultiReader(bytes.NewReader(bytes.Clone(b)), client)
	}
	done := make(chan struct{}, 2)
	relay := func(dst io.Writer, src io.Reader) {
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, net.ErrClosed) {
			w.p.log.Debug().Str(fieldError, w.p.scrubErr(err)).Str(fieldConnID, w.st.id).Msg("websocket: relay")
		}
		done <- struct{}{}
	}
	go relay(upstream, fromClient)
	go relay(client, upstream)
	<-done
}
