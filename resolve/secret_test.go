package resolve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

const realValue = "ghp_REALSECRETVALUE0123456789abcdefABCDEF"

// assertRedacted fails unless out holds want (a redaction marker) and
// none of the real value.
func assertRedacted(t *testing.T, path, out, want string) {
	t.Helper()
	if strings.Contains(out, realValue) || strings.Contains(out, realValue[4:20]) {
		t.Errorf("%s = %q, contains the real value", path, out)
	}
	if !strings.Contains(out, want) {
		t.Errorf("%s = %q, want it to contain %q", path, out, want)
	}
	// A hex or base64 rendering of the value would hide from the checks above.
	if strings.Contains(out, fmt.Sprintf("%x", realValue)[:16]) {
		t.Errorf("%s = %q, contains the real value in hex", path, out)
	}
}

type holder struct {
	Name   string
	Secret Secret
	Ptr    *Secret
}

func TestSecretFmt(t *testing.T) {
	s := NewSecret(realValue)
	h := holder{Name: "n", Secret: s, Ptr: &s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%20s", "%-8v", "%.3s"} {
		assertRedacted(t, fmt.Sprintf("Sprintf(%q, secret)", verb), fmt.Sprintf(verb, s), Redacted)
		assertRedacted(t, fmt.Sprintf("Sprintf(%q, &secret)", verb), fmt.Sprintf(verb, &s), Redacted)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assertRedacted(t, fmt.Sprintf("Sprintf(%q, struct)", verb), fmt.Sprintf(verb, h), Redacted)
		assertRedacted(t, fmt.Sprintf("Sprintf(%q, map)", verb), fmt.Sprintf(verb, map[string]Secret{"k": s}), Redacted)
		assertRedacted(t, fmt.Sprintf("Sprintf(%q, Tokens)", verb), fmt.Sprintf(verb, Tokens{"k": s}), Redacted)
		assertRedacted(t, fmt.Sprintf("Sprintf(%q, slice)", verb), fmt.Sprintf(verb, []Secret{s}), Redacted)
	}
	assertRedacted(t, "Sprint", fmt.Sprint(s), Redacted)
	assertRedacted(t, "Sprintln", fmt.Sprintln("x", s), Redacted)
	assertRedacted(t, "String", s.String(), Redacted)
	assertRedacted(t, "GoString", s.GoString(), "resolve.Secret("+Redacted+")")
	assertRedacted(t, "Sprintf(%#v)", fmt.Sprintf("%#v", s), "resolve.Secret("+Redacted+")")
	assertRedacted(t, "Errorf(%w-less %v)", fmt.Errorf("inject: %v", s).Error(), Redacted)
}

func TestSecretJSONAndText(t *testing.T) {
	s := NewSecret(realValue)
	values := map[string]any{
		"secret":      s,
		"pointer":     &s,
		"struct":      holder{Secret: s, Ptr: &s},
		"map":         map[string]Secret{"k": s},
		"map key":     map[Secret]int{s: 1},
		"Tokens":      Tokens{"github": s},
		"any in map":  map[string]any{"k": s},
		"slice":       []Secret{s, s},
		"nested ptrs": &holder{Ptr: &s},
	}
	for name, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			t.Errorf("json.Marshal(%s) error = %v", name, err)
			continue
		}
		assertRedacted(t, "json.Marshal("+name+")", string(b), Redacted)
		b, err = json.MarshalIndent(v, "", " ")
		if err != nil {
			t.Errorf("json.MarshalIndent(%s) error = %v", name, err)
			continue
		}
		assertRedacted(t, "json.MarshalIndent("+name+")", string(b), Redacted)
	}
	text, err := s.MarshalText()
	if err != nil {
		t.Fatalf("MarshalText() error = %v", err)
	}
	assertRedacted(t, "MarshalText", string(text), Redacted)
}

func TestSecretZerolog(t *testing.T) {
	s := NewSecret(realValue)
	tests := []struct {
		name string
		log  func(e *zerolog.Event) *zerolog.Event
		want string
	}{
		// Interface and Any use MarshalZerologObject when it is there.
		{"Interface", func(e *zerolog.Event) *zerolog.Event { return e.Interface("k", s) }, `"k":{"redacted":true}`},
		{"Any", func(e *zerolog.Event) *zerolog.Event { return e.Any("k", s) }, `"k":{"redacted":true}`},
		{"Object", func(e *zerolog.Event) *zerolog.Event { return e.Object("k", s) }, `"k":{"redacted":true}`},
		{"Stringer", func(e *zerolog.Event) *zerolog.Event { return e.Stringer("k", s) }, `"k":"` + Redacted + `"`},
		{"Interface struct", func(e *zerolog.Event) *zerolog.Event { return e.Interface("k", holder{Secret: s}) }, Redacted},
		{"Any Tokens", func(e *zerolog.Event) *zerolog.Event { return e.Any("k", Tokens{"github": s}) }, `"github":"` + Redacted + `"`},
		{"Str Sprint", func(e *zerolog.Event) *zerolog.Event { return e.Str("k", fmt.Sprint(s)) }, Redacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := zerolog.New(&buf)
			tt.log(l.Info()).Msg("m")
			assertRedacted(t, "zerolog "+tt.name, buf.String(), tt.want)
		})
	}
	t.Run("Msgf", func(t *testing.T) {
		var buf bytes.Buffer
		l := zerolog.New(&buf)
		l.Info().Msgf("token %v %s %q", s, s, s)
		assertRedacted(t, "zerolog Msgf", buf.String(), Redacted)
	})
}

func TestSecretSlog(t *testing.T) {
	s := NewSecret(realValue)
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		for attr, v := range map[string]any{"secret": s, "pointer": &s, "struct": holder{Secret: s}, "Tokens": Tokens{"k": s}} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("m", slog.Any("k", v))
			assertRedacted(t, "slog "+name+" Any("+attr+")", buf.String(), Redacted)
		}
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("m", "k", s)
		assertRedacted(t, "slog "+name+" key-value", buf.String(), Redacted)
	}
}

func TestSecretAccessors(t *testing.T) {
	s := NewSecret(realValue)
	if got := s.Reveal(); got != realValue {
		t.Errorf("Reveal() = %q, want the value", got)
	}
	if s.IsZero() || !(Secret{}).IsZero() || !NewSecret("").IsZero() {
		t.Error("IsZero() wrong")
	}
	if !s.Equal(realValue) || s.Equal(realValue+"x") || s.Equal("") {
		t.Error("Equal() wrong")
	}
}
