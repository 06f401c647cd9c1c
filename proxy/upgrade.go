package proxy

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/cork-sh/cork/proxy/scrub"
	"github.com/cork-sh/cork/proxy/wsrelay"
)

// After a 101 the connection stops being HTTP. goproxy would relay raw
// bytes both ways, so a client could send anything (a request to a blocked
// path, a placeholder) and an upstream anything (the real token) with no
// check. cork accepts only a WebSocket upgrade whose answer is a valid
// handshake, and relays it frame by frame (package wsrelay): every
// server→client message is scrubbed of real tokens on a routed host, and
// every client→server message goes through the tripwire.

// upgrade answers a 101: a relay for a valid WebSocket handshake, else
// 502 upstream_bad_upgrade.
func (p *Proxy) upgrade(req *http.Request, resp *http.Response, rs *reqState, ts *tokenState, scrubbing bool) *http.Response {
	rw, ok := resp.Body.(io.ReadWriteCloser)
	var err error
	switch {
	case !ok:
		err = errors.New("upgraded body is not a connection")
	case !rs.websocket:
		err = errors.New("101 to a request that did not ask for an upgrade")
	default:
		err = wsrelay.CheckHandshake(req, resp)
	}
	if err != nil {
		_ = resp.Body.Close()
		p.log.Debug().Str(fieldError, p.scrubErr(err)).Str(fieldConnID, rs.conn.id).Msg("upgrade refused")
		d := deny{reason: ReasonBadUpgrade, what: rs.what}
		rs.status = d.status()
		p.finish(rs, d.reason, false)
		return d.response(req)
	}
	// The relay is traffic, not a request in flight: from here the idle
	// reaper watches it.
	p.release(rs)
	ub := &upgradeBody{p: p, rs: rs}
	cfg := wsrelay.Config{
		Extensions: strings.Join(resp.Header.Values("Sec-Websocket-Extensions"), ", "),
		OnClose: func(reason string) {
			if reason != "" {
				r := "websocket_" + reason
				ub.reason.Store(&r)
			}
		},
	}
	if scrubbing {
		cfg.Server = func() wsrelay.Filter {
			// Each message with the tokens of now: they include the ones
			// this connection started with (as retired values after a
			// rotation) and any the upstream may have learnt since.
			cur := p.tokens.Load()
			if cur.scrub == nil {
				cur = ts
			}
			return &scrubFilter{st: cur.scrub.NewStream(func(id int) { p.scrubHit(rs, cur.slots[id], "websocket") })}
		}
	}
	if rs.unbound != nil {
		sc := p.policy.Load().scan
		cfg.Client = func() wsrelay.Filter { return newTripFilter(sc, rs) }
	}
	ub.rw = wsrelay.New(rw, cfg)
	rs.conn.setUpstream(func(reason string) {
		if reason != "" {
			ub.reason.CompareAndSwap(nil, &reason)
		}
		_ = ub.Close()
	})
	resp.Body = ub
	return resp
}

// scrubFilter scrubs one server→client WebSocket message.
type scrubFilter struct{ st *scrub.Stream }

func (f *scrubFilter) Write(dst, p []byte) ([]byte, error) { return f.st.Write(dst, p), nil }
func (f *scrubFilter) Flush(dst []byte) ([]byte, error)    { return f.st.Flush(dst), nil }

// tripFilter is the tripwire on one client→server WebSocket message.
type tripFilter struct {
	st  *scrub.Stream
	sc  *scanner
	rs  *reqState
	hit int
}

func newTripFilter(sc *scanner, rs *reqState) *tripFilter {
	f := &tripFilter{sc: sc, rs: rs, hit: -1}
	f.st = sc.set.NewStream(func(id int) {
		if f.hit < 0 && id < len(rs.unbound) && rs.unbound[id] {
			f.hit = id
		}
	})
	return f
}

func (f *tripFilter) Write(dst, p []byte) ([]byte, error) {
	out := f.st.Write(dst, p)
	return out, f.check()
}

func (f *tripFilter) Flush(dst []byte) ([]byte, error) {
	out := f.st.Flush(dst)
	return out, f.check()
}

func (f *tripFilter) check() error {
	if f.hit < 0 {
		return nil
	}
	f.rs.setLeak(f.sc.slots[f.hit])
	return errPlaceholderInMessage
}

var errPlaceholderInMessage = errors.New("websocket message carries a placeholder of a slot not bound to this host")
