package resolve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
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

// Matcher returns a function that reports the first slot, in sorted
// order, whose credential text contains in one of the forms encode gives
// for it: encode(value) lists them (say, its URL-escaped and base64
// forms); nil means the value as is. The forms are computed once and
// never leave the matcher: it answers "does this text hold a real token"
// without handing the caller a value. A zero secret matches nothing.
func (t Tokens) Matcher(encode func(secret string) []string) func(text string) (slot string, ok bool) {
	type slotForms struct {
		slot  string
		forms []string
	}
	var all []slotForms
	for _, slot := range t.Slots() {
		v := t[slot].Reveal() // compared inside the matcher only
		if v == "" {
			continue
		}
		forms := []string{v}
		if encode != nil {
			forms = append(forms, encode(v)...)
		}
		all = append(all, slotForms{slot, slices.DeleteFunc(forms, func(f string) bool { return f == "" })})
	}
	return func(text string) (string, bool) {
		for _, sf := range all {
			for _, f := range sf.forms {
				if strings.Contains(text, f) {
					return sf.slot, true
				}
			}
		}
		return "", false
	}
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

// CheckToken reports whether v can be sent as a credential in an HTTP
// header: it must be non-empty, valid UTF-8, and hold no ASCII control
// character (CR, LF, TAB and DEL included) and no Unicode white space. The
// error never quotes v.
func CheckToken(v string) error {
	if v == "" {
		return errors.New("value is empty")
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	for _, r := range v {
		switch {
		case r < 0x20 || r == 0x7f:
			return errors.New("value contains a control character")
		case unicode.IsSpace(r):
			return errors.New("value contains white space")
		}
	}
	return nil
}

// ParseTokens decodes one JSON object {"slot":"value"} (a tokens file).
// Trailing data other than white space is an error, and so is a value that
// fails CheckToken; errors name the slot, never the value.
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
	var errs []error
	for _, slot := range t.Slots() {
		if err := CheckToken(t[slot].Reveal()); err != nil { // checked, not shown
			errs = append(errs, fmt.Errorf("token map: slot %q: %w", slot, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
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
