package wsrelay

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

const (
	// DefaultMaxMessage is the cap on a buffered compressed message when
	// Config.MaxMessage is 0.
	DefaultMaxMessage = 16 << 20
	// ChunkSize is the most payload the relay holds for an uncompressed
	// message before passing it through the filter and sending it on.
	ChunkSize = 32 << 10
	// closeWait bounds how long a Write that refused a message waits for Read
	// to hand the close frame to the client.
	closeWait = 5 * time.Second
)

// Errors the relay returns, wrapped with detail that never holds payload bytes.
var (
	// ErrPolicy: a filter refused a message (close 1008).
	ErrPolicy = errors.New("websocket message refused")
	// ErrProtocol: a peer broke RFC 6455 or RFC 7692 (close 1002).
	ErrProtocol = errors.New("websocket protocol error")
	// ErrTooBig: a compressed message exceeded Config.MaxMessage (close 1009).
	ErrTooBig = errors.New("websocket message too big")
)

// Reasons passed to Config.OnClose.
const (
	ReasonNormal   = ""
	ReasonPolicy   = "policy"
	ReasonProtocol = "protocol"
	ReasonTooBig   = "too_big"
)

// Filter sees the payload of one message, in order, and decides what is sent
// on. A Filter is used for one message by one goroutine.
type Filter interface {
	// Write takes the next chunk of one message's (decompressed, unmasked)
	// payload and appends what may be sent on to dst. An error refuses the
	// message: the relay closes both sides (sending a close frame 1008 to the
	// client first).
	Write(dst, p []byte) ([]byte, error)
	// Flush ends the message and appends what was held back.
	Flush(dst []byte) ([]byte, error)
}

// Config configures one relay. The zero value relays without filtering,
// without extensions, with DefaultMaxMessage.
type Config struct {
	// Extensions is the 101 response's Sec-WebSocket-Extensions ("" = none).
	// Only permessage-deflate is supported.
	Extensions string
	// Server returns the filter for one server→client message (text, binary,
	// and as a one-shot the payload of a ping or pong and a close reason). If
	// nil, server messages pass unchanged.
	Server func() Filter
	// Client returns the filter for one client→server message, as Server. If
	// nil, client messages pass unchanged. Only its verdict counts for a
	// compressed message, which is forwarded as the client sent it.
	Client func() Filter
	// MaxMessage caps a buffered (compressed) message, in compressed bytes.
	// If 0, DefaultMaxMessage.
	MaxMessage int
	// OnClose, if not nil, is called once, when the relay first ends, with
	// why: ReasonNormal, ReasonPolicy, ReasonProtocol or ReasonTooBig. It
	// must not block.
	OnClose func(reason string)
}

// Validate reports a negative MaxMessage and an Extensions value the relay
// cannot handle.
func (c Config) Validate() error {
	var errs []error
	if c.MaxMessage < 0 {
		errs = append(errs, fmt.Errorf("max message: %d is negative", c.MaxMessage))
	}
	if _, err := parseExtensions(c.Extensions); err != nil {
		errs = append(errs, fmt.Errorf("extensions: %w", err))
	}
	return errors.Join(errs...)
}

// Relay is the upstream side of one upgraded WebSocket connection, seen
// through filters: Read returns the bytes for the client, Write takes the
// client's bytes. One goroutine may call Read while another calls Write;
// Close may be called from any goroutine. The zero value is not usable:
// create it with New. Its buffers hold payload, so every fmt verb prints a
// redacted text.
type Relay struct {
	upstream io.ReadWriteCloser
	onClose  func(string)
	cfgErr   error

	// Read side, owned by the reading goroutine.
	rd     stream
	rbuf   []byte
	rin    []byte // unconsumed upstream bytes
	rpos   int    // read offset in rd.out
	upErr  error  // upstream read error held until rin is consumed
	rdone  bool   // the last frame for the client is out; next is io.EOF
	rerror error  // what Read returns once done

	// Write side, owned by the writing goroutine.
	wr   stream
	werr error

	mu        sync.Mutex
	closeCode uint16 // close frame owed to the client; 0 = none
	ended     bool   // onClose called

	readDone     chan struct{}
	readDoneOnce sync.Once
	upOnce       sync.Once // closes upstream
	closeErr     error
	closed       chan struct{} // closed by Close
	closedOnce   sync.Once
}

var (
	_ io.ReadWriteCloser = (*Relay)(nil)
	_ fmt.Formatter      = (*Relay)(nil)
)

const redacted = "wsrelay.Relay{redacted}"

// String returns a fixed text: a relay's buffers may hold tokens.
func (r *Relay) String() string { return redacted }

// GoString returns a fixed text: a relay's buffers may hold tokens.
func (r *Relay) GoString() string { return redacted }

// Format prints a fixed text for every verb: a relay's buffers may hold tokens.
func (r *Relay) Format(f fmt.State, verb rune) { io.WriteString(f, redacted) }

