package resolve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestEnvPrintsNamesOnly(t *testing.T) {
	const real = "sk-real-value-1234"
	e := Env{"OPENAI_API_KEY": NewSecret(real)}
	j, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(e), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e), fmt.Sprintf("%q", e), string(j)} {
		if strings.Contains(out, real) || !strings.Contains(out, "OPENAI_API_KEY") {
			t.Errorf("formatted Env %q: want the name and not the value", out)
		}
	}
	if got := e.Names(); len(got) != 1 || got[0] != "OPENAI_API_KEY" {
		t.Errorf("Names() = %v", got)
	}
}

func TestSecretIn(t *testing.T) {
	s := NewSecret("ghp_real")
	for _, tt := range []struct {
		text string
		want bool
	}{
		{"ghp_real", true},
		{"--env=GH_TOKEN=ghp_real", true},
		{"ghp_rea", false},
		{"", false},
	} {
		if got := s.In(tt.text); got != tt.want {
			t.Errorf("In(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
	if (Secret{}).In("anything") {
		t.Error("an empty secret is in no text")
	}
	tok := Tokens{"b": NewSecret("two"), "a": NewSecret("one"), "c": NewSecret("one-and-two"), "z": {}}
	exact := tok.Matcher(nil)
	if slot, ok := exact("x one-and-two y"); !ok || slot != "a" {
		t.Errorf("Matcher(nil) = %q, %v; want the first slot in sorted order, a", slot, ok)
	}
	if slot, ok := exact("placeholder only"); ok {
		t.Errorf("Matcher(nil) = %q, want none", slot)
	}
	// With forms: a form matches as the value does; "" forms are ignored.
	upper := tok.Matcher(func(s string) []string { return []string{strings.ToUpper(s), ""} })
	if slot, ok := upper("an ONE-AND-TWO here"); !ok || slot != "a" {
		t.Errorf("Matcher(upper) = %q, %v; want a", slot, ok)
	}
	if slot, ok := upper("nothing"); ok {
		t.Errorf("Matcher(upper) = %q on a text holding no form", slot)
	}
}

func TestTokenEncoderRoundTrip(t *testing.T) {
	maps := []Tokens{
		{"api": NewSecret("sk-1"), "gh": NewSecret(`ghp_"quoted"\<&>`)},
		{"api": NewSecret("sk-2")},
		{},
	}
	var buf bytes.Buffer
	enc := NewTokenEncoder(&buf)
	for _, m := range maps {
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != len(maps) {
		t.Errorf("%d lines, want one per map (%d)", n, len(maps))
	}
	if strings.Contains(buf.String(), Redacted) {
		t.Error("the stream carries redacted values, not the tokens")
	}
	dec := NewTokenDecoder(&buf)
	for i, want := range maps {
		got, err := dec.Next()
		if err != nil {
			t.Fatalf("object %d: %v", i, err)
		}
		if len(got) != len(want) {
			t.Fatalf("object %d: slots %v, want %v", i, got.Slots(), want.Slots())
		}
		for slot, v := range want {
			if !got[slot].Equal(v.Reveal()) {
				t.Errorf("object %d: slot %s does not round-trip", i, slot)
			}
		}
	}
	if _, err := dec.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last object: %v, want EOF", err)
	}
}

func TestTokenEncoderErrorHoldsNoValue(t *testing.T) {
	err := NewTokenEncoder(failWriter{}).Encode(Tokens{"api": NewSecret("sk-secret")})
	if err == nil || strings.Contains(err.Error(), "sk-secret") {
		t.Errorf("Encode to a failing writer: %v; want an error without the value", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// The encoder's buffer holds no token once the line is written.
func TestTokenEncoderClearsBuffer(t *testing.T) {
	var out bytes.Buffer
	enc := NewTokenEncoder(&out)
	for _, m := range []Tokens{{"a": NewSecret("short")}, {"a": NewSecret(strings.Repeat("long-secret-", 40))}} {
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
		for i, c := range enc.buf[:cap(enc.buf)] {
			if c != 0 {
				t.Fatalf("buffer byte %d is %q after Encode, want cleared", i, c)
			}
		}
	}
}
