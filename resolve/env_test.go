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
	tok := Tokens{"b": NewSecret("two"), "a": NewSecret("one"), "c": NewSecret("one-and-two")}
	if slot, ok := tok.FindIn("x one-and-two y"); !ok || slot != "a" {
		t.Errorf("FindIn = %q, %v; want the first slot in sorted order, a", slot, ok)
	}
	if slot, ok := tok.FindIn("placeholder only"); ok {
		t.Errorf("FindIn = %q, want none", slot)
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
