package resolve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

func reveal(t Tokens) map[string]string {
	out := map[string]string{}
	for k, v := range t {
		out[k] = v.Reveal()
	}
	return out
}

func TestTokensUnmarshalJSON(t *testing.T) {
	var tok Tokens
	if err := json.Unmarshal([]byte(`{"github":"ghp_REALone","codex":"eyJ.REAL.two"}`), &tok); err != nil {
		t.Fatalf("json.Unmarshal() error = %v", err)
	}
	if got, want := reveal(tok), map[string]string{"github": "ghp_REALone", "codex": "eyJ.REAL.two"}; !reflect.DeepEqual(got, want) {
		t.Errorf("json.Unmarshal() = %v, want %v", got, want)
	}
	// A second decode replaces the map; it does not merge.
	if err := json.Unmarshal([]byte(`{"openai":"sk-REALthree"}`), &tok); err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Slots(), []string{"openai"}; !reflect.DeepEqual(got, want) {
		t.Errorf("second json.Unmarshal() slots = %v, want %v", got, want)
	}
	b, err := json.Marshal(tok)
	if err != nil || string(b) != `{"openai":"`+Redacted+`"}` {
		t.Errorf("json.Marshal(tokens) = %s, %v; want redacted", b, err)
	}
}

func TestParseTokens(t *testing.T) {
	got, err := ParseTokens([]byte(" {\"a\":\"REALvalue-a\"}\n\t"))
	if err != nil {
		t.Fatalf("ParseTokens() error = %v", err)
	}
	if v := reveal(got); !reflect.DeepEqual(v, map[string]string{"a": "REALvalue-a"}) {
		t.Errorf("ParseTokens() = %v", v)
	}
	empty, err := ParseTokens([]byte(`{}`))
	if err != nil || len(empty) != 0 {
		t.Errorf("ParseTokens({}) = %v, %v; want empty map", empty, err)
	}
}

