package resolve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// The token stream: how a launcher hands token maps to a proxy in another
// process (the docker sidecar's stdin, `cork proxy --tokens-file -`). Each
// JSON object {"slot":"value"} replaces the whole map. TokenEncoder writes
// it; TokenDecoder reads it.

// TokenEncoder writes token maps to a stream, one JSON object per line.
// This is where a token map leaves the process (Reveal): the bytes go to
// w and nowhere else, built in one buffer of the encoder's own that is
// cleared after each write. The zero value is not usable; call
// NewTokenEncoder. Not safe for concurrent use.
type TokenEncoder struct {
	w   io.Writer
	buf []byte
}

// NewTokenEncoder returns an encoder writing to w.
func NewTokenEncoder(w io.Writer) *TokenEncoder { return &TokenEncoder{w: w} }

// Encode writes t as one line. Its errors never hold a value.
func (e *TokenEncoder) Encode(t Tokens) error {
	// Room for the worst case up front: a buffer that grew while being
	// filled would leave a copy behind.
	need := 3
	for slot, s := range t {
		need += 6*(len(slot)+len(s.v)) + 6
	}
	if cap(e.buf) < need {
		e.buf = make([]byte, 0, need)
	}
	b := append(e.buf[:0], '{')
	for i, slot := range t.Slots() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, slot)
		b = append(b, ':')
		b = appendJSONString(b, t[slot].Reveal())
	}
	b = append(b, '}', '\n')
	_, err := e.w.Write(b)
	clear(b)
	e.buf = b[:0]
	if err != nil {
		return fmt.Errorf("token stream: %w", err)
	}
	return nil
}

// appendJSONString appends s as a JSON string: quote, backslash and
// control characters escaped, everything else as is (UTF-8).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// MaxTokenObjectSize caps one JSON object of a token stream, in bytes. A
// larger object is skipped with an error.
const MaxTokenObjectSize = 1 << 20

// maxTokenNesting bounds how deeply a value may nest. A token map needs
// two levels; the bound keeps the parser's recursion small.
const maxTokenNesting = 64

