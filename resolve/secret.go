package resolve

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rs/zerolog"
)

// Redacted is what every formatting or marshalling path of a Secret prints.
const Redacted = "[REDACTED]"

// Secret holds a credential. The zero value is an empty secret. Its value
// is reachable only through Reveal; fmt, encoding/json, encoding.TextMarshaler,
// zerolog and slog all see Redacted. Secret is immutable and safe for
// concurrent use.
type Secret struct {
	v string
}

// NewSecret wraps v.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the credential. Call it only where the credential is
// injected into an upstream request; grep for Reveal to audit every use.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// Equal reports, in constant time, whether the secret equals v.
func (s Secret) Equal(v string) bool {
	return subtle.ConstantTimeCompare([]byte(s.v), []byte(v)) == 1
}

// In reports whether text contains the secret: a check that a string
// bound for the sandbox (an argument, a variable, a file) holds no real
// credential, without handing the value to the caller. An empty secret is
// in no text.
func (s Secret) In(text string) bool { return s.v != "" && strings.Contains(text, s.v) }

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "resolve.Secret(" + Redacted + ")" }

// Format implements fmt.Formatter so that every verb, %x and %q included,
// redacts.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			fmt.Fprint(f, s.GoString())
			return
		}
		fmt.Fprint(f, Redacted)
	case 'q':
		fmt.Fprintf(f, "%q", Redacted)
	default:
		fmt.Fprint(f, Redacted)
	}
}

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalZerologObject implements zerolog.LogObjectMarshaler.
func (Secret) MarshalZerologObject(e *zerolog.Event) { e.Bool("redacted", true) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

var (
	_ fmt.Formatter              = Secret{}
	_ fmt.Stringer               = Secret{}
	_ fmt.GoStringer             = Secret{}
	_ zerolog.LogObjectMarshaler = Secret{}
	_ slog.LogValuer             = Secret{}
)