func TestParseTokensErrors(t *testing.T) {
	const secret = "REALSECRETVALUE"
	tests := []struct {
		name, in string
		want     string
	}{
		{"empty", ``, "token map: empty input"},
		{"white space", " \n ", "token map: empty input"},
		{"bad JSON", `{"a":"` + secret + `",}`, "token stream: object 1 (near byte"},
		{"bad JSON says where", `{"a":"` + secret + `" "b"}`, "invalid JSON at byte"},
		{"truncated", `{"a":"` + secret, "unexpected end of input"},
		{"non-string value", `{"a":"` + secret + `","b":12345678}`, `token stream: object 1: token map: slot "b": value must be a string`},
		{"object value", `{"a":{"x":"` + secret + `"}}`, `slot "a": value must be a string`},
		{"empty value", `{"a":"` + secret + `","b":""}`, `token stream: object 1: token map: slot "b": value is empty`},
		{"empty slot", `{"":"` + secret + `"}`, "token map: empty slot name"},
		{"array", `["` + secret + `"]`, "object 1: token map: want a JSON object of slot to string: got a JSON array, want an object"},
		{"string", `"` + secret + `"`, "got a JSON string, want an object"},
		{"null", `null`, "want a JSON object"},
		{"two objects", `{"a":"` + secret + `"} {"b":"` + secret + `"}`, "token map: more than one JSON object"},
		{"trailing garbage", `{"a":"x"} ` + secret, "token stream: object 2 (near byte 9): invalid JSON at byte 11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens([]byte(tt.in))
			if tt.name == "null" && err == nil {
				// encoding/json decodes null into a nil map: an empty token map.
				if len(got) != 0 {
					t.Errorf("ParseTokens(null) = %v, want empty", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseTokens(%q) error = nil, want %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTokens(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "12345678") {
				t.Errorf("ParseTokens(%q) error = %q, contains a value", tt.in, err)
			}
		})
	}
}

func TestTokenDecoderStream(t *testing.T) {
	in := `{"codex":"REALone"}
{"codex":"REALtwo","github":"REALgh"}

{"github":"REALthree"}
`
	d := NewTokenDecoder(strings.NewReader(in))
	want := []map[string]string{
		{"codex": "REALone"},
		{"codex": "REALtwo", "github": "REALgh"},
		{"github": "REALthree"},
	}
	for i, w := range want {
		got, err := d.Next()
		if err != nil {
			t.Fatalf("Next() #%d error = %v", i+1, err)
		}
		if !reflect.DeepEqual(reveal(got), w) {
			t.Errorf("Next() #%d = %v, want %v (each object replaces the map)", i+1, reveal(got), w)
		}
	}
	for range 2 {
		if got, err := d.Next(); !errors.Is(err, io.EOF) || got != nil {
			t.Errorf("Next() at the end = %v, %v; want nil, io.EOF", got, err)
		}
	}
}

func TestTokenDecoderErrorsNameTheObject(t *testing.T) {
	const secret = "REALSECRETINSTREAM"
	tests := []struct {
		name, in, want string
	}{
		{"third object bad JSON", `{"a":"x"}{"a":"y"}{"a":"` + secret + `"`, "token stream: object 3 (near byte 18): unexpected end of input"},
		{"second object non-string", `{"a":"x"} {"a":["` + secret + `"]}`, `token stream: object 2: token map: slot "a": value must be a string`},
		{"second object empty value", `{"a":"x"} {"a":"` + secret + `","b":""}`, `token stream: object 2: token map: slot "b": value is empty`},
		{"second object array", `{"a":"x"} ["` + secret + `"]`, "token stream: object 2: token map: want a JSON object of slot to string: got a JSON array, want an object"},
		{"first object syntax", `{"a" "` + secret + `"}`, "token stream: object 1 (near byte 0): invalid JSON at byte 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewTokenDecoder(strings.NewReader(tt.in))
			var err error
			for range 4 {
				if _, err = d.Next(); err != nil {
					break
				}
			}
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("Next() error = %v, want %q", err, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Next() error = %q, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Next() error = %q, contains the value", err)
			}
		})
	}
}

// tokensErr matches every error ParseTokens can return: fixed phrases,
// numbers and a quoted slot name. None can carry a value.
var tokensErr = regexp.MustCompile(`^(token map: empty input|token map: more than one JSON object|` +
	`token stream: object \d+ \(near byte \d+\): (invalid JSON at byte \d+|got a JSON \w+( \S+)?, want an object|unexpected end of input|invalid JSON)|` +
	`token stream: object \d+: token map: (empty slot name|slot "(?:[^"\\]|\\.)*": value (must be a string|is empty)|` +
	`want a JSON object of slot to string: (invalid JSON at byte \d+|got a JSON \w+( \S+)?, want an object|unexpected end of input|invalid JSON)))$`)

// jsonStrings returns the string literals of data, split into object keys
// and values, found lexically so that malformed input works too.
func jsonStrings(data []byte) (keys, values []string) {
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		j := i + 1
		for j < len(data) && data[j] != '"' {
			if data[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(data) {
			return keys, append(values, string(data[i+1:]))
		}
		raw, lit := string(data[i+1:j]), data[i:j+1]
		found := []string{raw}
		var s string
		if json.Unmarshal(lit, &s) == nil && s != raw {
			found = append(found, s)
		}
		i = j
		if k := bytes.IndexFunc(data[j+1:], func(r rune) bool { return !unicode.IsSpace(r) }); k >= 0 && data[j+1+k] == ':' {
			keys = append(keys, found...)
		} else {
			values = append(values, found...)
		}
	}
	return keys, values
}

var digitRun = regexp.MustCompile(`[0-9]+`)

func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{
		`{"codex":"eyJhbGciOi.REALpayload.sig"}`,
		`{"a":"REALvalue","b":12345}`,
		`{"a":"REALvalue"} {"b":"REALother"}`,
		`["REALinarray"]`,
		`{"a":"","b":"REALnonempty"}`,
		`{"a":"REAL\u0041escaped"}`,
		`{"":"REALemptyslot"}`,
		`"REALbare"`,
		`{"a":"REALtrunc`,
		``,
	} {
		f.Add([]byte(s))
	}
	// Every fixed phrase an error may hold, digits normalised: a value that
	// is part of one is not a leak.
	vocabulary := digitRun.ReplaceAllString(strings.Join([]string{
		"token map: empty input", "token map: more than one JSON object",
		"token stream: object 0 (near byte 0): ", "token stream: object 0: token map: ",
		"empty slot name", `slot "": value must be a string`, `slot "": value is empty`,
		"want a JSON object of slot to string: ", "invalid JSON at byte 0",
		"got a JSON string, want an object", "got a JSON number, want an object",
		"got a JSON bool, want an object", "got a JSON array, want an object",
		"got a JSON object, want an object", "unexpected end of input", "invalid JSON",
	}, "\n"), "0")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseTokens(data)
		if err == nil {
			return
		}
		msg := err.Error()
		if !tokensErr.MatchString(msg) {
			t.Fatalf("ParseTokens(%q) error = %q, not a fixed template", data, msg)
		}
		keys, values := jsonStrings(data)
		// Slot names may be quoted in errors; they are not values.
		for _, k := range keys {
			msg = strings.ReplaceAll(msg, fmt.Sprintf("%q", k), `""`)
		}
		for _, v := range values {
			if len(v) <= 3 || !strings.Contains(msg, v) {
				continue
			}
			if !strings.Contains(vocabulary, digitRun.ReplaceAllString(v, "0")) {
				t.Errorf("ParseTokens(%q) error = %q contains the value %q", data, err, v)
			}
		}
	})
}