// New returns the relay for one upgraded connection. upstream is the upstream
// side (a net.Conn, or the body of a 101 response, which is an
// io.ReadWriteCloser). Read returns bytes for the client: the upstream's frames
// re-framed after the Server filter, unmasked as a server sends them. Write
// takes raw bytes from the client, which must be masked frames, runs message
// payloads through the Client filter and writes masked frames upstream. Close
// closes upstream. New never fails: if cfg does not Validate, Read and Write
// return that error.
func New(upstream io.ReadWriteCloser, cfg Config) *Relay {
	r := &Relay{
		upstream: upstream,
		onClose:  cfg.OnClose,
		readDone: make(chan struct{}),
		closed:   make(chan struct{}),
	}
	if err := cfg.Validate(); err != nil {
		r.cfgErr = fmt.Errorf("websocket relay config: %w", err)
		return r
	}
	ext, _ := parseExtensions(cfg.Extensions)
	maxMsg := cfg.MaxMessage
	if maxMsg == 0 {
		maxMsg = DefaultMaxMessage
	}
	r.rd = stream{
		newFilter:  cfg.Server,
		deflate:    ext.enabled,
		noContext:  ext.serverNoContext,
		huffman:    ext.serverMaxBits != 0 && ext.serverMaxBits < 15,
		maxMessage: maxMsg,
	}
	r.wr = stream{
		fromClient: true,
		newFilter:  cfg.Client,
		deflate:    ext.enabled,
		noContext:  ext.clientNoContext,
		huffman:    ext.clientMaxBits != 0 && ext.clientMaxBits < 15,
		maxMessage: maxMsg,
	}
	r.rbuf = make([]byte, ChunkSize)
	return r
}

// Read returns the next bytes for the client. After a refusal or a protocol
// error on either side it returns a close frame and then io.EOF.
func (r *Relay) Read(p []byte) (int, error) {
	if r.cfgErr != nil {
		return 0, r.cfgErr
	}
	for {
		if r.rpos < len(r.rd.out) {
			n := copy(p, r.rd.out[r.rpos:])
			r.rpos += n
			return n, nil
		}
		r.rd.out, r.rpos = r.rd.out[:0], 0
		if r.rdone {
			r.readDoneOnce.Do(func() { close(r.readDone) })
			return 0, r.rerror
		}
		if code := r.owedClose(); code != 0 {
			r.rdone, r.rerror = true, io.EOF
			if !r.rd.closed {
				r.rd.closed = true
				r.rd.out = appendFrame(r.rd.out, true, false, opClose, false, closePayload(code, nil))
			}
			continue
		}
		var err error
		switch {
		case r.rd.job != nil:
			err = r.rd.step()
		case len(r.rin) > 0:
			var n int
			n, err = r.rd.feed(r.rin)
			r.rin = r.rin[n:]
		case r.upErr != nil:
			if r.owedClose() != 0 {
				continue
			}
			r.rdone, r.rerror = true, r.upErr
			if errors.Is(r.upErr, io.EOF) {
				r.rerror = io.EOF
				r.end(ReasonNormal)
			}
		default:
			var n int
			n, r.upErr = r.upstream.Read(r.rbuf)
			r.rin = r.rbuf[:n]
		}
		if err != nil {
			r.fail(err)
		}
	}
}

// Write takes raw bytes from the client. A refused message or a protocol
// error makes it return an error wrapping ErrPolicy, ErrProtocol or ErrTooBig,
// after Read has handed the client its close frame (or closeWait passed).
func (r *Relay) Write(p []byte) (int, error) {
	if r.cfgErr != nil {
		return 0, r.cfgErr
	}
	if r.werr != nil {
		return 0, r.werr
	}
	n := 0
	for n < len(p) {
		k, err := r.wr.feed(p[n:])
		n += k
		if err != nil {
			r.werr = err
			code := r.markFailed(err)
			// Tell the upstream too: an upstream that took a message cut
			// short by a closed connection for a whole one (coder/websocket
			// does) gets a close frame in the middle of it instead.
			r.wr.out = appendFrame(r.wr.out[:0], true, false, opClose, true, closePayload(code, nil))
			if d, ok := r.upstream.(interface{ SetWriteDeadline(time.Time) error }); ok {
				d.SetWriteDeadline(time.Now().Add(closeWait))
			}
			r.upstream.Write(r.wr.out) // best effort: the connection ends anyway
			r.wr.out = r.wr.out[:0]
			r.closeUpstream()
			r.waitRead()
			return n, err
		}
		if len(r.wr.out) > 0 {
			if _, err := r.upstream.Write(r.wr.out); err != nil {
				r.werr = fmt.Errorf("websocket write upstream: %w", err)
				return n, r.werr
			}
			r.wr.out = r.wr.out[:0]
		}
	}
	return n, nil
}

// Close closes the upstream connection. Pending Reads and Writes return.
func (r *Relay) Close() error {
	r.closeUpstream()
	r.closedOnce.Do(func() { close(r.closed) })
	r.end(ReasonNormal)
	return r.closeErr
}

func (r *Relay) closeUpstream() {
	r.upOnce.Do(func() { r.closeErr = r.upstream.Close() })
}

// fail ends the relay for err: a close frame is owed to the client, the
// upstream is closed.
func (r *Relay) fail(err error) {
	r.markFailed(err)
	r.closeUpstream()
}

// markFailed records the close frame owed to the client for err and returns
// its code. From then on Read sends nothing else from upstream.
func (r *Relay) markFailed(err error) uint16 {
	reason, code := ReasonProtocol, uint16(StatusProtocolError)
	switch {
	case errors.Is(err, ErrPolicy):
		reason, code = ReasonPolicy, StatusPolicyViolation
	case errors.Is(err, ErrTooBig):
		reason, code = ReasonTooBig, StatusMessageTooBig
	}
	r.mu.Lock()
	if r.closeCode == 0 {
		r.closeCode = code
	}
	r.mu.Unlock()
	r.end(reason)
	return code
}

func (r *Relay) owedClose() uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeCode
}

// end calls OnClose the first time the relay ends.
func (r *Relay) end(reason string) {
	r.mu.Lock()
	first := !r.ended
	r.ended = true
	r.mu.Unlock()
	if first && r.onClose != nil {
		r.onClose(reason)
	}
}

// waitRead waits until Read has returned its last bytes, so that a caller
// that stops relaying when Write fails (goproxy does) does not cut the
// client's close frame off.
func (r *Relay) waitRead() {
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-r.readDone:
	case <-r.closed:
	case <-t.C:
	}
}