// ObjectError is a malformed object in a token stream: bad JSON, not an
// object, a value that is not a non-empty string, or one too large. The
// TokenDecoder that returned it has skipped the object and can go on.
// Neither the message nor Err ever quotes a value.
type ObjectError struct {
	N      int   // the object's ordinal in the stream, from 1
	Offset int64 // the byte offset of its first byte
	Err    error
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("token stream: object %d (at byte %d): %v", e.N, e.Offset, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// TokenDecoder reads the stdin protocol: a stream of JSON objects, each of
// which replaces the whole token map. Launchers write one object per line;
// any JSON white space may separate objects.
//
// A malformed object does not end the stream. Next returns an
// *ObjectError for it and resynchronises: after a value that is valid
// JSON but not a token map, at the next byte; after bad JSON, at the
// offending byte if it starts a line, else after the next newline (a JSON
// string cannot span lines, so a line is a safe unit to drop). An object
// over MaxTokenObjectSize is skipped, not kept in memory.
//
// The zero value is not usable; call NewTokenDecoder. Not safe for
// concurrent use.
type TokenDecoder struct {
	r         *bufio.Reader
	off       int64  // bytes consumed
	n         int    // objects started
	lineStart bool   // only white space consumed since the last newline
	size      int64  // bytes of the current object
	buf       []byte // the current object, up to MaxTokenObjectSize
	err       error  // sticky: a read error, or io.EOF once reached
}

// NewTokenDecoder returns a decoder reading from r.
func NewTokenDecoder(r io.Reader) *TokenDecoder {
	return &TokenDecoder{r: bufio.NewReader(r), lineStart: true}
}

// Next returns the next token map. It returns io.EOF at the end of the
// stream, an *ObjectError for a malformed object (after which Next may be
// called again), and any other error when reading failed (after which
// every call returns it). It does not apply CheckToken: callers decide
// what an unusable value means.
func (d *TokenDecoder) Next() (Tokens, error) {
	if d.err != nil {
		return nil, d.err
	}
	c, err := d.skipSpace()
	if err != nil {
		return nil, d.fail(err)
	}
	d.n++
	oe := &ObjectError{N: d.n, Offset: d.off}
	d.size, d.buf = 0, d.buf[:0]
	defer func() { clear(d.buf) }() // the object held token values
	if err := d.value(c, 0); err != nil {
		var se *syntaxError
		switch {
		case errors.As(err, &se):
			d.resync()
		case errors.Is(err, io.EOF):
			err = errUnexpectedEnd
		default:
			return nil, d.fail(err)
		}
		if d.size > MaxTokenObjectSize {
			err = fmt.Errorf("larger than %d bytes", MaxTokenObjectSize)
		}
		oe.Err = err
		return nil, oe
	}
	if d.size > MaxTokenObjectSize {
		oe.Err = fmt.Errorf("larger than %d bytes", MaxTokenObjectSize)
		return nil, oe
	}
	if c != '{' {
		oe.Err = fmt.Errorf("token map: want a JSON object of slot to string: got a JSON %s, want an object", jsonKind(c))
		return nil, oe
	}
	var t Tokens
	if err := t.UnmarshalJSON(d.buf); err != nil {
		oe.Err = err
		return nil, oe
	}
	return t, nil
}

// fail records a read error; io.EOF is returned as is, others wrapped.
func (d *TokenDecoder) fail(err error) error {
	if !errors.Is(err, io.EOF) {
		err = fmt.Errorf("token stream: read: %w", err)
	}
	d.err = err
	return err
}

// peek returns the next byte without consuming it.
func (d *TokenDecoder) peek() (byte, error) {
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// advance consumes the byte peek returned and records it in the object.
func (d *TokenDecoder) advance() {
	c, _ := d.r.ReadByte()
	d.off++
	d.size++
	if d.size <= MaxTokenObjectSize {
		d.buf = append(d.buf, c)
	}
	switch c {
	case '\n':
		d.lineStart = true
	case ' ', '\t', '\r':
	default:
		d.lineStart = false
	}
}

// next consumes and returns the next byte.
func (d *TokenDecoder) next() (byte, error) {
	c, err := d.peek()
	if err == nil {
		d.advance()
	}
	return c, err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipSpace consumes white space and returns the next byte, unconsumed.
func (d *TokenDecoder) skipSpace() (byte, error) {
	for {
		c, err := d.peek()
		if err != nil || !isSpace(c) {
			return c, err
		}
		d.advance()
	}
}

// errUnexpectedEnd is a stream that ends inside an object.
var errUnexpectedEnd = errors.New("unexpected end of input")

// syntaxError is bad JSON at the next, unconsumed, byte.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func (d *TokenDecoder) badByte() error {
	return &syntaxError{fmt.Sprintf("invalid JSON at byte %d", d.off)}
}

// resync skips what is left of a malformed object: nothing if the
// offending byte starts a line and the object has begun, else through the
// next newline.
func (d *TokenDecoder) resync() {
	if d.lineStart && d.size > 0 {
		return
	}
	for {
		c, err := d.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				d.fail(err)
			}
			return
		}
		if c == '\n' {
			return
		}
	}
}

// value parses one JSON value whose first byte c is peeked, not consumed.
func (d *TokenDecoder) value(c byte, depth int) error {
	switch {
	case c == '{' || c == '[':
		if depth == maxTokenNesting {
			return &syntaxError{fmt.Sprintf("nested deeper than %d levels at byte %d", maxTokenNesting, d.off)}
		}
		d.advance()
		if c == '{' {
			return d.object(depth + 1)
		}
		return d.array(depth + 1)
	case c == '"':
		d.advance()
		return d.str()
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return d.badByte()
}

// object parses the rest of an object after its '{'.
func (d *TokenDecoder) object(depth int) error {
	return d.elements('}', func(c byte) error {
		if c != '"' {
			return d.badByte()
		}
		d.advance()
		if err := d.str(); err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		c, err := d.skipSpace()
		if err != nil {
			return err
		}
		return d.value(c, depth)
	})
}

// array parses the rest of an array after its '['.
func (d *TokenDecoder) array(depth int) error {
	return d.elements(']', func(c byte) error { return d.value(c, depth) })
}

// elements parses comma-separated elements up to end, each with elem,
// which gets the element's first byte.
func (d *TokenDecoder) elements(end byte, elem func(c byte) error) error {
	c, err := d.skipSpace()
	if err != nil {
		return err
	}
	if c == end {
		d.advance()
		return nil
	}
	for {
		if err := elem(c); err != nil {
			return err
		}
		if c, err = d.skipSpace(); err != nil {
			return err
		}
		switch c {
		case end:
			d.advance()
			return nil
		case ',':
			d.advance()
		default:
			return d.badByte()
		}
		if c, err = d.skipSpace(); err != nil {
			return err
		}
	}
}

// expect consumes white space and then want.
func (d *TokenDecoder) expect(want byte) error {
	c, err := d.skipSpace()
	if err != nil {
		return err
	}
	if c != want {
		return d.badByte()
	}
	d.advance()
	return nil
}

// str parses the rest of a string after its opening quote. Raw control
// characters, newline included, are bad JSON.
func (d *TokenDecoder) str() error {
	for {
		c, err := d.peek()
		if err != nil {
			return err
		}
		if c < 0x20 {
			return d.badByte()
		}
		d.advance()
		switch c {
		case '"':
			return nil
		case '\\':
			e, err := d.peek()
			if err != nil {
				return err
			}
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.advance()
			case 'u':
				d.advance()
				for range 4 {
					h, err := d.peek()
					if err != nil {
						return err
					}
					if !isHex(h) {
						return d.badByte()
					}
					d.advance()
				}
			default:
				return d.badByte()
			}
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number parses -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. The byte
// after it is left unconsumed; the end of input ends it too.
func (d *TokenDecoder) number() error {
	c, _ := d.peek()
	if c == '-' {
		d.advance()
	}
	if err := d.digits(true); err != nil {
		return err
	}
	if c, err := d.peek(); err == nil && c == '.' {
		d.advance()
		if err := d.digits(false); err != nil {
			return err
		}
	}
	if c, err := d.peek(); err == nil && (c == 'e' || c == 'E') {
		d.advance()
		if c, err := d.peek(); err == nil && (c == '+' || c == '-') {
			d.advance()
		}
		if err := d.digits(false); err != nil {
			return err
		}
	}
	return nil
}

// digits consumes one or more digits; with integer, a leading zero stands
// alone.
func (d *TokenDecoder) digits(integer bool) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	if !isDigit(c) {
		return d.badByte()
	}
	d.advance()
	if integer && c == '0' {
		return nil
	}
	for {
		c, err := d.peek()
		if err != nil || !isDigit(c) {
			return nil
		}
		d.advance()
	}
}

// literal consumes want (true, false or null).
func (d *TokenDecoder) literal(want string) error {
	for i := range len(want) {
		c, err := d.peek()
		if err != nil {
			return err
		}
		if c != want[i] {
			return d.badByte()
		}
		d.advance()
	}
	return nil
}

// jsonKind names the kind of JSON value starting with c.
func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
