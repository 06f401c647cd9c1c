package wsrelay

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
)

// deflateTail ends every permessage-deflate message; senders strip it
// (RFC 7692 section 7.2.1), receivers append it before inflating.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// stream parses the frames of one direction and re-frames them after the
// filter. It is pushed bytes with feed; the frames it emits collect in out.
// The server→client stream also steps through a compressed message's
// re-deflation (job), one chunk per step, so out stays bounded.
type stream struct {
	fromClient bool          // frames arrive masked, leave masked
	newFilter  func() Filter // nil = pass unchanged
	deflate    bool          // permessage-deflate negotiated
	noContext  bool          // the sender resets its compressor per message
	huffman    bool          // re-deflate with HuffmanOnly (a small window was negotiated)
	maxMessage int

	out []byte

	// Current frame.
	hbuf   [maxHeaderLen]byte
	hlen   int
	h      header
	inHdr  bool // h is parsed and its payload is being read
	left   uint64
	keyPos int

	// Current message.
	inMsg     bool
	op        byte
	started   bool // the first output frame of the message is out
	rsv1First bool // raw pass-through of a compressed message: RSV1 on its first frame
	zipped    bool // buffering a compressed message in z
	f         Filter

	chunk []byte // unmasked payload not yet filtered
	ctrl  []byte // control frame payload
	fbuf  []byte // filter output scratch
	z     []byte // compressed message

	closed bool // the sender's close frame went through: the rest is dropped

	// Compression state.
	dict  window
	zr    io.ReadCloser
	zplus []byte // inflated chunk
	job   *deflateJob
	zw    *flate.Writer
	zout  bytes.Buffer
}

// deflateJob is a server→client compressed message being inflated, filtered
// and re-deflated.
type deflateJob struct {
	src     io.Reader
	started bool
}

func protocolError(what string) error { return fmt.Errorf("%w: %s", ErrProtocol, what) }

