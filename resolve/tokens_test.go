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
	"time"
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
		{"bad JSON", `{"a":"` + secret + `",}`, "token stream: object 1 (at byte 0): invalid JSON at byte 23"},
		{"bad JSON says where", `{"a":"` + secret + `" "b"}`, "invalid JSON at byte 23"},
		{"truncated", `{"a":"` + secret, "token stream: object 1 (at byte 0): unexpected end of input"},
		{"non-string value", `{"a":"` + secret + `","b":12345678}`, `token stream: object 1 (at byte 0): token map: slot "b": value must be a string`},
		{"object value", `{"a":{"x":"` + secret + `"}}`, `slot "a": value must be a string`},
		{"empty value", `{"a":"` + secret + `","b":""}`, `token stream: object 1 (at byte 0): token map: slot "b": value is empty`},
		{"empty slot", `{"":"` + secret + `"}`, "token map: empty slot name"},
		{"array", `["` + secret + `"]`, "object 1 (at byte 0): token map: want a JSON object of slot to string: got a JSON array, want an object"},
		{"string", `"` + secret + `"`, "got a JSON string, want an object"},
		{"null", `null`, "got a JSON null, want an object"},
		{"two objects", `{"a":"` + secret + `"} {"b":"` + secret + `"}`, "token map: more than one JSON object"},
		{"trailing garbage", `{"a":"x"} ` + secret, "token stream: object 2 (at byte 10): invalid JSON at byte 10"},
		{"CR LF in a value", `{"a":"` + secret + `\r\n"}`, `token map: slot "a": value contains a control character`},
		{"trailing space in a value", `{"a":"` + secret + ` "}`, `token map: slot "a": value contains white space`},
		{"no-break space in a value", `{"a":"` + secret + `\u00a0"}`, `token map: slot "a": value contains white space`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseTokens(%q) = %v, nil; want error %q", tt.in, got, tt.want)
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

// TestParseTokensNamesEveryBadSlot: a tokens file with several unusable
// values is one error per slot, each naming it and quoting nothing else.
func TestParseTokensNamesEveryBadSlot(t *testing.T) {
	in := "{\"b\":\"REALb\\r\\n\",\"a\":\"REAL\\ta\",\"ok\":\"REALok\"}\n"
	_, err := ParseTokens([]byte(in))
	if err == nil {
		t.Fatalf("ParseTokens(%q) error = nil, want one per bad slot", in)
	}
	want := `token map: slot "a": value contains a control character` + "\n" +
		`token map: slot "b": value contains a control character`
	if err.Error() != want {
		t.Errorf("ParseTokens(%q) error = %q, want %q", in, err, want)
	}
}

func TestCheckToken(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // empty: valid
	}{
		{"bearer token", "ghp_0123456789abcdefABCDEF", ""},
		{"JWT", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln", ""},
		{"base64 padding and symbols", "sk-ant-api03_+/=-.~", ""},
		{"non-ASCII letters", "tökén-é", ""},
		{"empty", "", "value is empty"},
		{"CR", "abc\rdef", "value contains a control character"},
		{"LF", "abc\n", "value contains a control character"},
		{"CR LF", "abc\r\n", "value contains a control character"},
		{"TAB", "\tabc", "value contains a control character"},
		{"NUL", "ab\x00c", "value contains a control character"},
		{"DEL", "ab\x7fc", "value contains a control character"},
		{"ESC", "ab\x1bc", "value contains a control character"},
		{"space", "abc def", "value contains white space"},
		{"trailing space", "abc ", "value contains white space"},
		{"no-break space", "abc\u00a0", "value contains white space"},
		{"next line", "abc\u0085", "value contains white space"},
		{"line separator", "abc\u2028", "value contains white space"},
		{"ideographic space", "abc\u3000", "value contains white space"},
		{"invalid UTF-8", "abc\xff", "value is not valid UTF-8"},
		{"lone surrogate bytes", "abc\xed\xa0\x80", "value is not valid UTF-8"},
		{"truncated rune", "abc\xe2\x82", "value is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckToken(tt.in)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckToken(%q) = %v, want nil", tt.in, err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("CheckToken(%q) = %v, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestTokenDecoderStream(t *testing.T) {
	in := `{"codex":"REALone"}
{"codex":"REALtwo","github":"REALgh"}

{"github":"REALthree"}` + "\t\r\n" + `{"a":"REALfour"}{"a":"REALfive"} {
  "a": "REALsix",
  "b": "REALseven"
}
`
	d := NewTokenDecoder(strings.NewReader(in))
	want := []map[string]string{
		{"codex": "REALone"},
		{"codex": "REALtwo", "github": "REALgh"},
		{"github": "REALthree"},
		{"a": "REALfour"},
		{"a": "REALfive"},
		{"a": "REALsix", "b": "REALseven"},
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

// decodeAll calls Next until io.EOF and returns the maps and the error
// messages in order, each as "map" or the error text.
func decodeAll(t *testing.T, in string) (maps []map[string]string, errs []string) {
	t.Helper()
	d := NewTokenDecoder(strings.NewReader(in))
	for i := 0; ; i++ {
		if i > len(in)+1 {
			t.Fatalf("Next() on %q: more than %d results; the decoder does not advance", in, len(in)+1)
		}
		got, err := d.Next()
		if errors.Is(err, io.EOF) {
			return maps, errs
		}
		if err != nil {
			var oe *ObjectError
			if !errors.As(err, &oe) {
				t.Fatalf("Next() on %q error = %v, want an *ObjectError", in, err)
			}
			errs = append(errs, err.Error())
			continue
		}
		maps = append(maps, reveal(got))
	}
}

func TestTokenDecoderResynchronises(t *testing.T) {
	const secret = "REALSECRETINSTREAM"
	huge := `{"a":"` + strings.Repeat("x", MaxTokenObjectSize) + `"}`
	tests := []struct {
		name     string
		in       string
		wantMaps []map[string]string
		wantErrs []string
	}{
		{
			name:     "good, bad, good",
			in:       "{\"a\":\"REAL1\"}\n{bad\n{\"a\":\"REAL2\"}\n",
			wantMaps: []map[string]string{{"a": "REAL1"}, {"a": "REAL2"}},
			wantErrs: []string{"token stream: object 2 (at byte 14): invalid JSON at byte 15"},
		},
		{
			name:     "garbage line between objects",
			in:       "{\"a\":\"REAL1\"}\n" + secret + " {\"x\":\"" + secret + "\"}\n{\"a\":\"REAL2\"}\n",
			wantMaps: []map[string]string{{"a": "REAL1"}, {"a": "REAL2"}},
			wantErrs: []string{"token stream: object 2 (at byte 14): invalid JSON at byte 14"},
		},
		{
			name:     "garbage then an object on the next line",
			in:       "}}}\n\n  ]\n{\"a\":\"REAL1\"}",
			wantMaps: []map[string]string{{"a": "REAL1"}},
			wantErrs: []string{
				"token stream: object 1 (at byte 0): invalid JSON at byte 0",
				"token stream: object 2 (at byte 7): invalid JSON at byte 7",
			},
		},
		{
			name:     "object missing its end, next one on the next line",
			in:       "{\"a\":\"" + secret + "\"\n{\"a\":\"REAL2\"}\n",
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{"token stream: object 1 (at byte 0): invalid JSON at byte 26"},
		},
		{
			name:     "string not closed on its line",
			in:       "{\"a\":\"" + secret + "\n{\"a\":\"REAL2\"}\n",
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{"token stream: object 1 (at byte 0): invalid JSON at byte 24"},
		},
		{
			name:     "non-string value skipped whole, even over lines",
			in:       "{\"a\":\n  {\"b\":\"" + secret + "\"}}\n{\"a\":\"REAL2\"}",
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{`token stream: object 1 (at byte 0): token map: slot "a": value must be a string`},
		},
		{
			name:     "values that are not objects",
			in:       `["` + secret + `"] "` + secret + `" 123 -1.5e3 true null {"a":"REAL2"}`,
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{
				"token stream: object 1 (at byte 0): token map: want a JSON object of slot to string: got a JSON array, want an object",
				"token stream: object 2 (at byte 23): token map: want a JSON object of slot to string: got a JSON string, want an object",
				"token stream: object 3 (at byte 44): token map: want a JSON object of slot to string: got a JSON number, want an object",
				"token stream: object 4 (at byte 48): token map: want a JSON object of slot to string: got a JSON number, want an object",
				"token stream: object 5 (at byte 55): token map: want a JSON object of slot to string: got a JSON bool, want an object",
				"token stream: object 6 (at byte 60): token map: want a JSON object of slot to string: got a JSON null, want an object",
			},
		},
		{
			name:     "huge object",
			in:       "{\"a\":\"REAL1\"}\n" + huge + "\n{\"a\":\"REAL2\"}\n",
			wantMaps: []map[string]string{{"a": "REAL1"}, {"a": "REAL2"}},
			wantErrs: []string{"token stream: object 2 (at byte 14): larger than 1048576 bytes"},
		},
		{
			name:     "huge bad object",
			in:       `{"a":"` + strings.Repeat("x", MaxTokenObjectSize) + `",}` + "\n{\"a\":\"REAL2\"}\n",
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{"token stream: object 1 (at byte 0): larger than 1048576 bytes"},
		},
		{
			name:     "object of exactly the maximum size",
			in:       `{"a":"` + strings.Repeat("x", MaxTokenObjectSize-8) + `"}`,
			wantMaps: []map[string]string{{"a": strings.Repeat("x", MaxTokenObjectSize-8)}},
		},
		{
			name:     "nested too deeply",
			in:       strings.Repeat("[", 100) + "\n{\"a\":\"REAL2\"}",
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{"token stream: object 1 (at byte 0): nested deeper than 64 levels at byte 64"},
		},
		{
			name:     "bad escape",
			in:       `{"a":"\q` + secret + `"}` + "\n" + `{"a":"REAL2"}`,
			wantMaps: []map[string]string{{"a": "REAL2"}},
			wantErrs: []string{"token stream: object 1 (at byte 0): invalid JSON at byte 7"},
		},
		{
			name:     "ends inside an object",
			in:       `{"a":"REAL1"} {"a":"` + secret,
			wantMaps: []map[string]string{{"a": "REAL1"}},
			wantErrs: []string{"token stream: object 2 (at byte 14): unexpected end of input"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maps, errs := decodeAll(t, tt.in)
			if !reflect.DeepEqual(maps, tt.wantMaps) && !(len(maps) == 0 && len(tt.wantMaps) == 0) {
				t.Errorf("maps = %.200v, want %.200v", maps, tt.wantMaps)
			}
			if !reflect.DeepEqual(errs, tt.wantErrs) {
				t.Errorf("errors = %q, want %q", errs, tt.wantErrs)
			}
			for _, e := range errs {
				if strings.Contains(e, secret) || strings.Contains(e, "xxxx") {
					t.Errorf("error %q contains a value", e)
				}
			}
		})
	}
}

// TestTokenDecoderDoesNotWaitAfterBadObject: with the writer still open, a
// bad line and a good map are both answered without waiting for more
// input (the launcher keeps stdin open for later maps).
func TestTokenDecoderDoesNotWaitAfterBadObject(t *testing.T) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() {
		// The pipe is unbuffered: each write returns once it is read.
		pw.Write([]byte("{bad\n"))
		pw.Write([]byte(`{"a":"REAL1"}` + "\n"))
	}()
	d := NewTokenDecoder(pr)
	type result struct {
		t   Tokens
		err error
	}
	next := func() result {
		c := make(chan result, 1)
		go func() { t, err := d.Next(); c <- result{t, err} }()
		select {
		case r := <-c:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("Next() blocked with a whole object available")
			return result{}
		}
	}
	if r := next(); r.err == nil || !strings.Contains(r.err.Error(), "object 1") {
		t.Errorf("Next() #1 = %v, %v; want an error for object 1", r.t, r.err)
	}
	if r := next(); r.err != nil || !reflect.DeepEqual(reveal(r.t), map[string]string{"a": "REAL1"}) {
		t.Errorf("Next() #2 = %v, %v; want the good map", reveal(r.t), r.err)
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestTokenDecoderReadErrorIsFinal(t *testing.T) {
	errBroken := errors.New("broken pipe")
	d := NewTokenDecoder(&failingReader{data: []byte(`{"a":"REAL1"} {"a":"RE`), err: errBroken})
	if got, err := d.Next(); err != nil || len(got) != 1 {
		t.Fatalf("Next() #1 = %v, %v; want one slot", got, err)
	}
	for i := range 2 {
		_, err := d.Next()
		var oe *ObjectError
		if !errors.Is(err, errBroken) || errors.As(err, &oe) {
			t.Errorf("Next() #%d error = %v, want the read error, not an *ObjectError", i+2, err)
		}
	}
}

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

// tokensErr matches every line of an error ParseTokens or Next can
// return: fixed phrases, numbers and a quoted slot name. None can carry a
// value.
var tokensErr = regexp.MustCompile(`^(token map: empty input|token map: more than one JSON object|` +
	`token map: slot "(?:[^"\\]|\\.)*": value (is empty|is not valid UTF-8|contains a control character|contains white space)|` +
	`token stream: object \d+ \(at byte \d+\): (invalid JSON at byte \d+|nested deeper than \d+ levels at byte \d+|unexpected end of input|larger than \d+ bytes|` +
	`token map: (empty slot name|slot "(?:[^"\\]|\\.)*": value (must be a string|is empty)|` +
	`want a JSON object of slot to string: (invalid JSON at byte \d+|got a JSON \w+( \S+)?, want an object|unexpected end of input|invalid JSON))))$`)

// vocabulary is every fixed phrase an error may hold, digits normalised: a
// value that is part of one is not a leak.
var vocabulary = digitRun.ReplaceAllString(strings.Join([]string{
	"token map: empty input", "token map: more than one JSON object",
	"token stream: object 0 (at byte 0): ", "token map: ",
	"empty slot name", `slot "": value must be a string`, `slot "": value is empty`,
	"want a JSON object of slot to string: ", "invalid JSON at byte 0",
	"nested deeper than 0 levels at byte 0", "larger than 0 bytes",
	"got a JSON string, want an object", "got a JSON number, want an object",
	"got a JSON bool, want an object", "got a JSON array, want an object",
	"got a JSON null, want an object", "got a JSON object, want an object",
	"unexpected end of input", "invalid JSON", "value is not valid UTF-8",
	"value contains a control character", "value contains white space",
}, "\n"), "0")

// checkTokensError fails t if err is not made of fixed templates or quotes
// a string value of data.
func checkTokensError(t *testing.T, data []byte, err error) {
	t.Helper()
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		if !tokensErr.MatchString(line) {
			t.Fatalf("error on %q = %q, line %q is not a fixed template", data, msg, line)
		}
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
			t.Errorf("error on %q = %q contains the value %q", data, err, v)
		}
	}
}

var fuzzSeeds = []string{
	`{"codex":"eyJhbGciOi.REALpayload.sig"}`,
	`{"a":"REALvalue","b":12345}`,
	`{"a":"REALvalue"} {"b":"REALother"}`,
	`["REALinarray"]`,
	`{"a":"","b":"REALnonempty"}`,
	`{"a":"REAL\u0041escaped"}`,
	`{"a":"REAL\r\nvalue"}`,
	`{"":"REALemptyslot"}`,
	`"REALbare"`,
	`{"a":"REALtrunc`,
	"{bad\n{\"a\":\"REALgood\"}\n",
	"{\"a\":\n [1, 2.5e-3, true, null, {\"b\": []}]}",
	"-0.0E+1 [[[]]] {}",
	``,
}

func FuzzParseTokens(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseTokens(data); err != nil {
			checkTokensError(t, data, err)
		}
	})
}

// FuzzTokenDecoder: the decoder always advances to io.EOF, every error is
// an *ObjectError quoting no value, and it accepts one whole value exactly
// when encoding/json does.
func FuzzTokenDecoder(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewTokenDecoder(bytes.NewReader(data))
		var results []error
		for {
			if len(results) > len(data)+1 {
				t.Fatalf("Next() on %q: more than %d results; the decoder does not advance", data, len(data)+1)
			}
			_, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var oe *ObjectError
				if !errors.As(err, &oe) {
					t.Fatalf("Next() on %q error = %v, want an *ObjectError", data, err)
				}
				checkTokensError(t, data, err)
			}
			results = append(results, err)
		}
		syntaxOK := func(err error) bool {
			var se *syntaxError
			return !errors.As(err, &se) && !errors.Is(err, errUnexpectedEnd)
		}
		oneValue := len(results) == 1 && syntaxOK(results[0])
		if strings.Contains(fmt.Sprint(results), "nested deeper") {
			return
		}
		if want := json.Valid(data); oneValue != want {
			t.Errorf("decoder on %q: one valid value = %v (results %v), json.Valid = %v", data, oneValue, results, want)
		}
	})
}
