package resolve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Tokens maps a slot name to its credential. A nil Tokens is empty.
type Tokens map[string]Secret

// Slots returns the slot names in sorted order.
func (t Tokens) Slots() []string {
	s := make([]string, 0, len(t))
	for k := range t {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// UnmarshalJSON decodes {"slot":"value",...}. Every value must be a
// non-empty string; an error names the slot, never the value.
func (t *Tokens) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("token map: want a JSON object of slot to string: %w", scrubJSONError(err))
	}
	out := make(Tokens, len(raw))
	for slot, v := range raw {
		if slot == "" {
			return errors.New("token map: empty slot name")
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("token map: slot %q: value must be a string", slot)
		}
		if s == "" {
			return fmt.Errorf("token map: slot %q: value is empty", slot)
		}
		out[slot] = NewSecret(s)
	}
	*t = out
	return nil
}

// MarshalJSON redacts every value, so a Tokens can be logged safely.
func (t Tokens) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(t))
	for k := range t {
		m[k] = Redacted
	}
	return json.Marshal(m)
}

// ParseTokens decodes one JSON object {"slot":"value"}. Trailing data
// other than white space is an error.
func ParseTokens(data []byte) (Tokens, error) {
	d := NewTokenDecoder(bytes.NewReader(data))
	t, err := d.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("token map: empty input")
		}
		return nil, err
	}
	if _, err := d.Next(); !errors.Is(err, io.EOF) {
		if err == nil {
			return nil, errors.New("token map: more than one JSON object")
		}
		return nil, err
	}
	return t, nil
}

// TokenDecoder reads the stdin protocol: a stream of JSON objects, each of
// which replaces the whole token map. Not safe for concurrent use.
type TokenDecoder struct {
	dec *json.Decoder
	n   int
}

// NewTokenDecoder returns a decoder reading from r.
func NewTokenDecoder(r io.Reader) *TokenDecoder {
	return &TokenDecoder{dec: json.NewDecoder(r)}
}

// Next returns the next token map. It returns io.EOF at a clean end of the
// stream; a malformed object is an error naming its position in the stream
// (object number and byte offset), never its content.
func (d *TokenDecoder) Next() (Tokens, error) {
	var raw json.RawMessage
	if err := d.dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("token stream: object %d (near byte %d): %w", d.n+1, d.dec.InputOffset(), scrubJSONError(err))
	}
	d.n++
	var t Tokens
	if err := t.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("token stream: object %d: %w", d.n, err)
	}
	return t, nil
}

// scrubJSONError keeps the shape of a JSON error without quoting input:
// encoding/json's syntax errors can echo a character of the input, and
// type errors name the Go type, which is harmless, but we keep only what
// cannot carry a value.
func scrubJSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("got a JSON %s, want an object", te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of input")
	}
	return errors.New("invalid JSON")
}