// feed consumes frame bytes from in and returns how many it used. It stops
// early when out holds a chunk's worth of frames or a job is pending.
func (s *stream) feed(in []byte) (int, error) {
	n := 0
	for n < len(in) && s.job == nil && len(s.out) < ChunkSize {
		if s.closed {
			return len(in), nil
		}
		if !s.inHdr {
			k := copy(s.hbuf[s.hlen:], in[n:])
			h, hn, err := parseHeader(s.hbuf[:s.hlen+k])
			if err != nil {
				return n, err
			}
			if hn == 0 {
				s.hlen += k
				n += k
				continue
			}
			n += hn - s.hlen
			s.hlen = 0
			if err := s.startFrame(h); err != nil {
				return n, err
			}
			if s.left == 0 {
				if err := s.endFrame(); err != nil {
					return n, err
				}
			}
			continue
		}
		take := min(s.left, uint64(len(in)-n))
		h := &s.h
		switch {
		case isControl(h.opcode):
			s.ctrl = s.unmaskAppend(s.ctrl, in[n:n+int(take)])
		case s.zipped:
			s.z = s.unmaskAppend(s.z, in[n:n+int(take)])
		default:
			take = min(take, uint64(ChunkSize-len(s.chunk)))
			s.chunk = s.unmaskAppend(s.chunk, in[n:n+int(take)])
		}
		n += int(take)
		s.left -= take
		if s.left == 0 {
			if err := s.endFrame(); err != nil {
				return n, err
			}
		} else if !isControl(h.opcode) && !s.zipped && len(s.chunk) == ChunkSize {
			if err := s.flushChunk(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (s *stream) unmaskAppend(dst, p []byte) []byte {
	start := len(dst)
	dst = append(dst, p...)
	if s.h.masked {
		s.keyPos = maskBytes(s.h.key, s.keyPos, dst[start:])
	}
	return dst
}

// startFrame checks a header against RFC 6455 and the negotiated extensions
// and sets up for its payload.
func (s *stream) startFrame(h header) error {
	switch {
	case h.rsv23:
		return protocolError("reserved bit RSV2 or RSV3 set")
	case s.fromClient && !h.masked:
		return protocolError("unmasked client frame")
	case !s.fromClient && h.masked:
		return protocolError("masked server frame")
	}
	switch h.opcode {
	case opClose, opPing, opPong:
		switch {
		case !h.fin:
			return protocolError("fragmented control frame")
		case h.length > maxControlPayload:
			return protocolError("control frame longer than 125 bytes")
		case h.rsv1:
			return protocolError("RSV1 on a control frame")
		}
		s.ctrl = s.ctrl[:0]
	case opText, opBinary:
		if s.inMsg {
			return protocolError("new message inside a fragmented message")
		}
		if h.rsv1 && !s.deflate {
			return protocolError("RSV1 set without permessage-deflate")
		}
		s.inMsg, s.op, s.started = true, h.opcode, false
		s.rsv1First, s.zipped, s.f = false, false, nil
		switch {
		case s.newFilter == nil:
			s.rsv1First = h.rsv1
		case h.rsv1:
			s.zipped = true
			s.z = s.z[:0]
		default:
			s.f = s.newFilter()
		}
	case opContinuation:
		if !s.inMsg {
			return protocolError("continuation frame outside a message")
		}
		if h.rsv1 {
			return protocolError("RSV1 on a continuation frame")
		}
	default:
		return protocolError("reserved opcode")
	}
	if s.zipped && !isControl(h.opcode) && uint64(len(s.z))+h.length > uint64(s.maxMessage) {
		return fmt.Errorf("%w: compressed message over %d bytes", ErrTooBig, s.maxMessage)
	}
	s.h, s.inHdr, s.left, s.keyPos = h, true, h.length, 0
	return nil
}

// endFrame finishes the current frame once its payload is read.
func (s *stream) endFrame() error {
	s.inHdr = false
	switch {
	case isControl(s.h.opcode):
		return s.control()
	case s.zipped:
		if !s.h.fin {
			return nil
		}
		if s.fromClient {
			return s.checkCompressed()
		}
		s.job = &deflateJob{src: io.MultiReader(bytes.NewReader(s.z), bytes.NewReader(deflateTail))}
		return nil
	default:
		return s.flushChunk(true)
	}
}

// flushChunk passes the held payload through the filter and emits a frame:
// always at the end of an input frame (final), otherwise only when the filter
// released something.
func (s *stream) flushChunk(final bool) error {
	last := final && s.h.fin
	fb := s.fbuf[:0]
	if s.f == nil {
		fb = append(fb, s.chunk...)
	} else {
		var err error
		if fb, err = s.f.Write(fb, s.chunk); err == nil && last {
			fb, err = s.f.Flush(fb)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPolicy, err)
		}
	}
	s.chunk = s.chunk[:0]
	s.fbuf = fb[:0]
	if !final && len(fb) == 0 {
		return nil
	}
	s.emitData(last, fb)
	return nil
}

// emitData appends one frame of the current message to out.
func (s *stream) emitData(fin bool, payload []byte) {
	op, rsv1 := byte(opContinuation), false
	if !s.started {
		op, rsv1, s.started = s.op, s.rsv1First, true
	}
	s.out = appendFrame(s.out, fin, rsv1, op, s.fromClient, payload)
	if fin {
		s.inMsg, s.f = false, nil
	}
}

// control passes a ping, pong or close on, its payload through a one-shot
// filter.
func (s *stream) control() error {
	p := s.ctrl
	var code uint16
	if s.h.opcode == opClose && len(p) > 0 {
		if len(p) < 2 {
			return protocolError("close payload of one byte")
		}
		code = uint16(p[0])<<8 | uint16(p[1])
		if !validCloseCode(code) {
			return protocolError("invalid close code")
		}
		p = p[2:]
	}
	if s.newFilter != nil && len(p) > 0 {
		f := s.newFilter()
		fb, err := f.Write(s.fbuf[:0], p)
		if err == nil {
			fb, err = f.Flush(fb)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPolicy, err)
		}
		s.fbuf, p = fb[:0], fb
	}
	switch {
	case s.h.opcode != opClose:
		if len(p) > maxControlPayload {
			p = p[:maxControlPayload]
		}
	case code != 0:
		p = closePayload(code, p)
	}
	s.out = appendFrame(s.out, true, false, s.h.opcode, s.fromClient, p)
	if s.h.opcode == opClose {
		s.closed = true
	}
	return nil
}

// inflater returns a reader of the current compressed message, primed with
// the sender's earlier output unless it resets its context per message.
func (s *stream) inflater(src io.Reader) io.ReadCloser {
	var dict []byte
	if !s.noContext {
		dict = s.dict.buf
	}
	if s.zr == nil {
		s.zr = flate.NewReaderDict(src, dict)
	} else {
		s.zr.(flate.Resetter).Reset(src, dict)
	}
	if s.zplus == nil {
		s.zplus = make([]byte, ChunkSize)
	}
	return s.zr
}

// inflateChunk reads the next chunk of the message's payload; end reports
// the message is over.
func (s *stream) inflateChunk(zr io.Reader) (plain []byte, end bool, err error) {
	n, err := io.ReadFull(zr, s.zplus)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The input is the whole message: flate reports its end (a sync
		// flush block, not a final one) as an unexpected EOF.
		end = true
	default:
		return nil, false, protocolError("corrupt compressed message")
	}
	plain = s.zplus[:n]
	if !s.noContext {
		s.dict.write(plain)
	}
	return plain, end, nil
}

// checkCompressed inflates a whole compressed client message through the
// filter, then emits what the filter passed as one frame, re-deflated with
// a fresh compressor. Never the client's own bytes: an upstream that inflates
// all messages as one stream (Python's websockets, Node's ws) would read a
// deflate block the client left unfinished in one message on into the next,
// past what was checked here. A fresh compressor refers to nothing earlier,
// so the upstream's kept context does not matter.
func (s *stream) checkCompressed() error {
	zr := s.inflater(io.MultiReader(bytes.NewReader(s.z), bytes.NewReader(deflateTail)))
	f := s.newFilter()
	s.startDeflate()
	for {
		plain, end, err := s.inflateChunk(zr)
		if err != nil {
			return err
		}
		if s.fbuf, err = f.Write(s.fbuf[:0], plain); err == nil && end {
			s.fbuf, err = f.Flush(s.fbuf)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPolicy, err)
		}
		if _, err := s.zw.Write(s.fbuf); err != nil {
			return fmt.Errorf("websocket deflate: %w", err)
		}
		if s.zout.Len() > s.maxMessage {
			return fmt.Errorf("%w: compressed message over %d bytes", ErrTooBig, s.maxMessage)
		}
		if end {
			break
		}
	}
	if err := s.zw.Flush(); err != nil {
		return fmt.Errorf("websocket deflate: %w", err)
	}
	s.fbuf = s.fbuf[:0]
	s.out = appendFrame(s.out, true, true, s.op, true, bytes.TrimSuffix(s.zout.Bytes(), deflateTail))
	s.zout.Reset()
	s.inMsg, s.zipped = false, false
	return nil
}

// startDeflate readies a fresh compressor writing to zout: HuffmanOnly (no
// back-references) when the receiver's window was negotiated below 32 KiB.
func (s *stream) startDeflate() {
	s.zout.Reset()
	level := flate.BestSpeed
	if s.huffman {
		level = flate.HuffmanOnly
	}
	if s.zw == nil {
		s.zw, _ = flate.NewWriter(&s.zout, level) // level is valid
	} else {
		s.zw.Reset(&s.zout)
	}
}

// step advances the pending server→client compressed message by one chunk:
// inflate, filter, re-deflate with a fresh compressor (so the output never
// refers to earlier messages, whatever context the client keeps), and emit
// the compressed bytes as frames of one message, RSV1 on the first.
func (s *stream) step() error {
	j := s.job
	if !j.started {
		j.started = true
		j.src = s.inflater(j.src)
		s.f = s.newFilter()
		s.startDeflate()
	}
	plain, end, err := s.inflateChunk(j.src)
	if err != nil {
		return err
	}
	fb, err := s.f.Write(s.fbuf[:0], plain)
	if err == nil && end {
		fb, err = s.f.Flush(fb)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	s.fbuf = fb[:0]
	if _, err := s.zw.Write(fb); err != nil {
		return fmt.Errorf("websocket deflate: %w", err)
	}
	if !end {
		if s.zout.Len() >= ChunkSize {
			s.emitZipped(false, s.zout.Bytes())
			s.zout.Reset()
		}
		return nil
	}
	if err := s.zw.Flush(); err != nil {
		return fmt.Errorf("websocket deflate: %w", err)
	}
	z := bytes.TrimSuffix(s.zout.Bytes(), deflateTail)
	s.emitZipped(true, z)
	s.zout.Reset()
	s.job, s.zipped = nil, false
	return nil
}

func (s *stream) emitZipped(fin bool, payload []byte) {
	s.rsv1First = true
	s.emitData(fin, payload)
}
