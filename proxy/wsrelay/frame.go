package wsrelay

import (
	"crypto/rand"
	"encoding/binary"
	"unicode/utf8"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close status codes the relay sends (RFC 6455 section 7.4.1).
const (
	StatusProtocolError   = 1002
	StatusPolicyViolation = 1008
	StatusMessageTooBig   = 1009
)

const (
	maxControlPayload = 125
	maxHeaderLen      = 14
)

// header is a parsed frame header.
type header struct {
	fin    bool
	rsv1   bool
	rsv23  bool // RSV2 or RSV3: no extension we support uses them
	opcode byte
	masked bool
	key    [4]byte
	length uint64
}

func isControl(op byte) bool { return op&0x8 != 0 }

// parseHeader parses a frame header from the start of b. It returns the
// header length, or 0 when b is too short to hold the whole header.
func parseHeader(b []byte) (h header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	h.rsv1 = b[0]&0x40 != 0
	h.rsv23 = b[0]&0x30 != 0
	h.opcode = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = uint64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		h.length = binary.BigEndian.Uint64(b[2:])
		if h.length>>63 != 0 {
			return h, 0, protocolError("frame length has its top bit set")
		}
		n = 10
	default:
		h.length = uint64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		copy(h.key[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// appendFrame appends one frame holding payload to dst; with masked, the
// payload is masked with a fresh random key as a client must send it.
func appendFrame(dst []byte, fin, rsv1 bool, op byte, masked bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	var b1 byte
	if masked {
		b1 = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, b0, b1|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !masked {
		return append(dst, payload...)
	}
	var key [4]byte
	rand.Read(key[:]) // never fails (crypto/rand, Go 1.24+)
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	maskBytes(key, 0, dst[start:])
	return dst
}

// maskBytes XORs b with key, starting at key offset pos, and returns the
// offset after b. Masking and unmasking are the same operation.
func maskBytes(key [4]byte, pos int, b []byte) int {
	pos &= 3
	i := 0
	for ; i < len(b) && pos != 0; i++ {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	if rest := b[i:]; len(rest) >= 8 {
		k32 := binary.LittleEndian.Uint32(key[:])
		k64 := uint64(k32) | uint64(k32)<<32
		for len(rest) >= 8 {
			binary.LittleEndian.PutUint64(rest, binary.LittleEndian.Uint64(rest)^k64)
			rest = rest[8:]
			i += 8
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	return pos
}

// validCloseCode reports whether a close code may appear on the wire
// (RFC 6455 section 7.4, IANA registry).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// closePayload builds a close frame payload: the code and the reason,
// truncated at a character boundary to fit a control frame.
func closePayload(code uint16, reason []byte) []byte {
	const maxReason = maxControlPayload - 2
	if len(reason) > maxReason {
		reason = reason[:maxReason]
		for len(reason) > 0 && !utf8.Valid(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), code)
	return append(p, reason...)
}
